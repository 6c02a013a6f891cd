import * as Http from "node:http"
import { Readable } from "node:stream"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import { Agent, request } from "undici"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { HttpGateway } from "../../src/http/HttpGateway.ts"
import { MAX_EVENT_SUBSCRIBERS } from "../../src/http/ObservabilityRoutes.ts"
import * as OrchestratorByKind from "../../src/orchestrators/OrchestratorByKind.ts"
import { POOL_CONNECTIONS } from "../../src/proxy/UpstreamPools.ts"
import { ServiceRegistry } from "../../src/registry/ServiceRegistry.ts"
import {
  call,
  callJson,
  eventually,
  freePort,
  gatewayUrl,
  gatewayYaml,
  processService,
  rawExchange
} from "../fixtures/Gateway.ts"
import { captureLogs, parsePrometheus, sampleValue } from "../fixtures/Observability.ts"

// Issue 9, items 7, 12, 13, 14, 17, 19, 20, 21 and the event-subscriber cap, each against the real gateway.

const ports = { hard: await freePort(), pool: await freePort(), endless: await freePort() }

// An upstream of the test's own: `/endless` streams 64 KiB chunks without a Content-Length until its client leaves.
const endless = { aborted: 0 }
await new Promise<void>((resolve) => {
  const chunk = Buffer.alloc(64 * 1024, 0x61)
  Http.createServer((req, res) => {
    if (req.url === "/health") return res.end("ok")
    res.writeHead(200, { "content-type": "application/octet-stream" })
    const pump = () => {
      while (!res.destroyed && res.write(chunk)) {}
      if (!res.destroyed) res.once("drain", pump)
    }
    res.on("close", () => {
      if (!res.writableFinished) endless.aborted++
    })
    pump()
  })
    .listen(ports.endless, "127.0.0.1", resolve)
    .unref()
})
const LIMIT = 1024 * 1024
const upstream = `http://127.0.0.1:${ports.hard}`
// External services on the `hard` process's port, each with the setting under test.
const external = (id: string, settings: Record<string, unknown>) =>
  `  ${id}: ${JSON.stringify({ base_url: upstream, health_url: `${upstream}/health`, idle_timeout_ms: 0, warmup_ms: 0, ...settings })}\n`

const yaml = `max_dispatch_body_bytes: ${LIMIT}\n${gatewayYaml(
  processService("hard", ports.hard, { settings: { idle_timeout_ms: 0 } }) +
    processService("pool", ports.pool, { settings: { idle_timeout_ms: 0 } }) +
    external("busy", { max_concurrent_requests: 1 }) +
    external("slowhead", { upstream_timeout_seconds: 0.5 }) +
    external("quiet", { stream_idle_timeout_seconds: 0.5 }) +
    external("upload", { body_idle_timeout_seconds: 0.5 }) +
    `  endless: { base_url: "http://127.0.0.1:${ports.endless}", health_url: "http://127.0.0.1:${ports.endless}/health", idle_timeout_ms: 0 }\n`
)}`

const lines: Array<string> = []
const gateway = Layer.mergeAll(HttpGateway.Default, ServiceRegistry.Default).pipe(
  Layer.provide(OrchestratorByKind.layer),
  Layer.provide(HestiaConfig.layerYaml(yaml)),
  Layer.provide(NodeContext.layer),
  Layer.provide(captureLogs(lines)),
  Layer.orDie
)

const logged = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>)

const dispatch = (base: string, payload: unknown, headers: Record<string, string> = {}) =>
  callJson(`${base}/v1/requests`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof payload === "string" ? payload : JSON.stringify(payload)
  })

const seen = Effect.map(callJson(`${upstream}/_seen`), (response) => (response.json as Array<unknown>).length)
const scrape = (base: string) => Effect.map(call(`${base}/metrics`), (response) => parsePrometheus(response.text))

layer(gateway, { excludeTestServices: true, timeout: "60 seconds" })("proxy limits and hygiene (issue 9)", (it) => {
  it.effect("7: every answer carries X-Request-ID, control routes included; control log lines carry it", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const { port } = yield* HttpGateway
      const uuid = /^[0-9a-f-]{36}$/
      for (const path of ["/healthz", "/v1/services", "/v1/no-such-route", "/v1/services/nope/status", "/metrics"]) {
        const echoed = yield* call(`${base}${path}`, { headers: { "x-request-id": `mine-${path}` } })
        assert.strictEqual(echoed.headers["x-request-id"], `mine-${path}`, path)
        const generated = yield* call(`${base}${path}`)
        assert.match(String(generated.headers["x-request-id"]), uuid, path)
      }
      // Answers the proxy gives itself, before any upstream: unknown service, refused path.
      const unknown = yield* call(`${base}/services/nope/x`, { headers: { "x-request-id": "p-1" } })
      assert.strictEqual(unknown.status, 404)
      assert.strictEqual(unknown.headers["x-request-id"], "p-1")
      const refusedPath = yield* rawExchange(
        port,
        "GET /services/hard/..;/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
      )
      assert.match(refusedPath, /^HTTP\/1\.1 400 /)
      assert.match(refusedPath, /\r\nx-request-id: [0-9a-f-]{36}\r\n/i)

      yield* dispatch(base, "not json", { "x-request-id": "ctl-bad-1" })
      yield* call(`${base}/v1/services/nope/stop`, { method: "POST", headers: { "x-request-id": "ctl-nope-1" } })
      const entries = logged()
      const unknownLogged = entries.find((entry) => entry.event === "control_error" && entry.requestId === "ctl-nope-1")
      assert.strictEqual(unknownLogged?.error, "UnknownService")
      assert.strictEqual(unknownLogged?.status, 404)
      const refused = entries.find((entry) => entry.event === "control_error" && entry.requestId === "ctl-bad-1")
      assert.strictEqual(refused?.error, "BadRequest")
      assert.strictEqual(refused?.path, "/v1/requests")
    })
  )

  it.effect("12: POST /v1/requests refuses a request body over max_dispatch_body_bytes with 413, declared or not", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const big = JSON.stringify({ serviceId: "hard", method: "POST", path: "/", body: "x".repeat(LIMIT) })
      const declared = yield* dispatch(base, big)
      assert.strictEqual(declared.status, 413)
      assert.strictEqual(declared.json.error, "RequestBodyTooLarge")
      assert.strictEqual(declared.json.limitBytes, LIMIT)
      assert.strictEqual(declared.headers.connection, "close")
      // Chunked, no Content-Length: refused once it grows past the limit, not after it was all read.
      const chunks = async function* () {
        for (let i = 0; i < 64; i++) yield Buffer.alloc(64 * 1024, 0x20)
      }
      const streamed = yield* Effect.promise(async () => {
        const response = await request(`${base}/v1/requests`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: Readable.from(chunks())
        }).catch((error: unknown) => error as Error)
        if (response instanceof Error) return { status: 0, text: response.message }
        return { status: response.statusCode, text: await response.body.text() }
      })
      assert.strictEqual(streamed.status, 413, streamed.text)
      assert.strictEqual(JSON.parse(streamed.text).limitBytes, LIMIT)
    })
  )

  it.effect(
    "12: an upstream answer over max_dispatch_body_bytes is a typed 502 and the upstream request is aborted",
    () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const declared = yield* dispatch(base, { serviceId: "hard", method: "GET", path: `/bytes?n=${2 * LIMIT}` })
        assert.strictEqual(declared.status, 502)
        assert.strictEqual(declared.json.error, "UpstreamBodyTooLarge")
        assert.strictEqual(declared.json.limitBytes, LIMIT)
        // Streamed without a Content-Length (and without end): cut as soon as it passes the limit.
        const streamed = yield* dispatch(base, { serviceId: "endless", method: "GET", path: "/endless" })
        assert.strictEqual(streamed.status, 502)
        assert.strictEqual(streamed.json.error, "UpstreamBodyTooLarge")
        yield* eventually(
          Effect.sync(() => endless.aborted),
          (aborted) => aborted === 1
        )
        // Below the limit all is as before.
        const small = yield* dispatch(base, { serviceId: "hard", method: "GET", path: "/bytes?n=1000" })
        assert.strictEqual(small.status, 200)
        assert.strictEqual(Buffer.from(small.json.body, "base64").length, 1000)
      })
  )

  it.effect("19: deeply nested JSON to a control route is a logged 400, not an empty 500", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const depth = 100_000
      const nested = `{"serviceId":"hard","method":"POST","path":"/","body":${"[".repeat(depth)}${"]".repeat(depth)}}`
      const response = yield* dispatch(base, nested, { "x-request-id": "deep-1" })
      assert.strictEqual(response.status, 400)
      assert.strictEqual(response.json.error, "BadRequest")
      assert.match(response.json.message, /nested deeper than/)
      const entry = logged().find((line) => line.event === "control_error" && line.requestId === "deep-1")
      assert.strictEqual(entry?.status, 400)
    })
  )

  it.effect("20: a dispatcher header with CR/LF is a 400 naming it; nothing is sent, no upstream 502 counted", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      yield* call(`${base}/services/hard/warm`)
      const seenBefore = yield* seen
      const fiveBefore =
        sampleValue(yield* scrape(base), "hestia_requests_total", { service: "hard", code: "5xx" }) ?? 0
      const response = yield* dispatch(base, {
        serviceId: "hard",
        method: "GET",
        path: "/x",
        headers: { "x-bad": "a\r\nInjected: 1" }
      })
      assert.strictEqual(response.status, 400)
      assert.strictEqual(response.json.error, "BadRequest")
      assert.match(response.json.message, /"x-bad"/)
      // Only the /_seen read itself reached the upstream.
      assert.strictEqual(yield* seen, seenBefore + 1)
      const fiveAfter = sampleValue(yield* scrape(base), "hestia_requests_total", { service: "hard", code: "5xx" }) ?? 0
      assert.strictEqual(fiveAfter, fiveBefore)
    })
  )

  it.effect("21: two Host headers are refused with 400, on the proxy and on control routes", () =>
    Effect.gen(function* () {
      const { port } = yield* HttpGateway
      for (const path of ["/services/hard/x", "/healthz"]) {
        const answer = yield* rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`)
        assert.match(answer, /^HTTP\/1\.1 400 /, path)
        assert.match(answer, /"error":"BadRequest"/, path)
      }
      const single = yield* rawExchange(port, "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      assert.match(single, /^HTTP\/1\.1 200 /)
    })
  )

  it.effect("a client's X-Real-IP and Forwarded do not reach the upstream as they were sent", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const response = yield* callJson(`${base}/services/hard/headers`, {
        headers: { "x-real-ip": "6.6.6.6", forwarded: "for=6.6.6.6" }
      })
      assert.strictEqual(response.json.headers["x-real-ip"], "127.0.0.1")
      assert.match(
        response.json.headers.forwarded,
        /^for=6\.6\.6\.6, for=127\.0\.0\.1;host="127\.0\.0\.1:\d+";proto=http$/
      )
    })
  )

  it.effect("14: an upstream that sends no headers within upstream_timeout_seconds → 504 UpstreamTimeout", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const response = yield* callJson(`${base}/services/slowhead/slow?ms=3000`)
      assert.strictEqual(response.status, 504)
      assert.strictEqual(response.json.error, "UpstreamTimeout")
      assert.strictEqual(response.json.timeoutMs, 500)
      // Within the limit, nothing changes.
      assert.strictEqual((yield* callJson(`${base}/services/slowhead/slow?ms=10`)).status, 200)
    })
  )

  it.effect("14: a response body silent for stream_idle_timeout_seconds is cut; without the setting it waits", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const read = (service: string) =>
        Effect.promise(async () => {
          const response = await request(`${base}/services/${service}/ndjson?lines=3&interval=1000`)
          let text = ""
          try {
            for await (const chunk of response.body) text += Buffer.from(chunk).toString("utf8")
            return { lines: text.split("\n").filter((line) => line !== "").length, cut: false }
          } catch {
            return { lines: text.split("\n").filter((line) => line !== "").length, cut: true }
          }
        })
      const quiet = yield* read("quiet")
      assert.isTrue(quiet.cut)
      assert.isBelow(quiet.lines, 3)
      assert.deepStrictEqual(yield* read("hard"), { lines: 3, cut: false })
    })
  )

  it.effect("13: an upload that stalls for body_idle_timeout_seconds → 408 RequestBodyTimeout, connection closed", () =>
    Effect.gen(function* () {
      const { port } = yield* HttpGateway
      const base = yield* gatewayUrl
      yield* call(`${base}/services/upload/warm`)
      const answer = yield* rawExchange(
        port,
        "POST /services/upload/mirror HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n0123456789",
        10_000
      )
      assert.match(answer, /^HTTP\/1\.1 408 /)
      assert.match(answer, /"error":"RequestBodyTimeout"/)
      assert.match(answer, /"idleMs":500/)
    })
  )

  it.effect("13: an upload that completes is not cut while the upstream takes longer than the idle limit", () =>
    Effect.gen(function* () {
      const { port } = yield* HttpGateway
      const answer = yield* rawExchange(
        port,
        "POST /services/upload/slow?ms=1500 HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 20\r\n\r\n0123456789",
        10_000,
        [{ afterMs: 200, text: "0123456789" }]
      )
      assert.match(answer, /^HTTP\/1\.1 200 /)
      assert.match(answer, /"slow":true/)
    })
  )

  it.effect("13: over max_concurrent_requests a short queue waits, the next gets 503 ServiceBusy (counted)", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      yield* call(`${base}/services/busy/warm`)
      const first = yield* Effect.promise(() => request(`${base}/services/busy/ndjson?lines=10&interval=100`))
      // The second waits for the first's turn; the third finds the queue (as long as the limit: 1) full.
      const second = yield* Effect.fork(callJson(`${base}/services/busy/second`))
      yield* Effect.sleep("100 millis")
      const third = yield* callJson(`${base}/services/busy/third`)
      assert.strictEqual(third.status, 503)
      assert.strictEqual(third.json.error, "ServiceBusy")
      assert.strictEqual(third.json.limit, 1)
      assert.strictEqual(third.headers["retry-after"], "1")
      yield* Effect.promise(() => first.body.text())
      const answered = yield* Fiber.join(second)
      assert.strictEqual(answered.status, 200)
      assert.strictEqual(answered.json.url, "/second")
      const exposition = yield* scrape(base)
      assert.strictEqual(
        sampleValue(exposition, "hestia_upstream_rejections_total", { service: "busy", reason: "service_busy" }),
        1
      )
    })
  )

  it.effect("13: a full upstream pool: a bounded wait, then 503 UpstreamPoolFull with Retry-After (counted)", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      yield* call(`${base}/services/pool/warm`)
      const agent = new Agent({ connections: POOL_CONNECTIONS + 8 })
      // Every connection of the origin held by an open stream (the slow-client attack of issue 9 item 13).
      const open = yield* Effect.promise(() =>
        Promise.all(
          Array.from({ length: POOL_CONNECTIONS }, () =>
            request(`${base}/services/pool/ndjson?lines=200&interval=100`, { dispatcher: agent })
          )
        )
      )
      const refused = yield* callJson(`${base}/services/pool/one-more`, { dispatcher: agent })
      assert.strictEqual(refused.status, 503)
      assert.strictEqual(refused.json.error, "UpstreamPoolFull")
      assert.strictEqual(refused.json.connections, POOL_CONNECTIONS)
      assert.strictEqual(refused.headers["retry-after"], "1")
      for (const response of open) response.body.destroy()
      yield* Effect.promise(() => agent.close())
      const exposition = yield* scrape(base)
      assert.strictEqual(
        sampleValue(exposition, "hestia_upstream_rejections_total", { service: "pool", reason: "pool_full" }),
        1
      )
      // The pool recovers once the streams are gone.
      const after = yield* Effect.retry(
        Effect.flatMap(call(`${base}/services/pool/after`), (response) =>
          response.status === 200 ? Effect.succeed(response) : Effect.fail(response.status)
        ),
        { times: 20 }
      )
      assert.strictEqual(after.status, 200)
    })
  )

  it.effect("/v1/events takes at most MAX_EVENT_SUBSCRIBERS subscribers, then 503 TooManySubscribers", () =>
    Effect.gen(function* () {
      const { port } = yield* HttpGateway
      const agent = new Http.Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY })
      const subscribe = () =>
        new Promise<Http.IncomingMessage>((resolve, reject) => {
          const req = Http.get({ host: "127.0.0.1", port, path: "/v1/events", agent }, resolve)
          req.on("error", reject)
        })
      const subscribers = yield* Effect.promise(() =>
        Promise.all(Array.from({ length: MAX_EVENT_SUBSCRIBERS }, subscribe))
      )
      assert.isTrue(subscribers.every((response) => response.statusCode === 200))
      const refused = yield* Effect.promise(subscribe)
      assert.strictEqual(refused.statusCode, 503)
      const body = yield* Effect.promise(async () => {
        let text = ""
        for await (const chunk of refused) text += chunk
        return JSON.parse(text)
      })
      assert.strictEqual(body.error, "TooManySubscribers")
      assert.strictEqual(body.limit, MAX_EVENT_SUBSCRIBERS)
      // A place freed is a place taken again.
      subscribers[0]!.destroy()
      const again = yield* Effect.retry(
        Effect.flatMap(Effect.promise(subscribe), (response) =>
          response.statusCode === 200 ? Effect.succeed(response) : Effect.fail(response.statusCode)
        ).pipe(Effect.delay("50 millis")),
        { times: 40 }
      )
      assert.strictEqual(again.statusCode, 200)
      again.destroy()
      for (const response of subscribers) response.destroy()
      agent.destroy()
    })
  )
})
