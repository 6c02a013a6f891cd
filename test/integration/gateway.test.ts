import { createHash, randomBytes } from "node:crypto"
import { readFileSync, writeFileSync } from "node:fs"
import * as Http from "node:http"
import * as Path from "node:path"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { request } from "undici"
import { HttpGateway } from "../../src/http/HttpGateway.ts"
import {
  call,
  callJson,
  eventually,
  freePort,
  gatewayLayer,
  gatewayUrl,
  gatewayYaml,
  isAlive,
  processService,
  rawRequest,
  tempDir
} from "../fixtures/Gateway.ts"

const dir = tempDir()
const records = {
  idle: Path.join(dir, "idle.starts"),
  crowd: Path.join(dir, "crowd.starts"),
  echo: Path.join(dir, "echo.starts")
}
for (const file of Object.values(records)) writeFileSync(file, "")
const startsIn = (file: string) =>
  readFileSync(file, "utf8")
    .split("\n")
    .filter((line) => line.startsWith("start")).length

const ports = {
  echo: await freePort(),
  idle: await freePort(),
  crowd: await freePort(),
  small: await freePort(),
  slow: await freePort(),
  dies: await freePort(),
  ext: await freePort()
}

// An upstream the test starts and stops itself, configured as an external service.
const externalUpstream = () =>
  new Promise<Http.Server>((resolve) => {
    const server = Http.createServer((req, res) => {
      if (req.url === "/health") return res.end("ok")
      res.setHeader("content-type", "application/json")
      res.end(JSON.stringify({ external: true, url: req.url }))
    })
    server.listen(ports.ext, "127.0.0.1", () => resolve(server))
  })

const yaml = gatewayYaml(
  processService("echo", ports.echo, { extraArgs: ["--record", records.echo], settings: { idle_timeout_ms: 0 } }) +
    processService("idle", ports.idle, { extraArgs: ["--record", records.idle], settings: { idle_timeout_ms: 300 } }) +
    processService("crowd", ports.crowd, {
      extraArgs: ["--record", records.crowd, "--boot-ms", "400"],
      settings: { idle_timeout_ms: 0, queue_size: 500 }
    }) +
    processService("small-queue", ports.small, {
      extraArgs: ["--boot-ms", "1500"],
      settings: { idle_timeout_ms: 0, queue_size: 2 }
    }) +
    processService("slow-boot", ports.slow, {
      extraArgs: ["--boot-ms", "20000"],
      settings: { request_timeout_seconds: 0.5, idle_timeout_ms: 0 }
    }) +
    processService("dies", ports.dies, {
      extraArgs: ["--exit-code", "3"],
      settings: { retry_count: 1, retry_delay_ms: 10 }
    }) +
    `  ext: { base_url: "http://127.0.0.1:${ports.ext}", health_url: "http://127.0.0.1:${ports.ext}/health", idle_timeout_ms: 0 }\n`
)

const status = (base: string, id: string) => Effect.map(callJson(`${base}/v1/services/${id}/status`), (r) => r.json)

layer(gatewayLayer(yaml), { excludeTestServices: true, timeout: "30 seconds" })("gateway over real HTTP", (it) => {
  it.effect("cold-starts a local process on the first request and forwards method, path and query", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      assert.strictEqual((yield* status(base, "echo")).state, "cold")
      const response = yield* callJson(`${base}/services/echo/some/path?q=1&q=2&x=%20y`, {
        method: "PUT",
        body: "hello",
        headers: { "content-type": "text/plain" }
      })
      assert.strictEqual(response.status, 200)
      assert.strictEqual(response.json.method, "PUT")
      assert.strictEqual(response.json.url, "/some/path?q=1&q=2&x=%20y")
      assert.strictEqual(response.json.bodyBytes, 5)
      const after = yield* status(base, "echo")
      assert.strictEqual(after.state, "hot")
      assert.strictEqual(after.machineId, "local")
      assert.isTrue(isAlive(response.json.pid))
      assert.strictEqual(startsIn(records.echo), 1)
    })
  )

  it.effect("forwards /services/{id} without a slash to the base URL root", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const response = yield* callJson(`${base}/services/echo?a=b`)
      assert.strictEqual(response.json.url, "/?a=b")
    })
  )

  it.effect("stops an idle process after idle_timeout_ms: the PID is gone", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const response = yield* callJson(`${base}/services/idle/x`)
      assert.strictEqual(response.status, 200)
      const pid: number = response.json.pid
      assert.isTrue(isAlive(pid))
      yield* eventually(status(base, "idle"), (s) => s.state === "cold")
      yield* eventually(
        Effect.sync(() => isAlive(pid)),
        (alive) => !alive
      )
      // The next request starts it again.
      const again = yield* callJson(`${base}/services/idle/x`)
      assert.strictEqual(again.status, 200)
      assert.notStrictEqual(again.json.pid, pid)
      assert.strictEqual(startsIn(records.idle), 2)
    })
  )

  it.effect("coalesces 250 concurrent cold requests into one start, all answered 200", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const responses = yield* Effect.all(
        Array.from({ length: 250 }, (_, i) => callJson(`${base}/services/crowd/n/${i}`)),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(
        responses.map((r) => r.status),
        responses.map(() => 200)
      )
      assert.strictEqual(new Set(responses.map((r) => r.json.pid)).size, 1)
      assert.strictEqual(startsIn(records.crowd), 1)
      assert.deepStrictEqual(
        responses.map((r) => r.json.url),
        responses.map((_, i) => `/n/${i}`)
      )
    })
  )

  it.effect("rejects requests beyond queue_size with 503 and Retry-After", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const responses = yield* Effect.all(
        Array.from({ length: 6 }, () => call(`${base}/services/small-queue/x`)),
        { concurrency: "unbounded" }
      )
      const codes = responses.map((r) => r.status).sort()
      assert.deepStrictEqual(codes, [200, 200, 503, 503, 503, 503])
      const rejected = responses.find((r) => r.status === 503)!
      assert.strictEqual(rejected.headers["retry-after"], "5")
      assert.strictEqual(JSON.parse(rejected.text).error, "QueueFull")
    })
  )

  it.effect("answers 504 QueueTimeout when the service is not ready within request_timeout_seconds", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const response = yield* callJson(`${base}/services/slow-boot/x`)
      assert.strictEqual(response.status, 504)
      assert.strictEqual(response.json.error, "QueueTimeout")
      assert.strictEqual(response.json.waitedMs, 500)
    })
  )

  it.effect("a process that exits during start is a ProcessExited attempt; all attempts fail → 503 StartupFailed", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const response = yield* callJson(`${base}/services/dies/x`)
      assert.strictEqual(response.status, 503)
      assert.strictEqual(response.json.error, "StartupFailed")
      assert.strictEqual(response.headers["retry-after"], "5")
      assert.deepStrictEqual(
        response.json.attempts.map((a: any) => [a.machine, a.attempt, a.error]),
        [
          ["local", 1, "ProcessExited"],
          ["local", 2, "ProcessExited"]
        ]
      )
      const after = yield* status(base, "dies")
      assert.strictEqual(after.state, "cold")
      assert.strictEqual(after.lastError.error, "StartupFailed")
    })
  )

  it.effect("streams NDJSON: the first line reaches the client before the upstream has finished", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const firstChunk = yield* Effect.promise(async () => {
        const response = await request(`${base}/services/echo/ndjson?lines=4&interval=300`)
        const iterator = response.body[Symbol.asyncIterator]()
        const first = await iterator.next()
        const text = Buffer.from(first.value).toString("utf8")
        response.body.destroy()
        return text
      })
      const lines = firstChunk.split("\n").filter((line) => line !== "")
      assert.strictEqual(lines.length, 1)
      assert.strictEqual(JSON.parse(lines[0]!).i, 0)
    })
  )

  it.effect("keeps request and response bodies byte-exact, and compressed bodies untouched", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const payload = randomBytes(3 * 1024 * 1024 + 7)
      const mirrored = yield* call(`${base}/services/echo/mirror`, {
        method: "POST",
        body: payload,
        headers: { "content-type": "application/octet-stream" }
      })
      assert.strictEqual(mirrored.status, 200)
      assert.isTrue(mirrored.body.equals(payload))

      const viaGateway = yield* call(`${base}/services/echo/gzip`)
      const direct = yield* call(`http://127.0.0.1:${ports.echo}/gzip`)
      assert.strictEqual(viaGateway.headers["content-encoding"], "gzip")
      assert.strictEqual(viaGateway.headers["content-length"], direct.headers["content-length"])
      assert.isTrue(viaGateway.body.equals(direct.body))

      const big = yield* call(`${base}/services/echo/bytes?n=${20 * 1024 * 1024}`)
      const bigDirect = yield* call(`http://127.0.0.1:${ports.echo}/bytes?n=${20 * 1024 * 1024}`)
      assert.strictEqual(
        createHash("sha256").update(big.body).digest("hex"),
        createHash("sha256").update(bigDirect.body).digest("hex")
      )
    })
  )

  it.effect("refuses paths that try to escape the base URL, and none of them reaches the upstream", () =>
    Effect.gen(function* () {
      const { port } = yield* HttpGateway
      const base = yield* gatewayUrl
      yield* call(`${base}/services/echo/warm`)
      const before = (yield* callJson(`http://127.0.0.1:${ports.echo}/_seen`)).json.length
      const attempts = [
        "/services/echo/../idle/x",
        "/services/echo/a/../../b",
        "/services/echo/%2e%2e/x",
        "/services/echo/%2E%2e/x",
        "/services/echo/.%2e/x",
        "/services/echo/a/%2e%2e%2fb",
        "/services/echo/a%2f..%2f..%2fb",
        "/services/echo/a\\..\\b",
        "/services/echo/./x",
        "/services/echo/x%00y",
        "/services/echo/%zz",
        "/services/..%2fecho/x",
        "/services/../v1/services"
      ]
      for (const path of attempts) {
        const response = yield* Effect.promise(() => rawRequest(port, path))
        assert.strictEqual(response.status, 400, path)
        assert.strictEqual(JSON.parse(response.body).error, "BadRequest", path)
      }
      const after = (yield* callJson(`http://127.0.0.1:${ports.echo}/_seen`)).json.length
      // Only the two /_seen reads themselves arrived.
      assert.strictEqual(after, before + 1)

      // An absolute URL in the path stays a path on the service's own host.
      const absolute = yield* Effect.promise(() => rawRequest(port, "/services/echo/http://example.com/x"))
      assert.strictEqual(absolute.status, 200)
      assert.strictEqual(JSON.parse(absolute.body).url, "/http://example.com/x")
      assert.strictEqual(JSON.parse(absolute.body).headers.host, `127.0.0.1:${ports.echo}`)
    })
  )

  it.effect("answers 404 JSON for an unknown service", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const response = yield* callJson(`${base}/services/nope/x`)
      assert.strictEqual(response.status, 404)
      assert.deepStrictEqual(response.json.error, "UnknownService")
      assert.deepStrictEqual(response.json.serviceId, "nope")
      const statusResponse = yield* callJson(`${base}/v1/services/nope/status`)
      assert.strictEqual(statusResponse.status, 404)
    })
  )

  it.effect("forwards HEAD and OPTIONS", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const head = yield* call(`${base}/services/echo/bytes?n=1234`, { method: "HEAD" })
      assert.strictEqual(head.status, 200)
      assert.strictEqual(head.headers["content-length"], "1234")
      assert.strictEqual(head.body.length, 0)
      const options = yield* callJson(`${base}/services/echo/anything`, { method: "OPTIONS" })
      assert.strictEqual(options.json.method, "OPTIONS")
    })
  )

  it.effect("removes hop-by-hop headers, adds X-Forwarded-* and keeps the client's X-Request-ID", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const { port } = yield* HttpGateway
      const response = yield* Effect.promise(() =>
        rawRequest(port, "/services/echo/headers", "GET", {
          connection: "keep-alive, x-private",
          "x-private": "secret",
          "proxy-authorization": "Basic abc",
          te: "trailers",
          "x-request-id": "req-123",
          "x-custom": "kept"
        })
      )
      const seen = JSON.parse(response.body).headers
      assert.isUndefined(seen["x-private"])
      assert.isUndefined(seen["proxy-authorization"])
      assert.isUndefined(seen.te)
      assert.strictEqual(seen["x-custom"], "kept")
      assert.strictEqual(seen["x-request-id"], "req-123")
      assert.strictEqual(seen["x-forwarded-for"], "127.0.0.1")
      assert.strictEqual(seen["x-forwarded-proto"], "http")
      assert.strictEqual(seen["x-forwarded-host"], new URL(base).host)
      assert.strictEqual(response.headers["x-request-id"], "req-123")
      const generated = yield* callJson(`${base}/services/echo/headers`)
      assert.match(generated.json.headers["x-request-id"], /^[0-9a-f-]{36}$/)
    })
  )

  it.effect("a client that disconnects aborts the upstream request and the in-flight count returns to 0", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const abortedBefore = (yield* callJson(`http://127.0.0.1:${ports.echo}/_stats`)).json.aborted
      yield* Effect.promise(async () => {
        const controller = new AbortController()
        const response = await request(`${base}/services/echo/ndjson?lines=100&interval=100`, {
          signal: controller.signal
        })
        const iterator = response.body[Symbol.asyncIterator]()
        await iterator.next()
        controller.abort()
        response.body.destroy()
      })
      yield* eventually(
        Effect.map(callJson(`http://127.0.0.1:${ports.echo}/_stats`), (r) => r.json.aborted),
        (aborted) => aborted === abortedBefore + 1
      )
      yield* eventually(status(base, "echo"), (s) => s.inFlight === 0)
    })
  )

  it.effect("the control API starts (202, then 200 when hot) and stops (202) a service", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const upstream = yield* Effect.promise(externalUpstream)
      const started = yield* callJson(`${base}/v1/services/ext/start`, { method: "POST" })
      assert.strictEqual(started.status, 202)
      yield* eventually(status(base, "ext"), (s) => s.state === "hot")
      const again = yield* callJson(`${base}/v1/services/ext/start`, { method: "POST" })
      assert.strictEqual(again.status, 200)
      const stopped = yield* callJson(`${base}/v1/services/ext/stop`, { method: "POST" })
      assert.strictEqual(stopped.status, 202)
      yield* eventually(status(base, "ext"), (s) => s.state === "cold")
      const list = yield* callJson(`${base}/v1/services`)
      assert.includeMembers(
        list.json.services.map((s: any) => s.serviceId),
        ["echo", "idle", "crowd", "ext"]
      )
      yield* Effect.promise(() => new Promise((resolve) => upstream.close(resolve)))
    })
  )

  it.effect("a hot upstream that refuses connections goes cold (502), and the next request restarts it", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const upstream = yield* Effect.promise(externalUpstream)
      const first = yield* callJson(`${base}/services/ext/one`)
      assert.strictEqual(first.status, 200)
      assert.strictEqual((yield* status(base, "ext")).state, "hot")
      yield* Effect.promise(() => {
        upstream.closeAllConnections()
        return new Promise((resolve) => upstream.close(resolve))
      })
      const refused = yield* callJson(`${base}/services/ext/two`)
      assert.strictEqual(refused.status, 502)
      assert.strictEqual(refused.json.error, "UpstreamUnavailable")
      yield* eventually(status(base, "ext"), (s) => s.state === "cold")
      const restarted = yield* Effect.promise(externalUpstream)
      const third = yield* callJson(`${base}/services/ext/three`)
      assert.strictEqual(third.status, 200)
      assert.strictEqual(third.json.url, "/three")
      yield* Effect.promise(() => {
        restarted.closeAllConnections()
        return new Promise((resolve) => restarted.close(resolve))
      })
    })
  )

  it.effect("POST /v1/requests dispatches through the proxy and validates its body", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const answer = yield* callJson(`${base}/v1/requests`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ serviceId: "echo", method: "POST", path: "/api/do?x=1", body: { prompt: "hi" } })
      })
      assert.strictEqual(answer.status, 200)
      assert.strictEqual(answer.json.status, 200)
      assert.strictEqual(answer.json.body.url, "/api/do?x=1")
      assert.strictEqual(answer.json.body.method, "POST")
      assert.strictEqual(answer.json.body.headers["content-type"], "application/json")
      assert.strictEqual(answer.json.body.bodyBytes, JSON.stringify({ prompt: "hi" }).length)

      const bad = [
        "not json",
        JSON.stringify({ method: "GET", path: "/" }),
        JSON.stringify({ serviceId: "echo", method: "BREW", path: "/" }),
        JSON.stringify({ serviceId: "echo", method: "GET", path: "/../x" })
      ]
      for (const body of bad) {
        const response = yield* callJson(`${base}/v1/requests`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body
        })
        assert.strictEqual(response.status, 400, body)
        assert.strictEqual(response.json.error, "BadRequest", body)
      }
      const unknown = yield* callJson(`${base}/v1/requests`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ serviceId: "nope", method: "GET", path: "/" })
      })
      assert.strictEqual(unknown.status, 404)
    })
  )

  it.effect("a crashed process is noticed: the service goes cold and the next request restarts it", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const first = yield* callJson(`${base}/services/echo/pid`)
      process.kill(first.json.pid, "SIGKILL")
      yield* eventually(status(base, "echo"), (s) => s.state === "cold")
      const second = yield* callJson(`${base}/services/echo/pid`)
      assert.strictEqual(second.status, 200)
      assert.notStrictEqual(second.json.pid, first.json.pid)
    })
  )
})

// A config with an empty `services:` section is valid and the gateway still answers /healthz.
layer(gatewayLayer(gatewayYaml("")), { excludeTestServices: true })("gateway with no services", (it) => {
  it.effect("answers /healthz", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const response = yield* callJson(`${base}/healthz`)
      assert.strictEqual(response.status, 200)
      assert.strictEqual(response.json.status, "ok")
      const address = (yield* HttpGateway).host
      assert.strictEqual(address, "127.0.0.1")
    })
  )
})
