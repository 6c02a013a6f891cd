import { createHash, randomBytes } from "node:crypto"
import { readFileSync, writeFileSync } from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Logger, LogLevel } from "effect"
import type WebSocket from "ws"
import { newKey } from "../../src/auth/Auth.ts"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { HttpGateway } from "../../src/http/HttpGateway.ts"
import * as OrchestratorByKind from "../../src/orchestrators/OrchestratorByKind.ts"
import { WebSocketProxy } from "../../src/proxy/WebSocketProxy.ts"
import { ServiceRegistry } from "../../src/registry/ServiceRegistry.ts"
import {
  call,
  callJson,
  eventually,
  freePort,
  gatewayLayer,
  gatewayUrl,
  gatewayYaml,
  processService,
  rawRequest,
  tempDir
} from "../fixtures/Gateway.ts"
import { closedWith, connect, isOpen, nextMessage, opened, refused, send } from "../fixtures/WebSockets.ts"

// Websockets through the gateway, with real upstream processes (examples/upstream.mjs's /ws echo) and the `ws` client.

const dir = tempDir("hestia-ws-")
const starts = Path.join(dir, "ws.starts")
writeFileSync(starts, "")
const startsOf = () =>
  readFileSync(starts, "utf8")
    .split("\n")
    .filter((line) => line.startsWith("start")).length

const ports = { ws: await freePort(), idle: await freePort(), slow: await freePort(), bytes: await freePort() }
const yaml = gatewayYaml(
  processService("ws", ports.ws, {
    extraArgs: ["--record", starts, "--boot-ms", "300"],
    settings: { idle_timeout_ms: 0 }
  }) +
    processService("idle", ports.idle, { settings: { idle_timeout_ms: 700 } }) +
    processService("slow", ports.slow, { settings: { idle_timeout_ms: 0, upstream_timeout_seconds: 0.5 } }) +
    processService("bytes", ports.bytes, { settings: { idle_timeout_ms: 0 } })
)

const wsUrl = (base: string, path: string) => `${base.replace("http://", "ws://")}${path}`
const status = (base: string, id: string) => Effect.map(callJson(`${base}/v1/services/${id}/status`), (r) => r.json)
const upstreamStats = (port: number) => Effect.map(callJson(`http://127.0.0.1:${port}/_stats`), (r) => r.json)
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex")
const sleep = (ms: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, ms)))

/** The value of one Prometheus sample, or undefined when the series is absent. */
const sample = (text: string, series: string) => {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

layer(gatewayLayer(yaml), { excludeTestServices: true, timeout: "60 seconds" })(
  "websockets through the gateway, real upstream processes",
  (it) => {
    it.scoped(
      "a websocket to a cold service waits for the start, then echoes; X-Forwarded-* and X-Request-ID as for HTTP",
      () =>
        Effect.gen(function* () {
          const base = yield* gatewayUrl
          assert.strictEqual((yield* status(base, "ws")).state, "cold")
          const socket = yield* opened(wsUrl(base, "/services/ws/ws?room=1"), {
            headers: { "x-request-id": "ws-request-1" }
          })
          assert.strictEqual(startsOf(), 1)
          assert.strictEqual(socket.headers["x-request-id"], "ws-request-1")
          assert.isString(socket.headers["x-upstream-pid"])
          yield* send(socket, "hello through a cold start")
          assert.strictEqual((yield* nextMessage(socket)).toString(), "hello through a cold start")

          const seen = (yield* callJson(`http://127.0.0.1:${ports.ws}/_seen`)).json as Array<any>
          const handshake = seen.find((entry) => entry.upgrade === true)
          assert.strictEqual(handshake.url, "/ws?room=1")
          assert.strictEqual(handshake.requestId, "ws-request-1")
          assert.strictEqual(handshake.headers["x-forwarded-for"], "127.0.0.1")
          assert.strictEqual(handshake.headers["x-forwarded-proto"], "http")
          assert.strictEqual(handshake.headers["x-forwarded-host"], new URL(base).host)
          assert.strictEqual(handshake.headers.upgrade, "websocket")

          // Counted: one open in the gauge, the handshake as a 1xx answer; in the timeline once opened.
          const metrics = (yield* call(`${base}/metrics`)).text
          assert.strictEqual(sample(metrics, 'hestia_websockets_open{service="ws"}'), 1)
          assert.isAtLeast(sample(metrics, 'hestia_requests_total{code="1xx",service="ws"}') ?? 0, 1)
          socket.ws.close(1000, "done")
          assert.strictEqual((yield* closedWith(socket)).code, 1000)
          yield* eventually(
            Effect.map(call(`${base}/metrics`), (r) => sample(r.text, 'hestia_websockets_open{service="ws"}')),
            (open) => open === 0
          )
          const activity = yield* eventually(
            Effect.map(callJson(`${base}/v1/activity?serviceId=ws`), (r) => r.json.activity as Array<any>),
            (entries) => entries.some((entry) => entry.type === "websocket_closed")
          )
          const closedRow = activity.find((entry) => entry.type === "websocket_closed")
          assert.strictEqual(closedRow.requestId, "ws-request-1")
          assert.strictEqual(closedRow.detail.closedBy, "client")
          assert.isTrue(activity.some((entry) => entry.type === "websocket_opened"))
        })
    )

    it.scoped("large frames both ways arrive byte-exact", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const socket = yield* opened(wsUrl(base, "/services/bytes/ws"))
        const big = randomBytes(24 * 1024 * 1024)
        yield* send(socket, big)
        const echoed = yield* nextMessage(socket, 0, 30_000)
        assert.strictEqual(echoed.length, big.length)
        assert.strictEqual(sha(echoed), sha(big))
        // Many frames from the upstream: every byte, in order.
        const flood = 16 * 1024 * 1024
        yield* send(socket, `!flood ${flood}`)
        const received = yield* eventually(
          Effect.sync(() => socket.messages.slice(1).reduce((sum, m) => sum + m.length, 0)),
          (bytes) => bytes >= flood,
          400
        )
        assert.strictEqual(received, flood)
        const pattern = Buffer.alloc(64 * 1024, "abcdefghijklmnopqrstuvwxyz0123456789")
        assert.isTrue(socket.messages.slice(1).every((m) => m.equals(pattern.subarray(0, m.length))))
      })
    )

    it.scoped("a reader that stops reading holds the upstream back: the gateway buffers a bounded amount", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const socket = yield* opened(wsUrl(base, "/services/bytes/ws"))
        const before = (yield* upstreamStats(ports.bytes)).wsFloodSent as number
        const flood = 256 * 1024 * 1024
        // The client's socket is paused: nothing it receives is read.
        const raw = (socket.ws as unknown as { _socket: Net.Socket })._socket
        raw.pause()
        yield* send(socket, `!flood ${flood}`)
        // Until it stalls: the socket buffers (the kernel's and the gateway's) are full.
        let sent = 0
        for (let i = 0; i < 50; i++) {
          yield* sleep(100)
          const now = ((yield* upstreamStats(ports.bytes)).wsFloodSent as number) - before
          if (now === sent && now > 0) break
          sent = now
        }
        assert.isAbove(sent, 0)
        assert.isBelow(sent, 64 * 1024 * 1024, `the upstream sent ${sent} bytes into a reader that reads nothing`)
        raw.resume()
        const received = yield* eventually(
          Effect.sync(() => socket.messages.reduce((sum, m) => sum + m.length, 0)),
          (bytes) => bytes >= flood,
          600
        )
        assert.strictEqual(received, flood)
      })
    )

    it.scoped("an open websocket keeps its service from its idle stop; the idle timer starts when it closes", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const socket = yield* opened(wsUrl(base, "/services/idle/ws"))
        // Over three idle timeouts with nothing sent: still hot, still echoing.
        yield* sleep(2_200)
        const during = yield* status(base, "idle")
        assert.strictEqual(during.state, "hot")
        assert.strictEqual(during.inFlight, 1)
        yield* send(socket, "still here")
        assert.strictEqual((yield* nextMessage(socket)).toString(), "still here")
        socket.ws.close(1000)
        yield* closedWith(socket)
        const afterClose = yield* status(base, "idle")
        assert.strictEqual(afterClose.inFlight, 0)
        yield* eventually(
          Effect.map(status(base, "idle"), (s) => s.state),
          (state) => state === "cold"
        )
      })
    )

    it.scoped("either side closing closes the other", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        // The client closes: the upstream receives the close (its code) and its socket ends.
        const first = yield* opened(wsUrl(base, "/services/bytes/ws"))
        const opensBefore = (yield* upstreamStats(ports.bytes)).wsOpen as number
        first.ws.close(4100, "client leaves")
        assert.strictEqual((yield* closedWith(first)).code, 4100)
        const stats = yield* eventually(upstreamStats(ports.bytes), (s) => s.wsOpen === opensBefore - 1)
        assert.deepInclude(stats.wsClosed, { code: 4100, by: "client" })

        // The upstream closes with a code: the client gets it.
        const second = yield* opened(wsUrl(base, "/services/bytes/ws"))
        yield* send(second, "!close 4200")
        assert.strictEqual((yield* closedWith(second)).code, 4200)

        // The upstream's connection is cut (no close frame): the client's is cut too.
        const third = yield* opened(wsUrl(base, "/services/bytes/ws"))
        yield* send(third, "!drop")
        assert.strictEqual((yield* closedWith(third)).code, 1006)

        // A client that goes away without a close frame: the upstream's socket is closed.
        const fourth = yield* opened(wsUrl(base, "/services/bytes/ws"))
        const open = (yield* upstreamStats(ports.bytes)).wsOpen as number
        fourth.ws.terminate()
        yield* eventually(upstreamStats(ports.bytes), (s) => s.wsOpen === open - 1)
        yield* eventually(
          Effect.map(status(base, "bytes"), (s) => s.inFlight),
          (inFlight) => inFlight === 0
        )
      })
    )

    it.scoped("a handshake the gateway refuses is an HTTP answer on the socket, from the one error table", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const unknown = yield* refused(wsUrl(base, "/services/nope/ws"))
        assert.strictEqual(unknown.status, 404)
        assert.strictEqual(JSON.parse(unknown.body).error, "UnknownService")
        assert.isString(unknown.headers["x-request-id"])

        const dotSegment = yield* refused(wsUrl(base, "/services/bytes/a/..;/ws"))
        assert.strictEqual(dotSegment.status, 400)
        assert.strictEqual(JSON.parse(dotSegment.body).error, "BadRequest")

        // The upstream's own refusal reaches the client as it was sent.
        const denied = yield* refused(wsUrl(base, "/services/bytes/ws?deny=1"))
        assert.strictEqual(denied.status, 403)
        assert.strictEqual(denied.body, "denied")

        // An upstream that never answers the handshake: 504 after upstream_timeout_seconds.
        const hung = yield* refused(wsUrl(base, "/services/slow/ws?hang=1"))
        assert.strictEqual(hung.status, 504)
        assert.deepInclude(JSON.parse(hung.body), { error: "UpstreamTimeout", timeoutMs: 500 })
      })
    )

    it.scoped("a client that leaves while its service starts holds nothing once the start is over", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        yield* Effect.promise(() => fetch(`${base}/v1/services/ws/stop`, { method: "POST" }))
        yield* eventually(
          Effect.map(status(base, "ws"), (s) => s.state),
          (state) => state === "cold"
        )
        const result = yield* Effect.promise(
          () =>
            new Promise<string>((resolve) => {
              const raw = Net.connect(new URL(base).port as unknown as number, "127.0.0.1", () => {
                raw.write(
                  "GET /services/ws/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
                    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                )
                setTimeout(() => {
                  raw.destroy()
                  resolve("left")
                }, 100)
              })
            })
        )
        assert.strictEqual(result, "left")
        const hot = yield* eventually(status(base, "ws"), (s) => s.state === "hot")
        assert.strictEqual(hot.inFlight, 0)
        assert.strictEqual(hot.queuePending, 0)
      })
    )

    it.scoped("other upgrade requests (h2c, a websocket to a control route) are answered as plain requests", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const port = Number(new URL(base).port)
        // What `curl --http2` sends over plain HTTP.
        const h2c = yield* Effect.promise(() =>
          rawRequest(port, "/healthz", "GET", {
            connection: "Upgrade, HTTP2-Settings",
            upgrade: "h2c",
            "http2-settings": "AAMAAABkAAQAAP__"
          })
        )
        assert.strictEqual(h2c.status, 200)
        assert.strictEqual(JSON.parse(h2c.body).status, "ok")
        const proxied = yield* Effect.promise(() =>
          rawRequest(port, "/services/bytes/echo/x", "GET", { connection: "Upgrade", upgrade: "h2c" })
        )
        assert.strictEqual(proxied.status, 200)
        assert.strictEqual(JSON.parse(proxied.body).url, "/echo/x")
        assert.isUndefined(JSON.parse(proxied.body).headers.upgrade)
        const control = yield* connect(wsUrl(base, "/v1/services"))
        assert.isFalse(isOpen(control))
        if (!isOpen(control)) assert.strictEqual(control.status, 200)
      })
    )
  }
)

// ---------------------------------------------------------------------------
// Auth: an API key in a header (programs), or Basic credentials (what a browser has: the dashboard's login, or any
// user name with an API key as the password).
// ---------------------------------------------------------------------------

const KEY = newKey()
const PASSWORD = "a websocket dashboard password"
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`
const guardedPort = await freePort()
const authYaml = `server: { host: 127.0.0.1, port: 0 }
auth:
  api_keys: [${JSON.stringify(KEY)}]
  dashboard: { username: admin, password: ${JSON.stringify(PASSWORD)} }
services:
${processService("guarded", guardedPort, { settings: { idle_timeout_ms: 0 } })}`

layer(gatewayLayer(authYaml), { excludeTestServices: true, timeout: "30 seconds" })("websockets with auth on", (it) => {
  it.scoped("no credentials, or wrong ones: 401 on the socket, and the upstream is never asked", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const none = yield* refused(wsUrl(base, "/services/guarded/ws"))
      assert.strictEqual(none.status, 401)
      assert.strictEqual(JSON.parse(none.body).error, "Unauthorized")
      assert.match(String(none.headers["www-authenticate"]), /realm="hestia"/)
      const wrong = yield* refused(wsUrl(base, "/services/guarded/ws"), { headers: { "x-api-key": "hk_wrong" } })
      assert.strictEqual(wrong.status, 401)
      // An unknown service is not revealed to a client without credentials.
      assert.strictEqual((yield* refused(wsUrl(base, "/services/nope/ws"))).status, 401)
      const guarded = yield* callJson(`${base}/v1/services/guarded/status`, { headers: { "x-api-key": KEY } })
      assert.strictEqual(guarded.json.state, "cold")
    })
  )

  it.scoped("an API key header, the dashboard's Basic login, or a key as the Basic password open it", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const ways: ReadonlyArray<[string, WebSocket.ClientOptions]> = [
        ["X-API-Key", { headers: { "x-api-key": KEY } }],
        ["Bearer", { headers: { authorization: `Bearer ${KEY}` } }],
        ["dashboard login", { headers: { authorization: basic("admin", PASSWORD) } }],
        ["key as password", { headers: { authorization: basic("anyone", KEY) } }]
      ]
      for (const [way, options] of ways) {
        const socket = yield* opened(wsUrl(base, "/services/guarded/ws"), options)
        yield* send(socket, way)
        assert.strictEqual((yield* nextMessage(socket)).toString(), way)
        socket.ws.close(1000)
        yield* closedWith(socket)
      }
      // The gateway's credentials are not the upstream's business.
      const seen = (yield* callJson(`http://127.0.0.1:${guardedPort}/_seen`)).json as Array<any>
      const handshakes = seen.filter((entry) => entry.upgrade === true)
      assert.strictEqual(handshakes.length, ways.length)
      for (const handshake of handshakes) {
        assert.isUndefined(handshake.headers["x-api-key"])
        assert.isUndefined(handshake.headers.authorization)
      }
    })
  )
})

// ---------------------------------------------------------------------------
// The gateway's own close (what a stopping gateway does), in the middle of traffic.
// ---------------------------------------------------------------------------

const goAwayPort = await freePort()
const goAwayLayer = Layer.mergeAll(HttpGateway.Default, ServiceRegistry.Default, WebSocketProxy.Default).pipe(
  Layer.provide(OrchestratorByKind.layer),
  Layer.provide(
    HestiaConfig.layerYaml(gatewayYaml(processService("busy", goAwayPort, { settings: { idle_timeout_ms: 0 } })))
  ),
  Layer.provide(NodeContext.layer),
  Layer.provide(Logger.minimumLogLevel(LogLevel.Error)),
  Layer.orDie
)

layer(goAwayLayer, { excludeTestServices: true, timeout: "60 seconds" })("the gateway closing websockets", (it) => {
  it.scoped(
    "mid-frame: the close frame (1001) waits for the frame under way, on both sides; new handshakes get 503",
    () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const socket = yield* opened(wsUrl(base, "/services/busy/ws"))
        // Big frames streaming towards the client, and one big frame towards the upstream, when the close comes.
        yield* send(socket, `!flood ${512 * 1024 * 1024}`)
        yield* eventually(
          Effect.sync(() => socket.messages.length),
          (count) => count >= 20
        )
        const big = randomBytes(8 * 1024 * 1024)
        socket.ws.send(big)
        yield* Effect.flatMap(WebSocketProxy, (proxy) => Effect.sync(() => proxy.goAway()))
        // A close inside a frame would be a protocol error for the client (1002) or a cut (1006): it is 1001.
        const closed = yield* closedWith(socket)
        assert.strictEqual(closed.code, 1001)
        assert.strictEqual(closed.reason, "gateway stopping")
        const pattern = Buffer.alloc(64 * 1024, "abcdefghijklmnopqrstuvwxyz0123456789")
        assert.isTrue(socket.messages.every((m) => m.equals(pattern.subarray(0, m.length))))
        // The upstream saw a well-formed close (1001) too, not a truncated frame.
        const stats = yield* eventually(upstreamStats(goAwayPort), (s) => s.wsOpen === 0)
        assert.deepInclude(stats.wsClosed, { code: 1001, by: "client" })

        const late = yield* refused(wsUrl(base, "/services/busy/ws"))
        assert.strictEqual(late.status, 503)
        assert.strictEqual(JSON.parse(late.body).error, "GatewayStopping")
        assert.strictEqual(late.headers["retry-after"], "1")
      })
  )
})
