import { writeFileSync } from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { request } from "undici"
import { ensureBundle } from "../fixtures/Bundle.ts"
import { callJson, eventually, freePort, processService, tempDir } from "../fixtures/Gateway.ts"
import { type GatewayProcess, isRunning, startGateway } from "../fixtures/GatewayProcess.ts"
import { closedWith, nextMessage, opened, send } from "../fixtures/WebSockets.ts"

// The gateway's stop as users get it: the bundle (dist/main.mjs) as a process, SIGTERM from outside, real upstreams.

const configFile = async (graceMs: number) => {
  const dir = tempDir("hestia-shutdown-")
  const file = Path.join(dir, "hestia.yml")
  const port = await freePort()
  writeFileSync(
    file,
    `server: { host: 127.0.0.1, port: 0 }\ndatabase: ${JSON.stringify(Path.join(dir, "hestia.db"))}\n` +
      `shutdown_grace_ms: ${graceMs}\nservices:\n` +
      processService("stream", port, { settings: { idle_timeout_ms: 0, stop_grace_ms: 1000 } })
  )
  return { file, port }
}

/** A streamed response read as it comes: its lines so far, and how it ended. */
const openStream = (url: string) =>
  Effect.promise(async () => {
    const response = await request(url)
    const lines: Array<string> = []
    let partial = ""
    const ended = (async () => {
      try {
        for await (const chunk of response.body) {
          partial += chunk.toString()
          const parts = partial.split("\n")
          partial = parts.pop()!
          lines.push(...parts)
        }
        return { complete: true, rest: partial }
      } catch (error) {
        return { complete: false, rest: partial, error: String(error) }
      }
    })()
    return { status: response.statusCode, headers: response.headers, lines, ended }
  })

const waitFor = (check: () => boolean, what: string, bound = 15_000) =>
  Effect.promise(async () => {
    const until = Date.now() + bound
    while (!check()) {
      if (Date.now() > until) throw new Error(`not within the bound: ${what}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })

/** The pid of the service's process, from its own answer. */
const upstreamPid = (gateway: GatewayProcess) =>
  Effect.map(callJson(`${gateway.url}/services/stream/pid`), (response) => response.json.pid as number)

const refusesConnections = (port: number) =>
  Effect.promise(
    () =>
      new Promise<string>((resolve) => {
        const socket = Net.connect(port, "127.0.0.1")
        socket.once("connect", () => {
          socket.destroy()
          resolve("connected")
        })
        socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
      })
  )

/**
 * A raw connection that stays open: after one keep-alive request (`request`), or with none at all (a browser's
 * preconnect). Resolves `closed` when the gateway closes it.
 */
const idleConnection = (port: number, request: boolean) =>
  Effect.promise(
    () =>
      new Promise<{ closed: Promise<void> }>((resolve) => {
        const socket = Net.connect(port, "127.0.0.1")
        const closed = new Promise<void>((done) => socket.once("close", () => done()))
        socket.on("error", () => {})
        socket.once("connect", () => {
          if (!request) return resolve({ closed })
          socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
          let answer = ""
          socket.on("data", (chunk) => {
            answer += chunk
            if (answer.includes('"status"')) resolve({ closed })
          })
        })
      })
  )

const portOf = (gateway: GatewayProcess) => Number(new URL(gateway.url).port)
const events = (gateway: GatewayProcess, event: string) =>
  gateway.lines.filter((line) => line.includes(`"event":"${event}"`))

describe("SIGTERM: the gateway stops gracefully (the bundle, real processes)", () => {
  it.scoped(
    "a stream in progress completes byte-exact; new connections are refused; SSE, websockets and idle connections end at once; exit 0, no child left",
    () =>
      Effect.gen(function* () {
        const config = yield* Effect.promise(() => configFile(10_000))
        const gateway = yield* startGateway(config.file, {}, ensureBundle())
        // A websocket to the cold service: it waits for the start, then echoes.
        const socket = yield* opened(`${gateway.url.replace("http", "ws")}/services/stream/ws`)
        yield* send(socket, "through a cold start")
        assert.strictEqual((yield* nextMessage(socket)).toString(), "through a cold start")
        const pid = yield* upstreamPid(gateway)
        // 30 lines, 100 ms apart: about 3 s, well within the 10 s grace.
        const stream = yield* openStream(`${gateway.url}/services/stream/ndjson?lines=30&interval=100`)
        const sse = yield* openStream(`${gateway.url}/v1/events`)
        yield* waitFor(() => stream.lines.length >= 3 && sse.lines.length > 0, "the first lines")
        const keepAlive = yield* idleConnection(portOf(gateway), true)
        const preconnect = yield* idleConnection(portOf(gateway), false)

        gateway.child.kill("SIGTERM")
        // Idle connections (between requests, or before any) are closed at once: they do not hold the stop.
        yield* Effect.promise(() => Promise.all([keepAlive.closed, preconnect.closed]))
        // The websocket and the event stream end at once, each properly: a close frame, the stream's end.
        const closed = yield* closedWith(socket)
        assert.strictEqual(closed.code, 1001)
        assert.strictEqual(closed.reason, "gateway stopping")
        // The upstream got the gateway's close frame too (1001), before its process was stopped.
        yield* eventually(
          Effect.map(callJson(`http://127.0.0.1:${config.port}/_stats`), (r) => r.json.wsClosed as Array<unknown>),
          (closes) => closes.some((c) => JSON.stringify(c) === JSON.stringify({ code: 1001, by: "client" }))
        )
        const sseEnd = yield* Effect.promise(() => sse.ended)
        assert.isTrue(sseEnd.complete, JSON.stringify(sseEnd))
        assert.isBelow(stream.lines.length, 30, "the stream was still going when the others had ended")
        // No new connections.
        yield* waitFor(() => events(gateway, "shutdown_draining").length > 0, "the drain's log line")
        assert.strictEqual(yield* refusesConnections(portOf(gateway)), "ECONNREFUSED")

        const end = yield* Effect.promise(() => stream.ended)
        assert.isTrue(end.complete, JSON.stringify(end))
        assert.strictEqual(end.rest, "")
        assert.deepStrictEqual(
          stream.lines.map((line) => JSON.parse(line).i),
          Array.from({ length: 30 }, (_, i) => i)
        )
        assert.strictEqual(yield* Effect.promise(() => gateway.exited), 0)
        assert.isFalse(isRunning(pid), "the service's process was stopped")
        assert.strictEqual(events(gateway, "shutdown_drained").length, 1)
        assert.strictEqual(events(gateway, "shutdown_cut").length, 0)
        // After the drain, never before it: the service's stop is said in the log.
        const stopped = events(gateway, "process_shutdown")
        assert.strictEqual(stopped.length, 1)
        assert.strictEqual(JSON.parse(stopped[0]!).pid, pid)
        assert.isAbove(
          gateway.lines.indexOf(stopped[0]!),
          gateway.lines.indexOf(events(gateway, "shutdown_drained")[0]!)
        )
      }),
    60_000
  )

  it.scoped(
    "a stream longer than the grace is cut at the grace, then the services stop and the gateway exits 0",
    () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway((yield* Effect.promise(() => configFile(1_000))).file, {}, ensureBundle())
        const pid = yield* upstreamPid(gateway)
        // 200 lines, 100 ms apart: 20 s, far past the 1 s grace.
        const stream = yield* openStream(`${gateway.url}/services/stream/ndjson?lines=200&interval=100`)
        yield* waitFor(() => stream.lines.length >= 2, "the first lines")
        gateway.child.kill("SIGTERM")
        const atSignal = stream.lines.length
        const end = yield* Effect.promise(() => stream.ended)
        assert.isFalse(end.complete, "the stream was cut, not completed")
        assert.isAbove(stream.lines.length, atSignal, "it went on during the grace")
        assert.isBelow(stream.lines.length, 200)
        assert.strictEqual(yield* Effect.promise(() => gateway.exited), 0)
        assert.strictEqual(events(gateway, "shutdown_cut").length, 1)
        assert.isFalse(isRunning(pid))
      }),
    60_000
  )

  it.scoped(
    "a second SIGTERM during the grace exits at once, and no child is left behind",
    () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway((yield* Effect.promise(() => configFile(60_000))).file, {}, ensureBundle())
        const pid = yield* upstreamPid(gateway)
        const stream = yield* openStream(`${gateway.url}/services/stream/ndjson?lines=600&interval=100`)
        yield* waitFor(() => stream.lines.length >= 2, "the first lines")
        gateway.child.kill("SIGTERM")
        yield* waitFor(() => events(gateway, "shutdown_draining").length > 0, "the drain's log line")
        gateway.child.kill("SIGTERM")
        // Within the bound, far from the 60 s grace.
        const code = yield* Effect.promise(() =>
          Promise.race([gateway.exited, new Promise((resolve) => setTimeout(() => resolve("still running"), 10_000))])
        )
        assert.strictEqual(code, 143)
        assert.isTrue(gateway.lines.some((line) => line.includes("SIGTERM again: exiting at once")))
        yield* waitFor(() => !isRunning(pid), "the service's process to be gone", 5_000)
        const end = yield* Effect.promise(() => stream.ended)
        assert.isFalse(end.complete)
      }),
    60_000
  )
})
