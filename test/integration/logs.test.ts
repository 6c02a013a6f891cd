import { assert, layer } from "@effect/vitest"
import { Effect, Scope } from "effect"
import { MAX_FOLLOWERS_PER_SERVICE } from "../../src/observability/ServiceLogs.ts"
import {
  call,
  callJson,
  eventually,
  freePort,
  gatewayLayer,
  gatewayUrl,
  gatewayYaml,
  processService
} from "../fixtures/Gateway.ts"
import { openSse, type SseClient } from "../fixtures/Observability.ts"

const ports = { echo: await freePort(), crash: await freePort() }

const yaml = gatewayYaml(
  processService("logs-echo", ports.echo, { settings: { idle_timeout_ms: 0 } }) +
    processService("logs-crash", ports.crash, { extraArgs: ["--exit-code", "4"], settings: { retry_count: 0 } })
)

const logsOf = (base: string, id: string, query = "") =>
  Effect.map(callJson(`${base}/v1/services/${id}/logs${query}`), (response) => response)

const print = (base: string, text: string, stream = "stdout") =>
  call(`${base}/services/logs-echo/print?text=${encodeURIComponent(text)}&stream=${stream}`)

layer(gatewayLayer(yaml), { excludeTestServices: true, timeout: "30 seconds" })(
  "per-service logs over real HTTP, from real processes",
  (it) => {
    it.effect("a process's stdout and stderr lines are in its ring, tail=N gives the last N", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        assert.strictEqual((yield* print(base, "hello from stdout")).status, 200)
        yield* print(base, "hello from stderr", "stderr")
        const response = yield* eventually(logsOf(base, "logs-echo"), (r) =>
          r.json.lines.some((l: any) => l.line === "hello from stderr")
        )
        assert.strictEqual(response.status, 200)
        assert.strictEqual(response.json.serviceId, "logs-echo")
        const lines: Array<any> = response.json.lines
        assert.match(lines[0].line, /^upstream listening on 127\.0\.0\.1:/)
        assert.deepStrictEqual(lines.map((l) => [l.stream, l.line]).slice(-2), [
          ["stdout", "hello from stdout"],
          ["stderr", "hello from stderr"]
        ])
        assert.deepStrictEqual(
          lines.map((l) => l.seq),
          lines.map((_, i) => i + 1)
        )
        assert.isFalse(Number.isNaN(Date.parse(lines[0].ts)))
        const last = yield* logsOf(base, "logs-echo", "?tail=1")
        assert.deepStrictEqual(
          last.json.lines.map((l: any) => l.line),
          ["hello from stderr"]
        )

        // A process that dies at once leaves its last words.
        yield* call(`${base}/v1/services/logs-crash/start`, { method: "POST" })
        const crash = yield* eventually(logsOf(base, "logs-crash"), (r) => r.json.lines.length > 0)
        assert.deepStrictEqual(crash.json.lines[0].stream, "stderr")
        assert.strictEqual(crash.json.lines[0].line, "exiting at once with code 4, as asked")
      })
    )

    it.effect("follow=1 streams the tail, then each new line as SSE; Last-Event-ID resumes after a line", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        yield* print(base, "before following")
        yield* eventually(logsOf(base, "logs-echo", "?tail=1"), (r) => r.json.lines[0]?.line === "before following")
        const sse = yield* openSse(`${base}/v1/services/logs-echo/logs?follow=1&tail=1`)
        assert.strictEqual(sse.status, 200)
        assert.match(String(sse.headers["content-type"]), /^text\/event-stream/)
        const lines = () => sse.frames.filter((f) => f.event === "line").map((f) => JSON.parse(f.data))
        yield* eventually(Effect.sync(lines), (l) => l.length === 1)
        assert.strictEqual(lines()[0].line, "before following")
        yield* print(base, "while following")
        const seen = yield* eventually(Effect.sync(lines), (l) => l.length === 2)
        assert.strictEqual(seen[1].line, "while following")
        const frame = sse.frames.filter((f) => f.event === "line")[1]!
        assert.strictEqual(frame.id, String(seen[1].seq))

        // An EventSource reconnecting sends the last id it saw: it gets what came after, nothing twice.
        yield* print(base, "while away")
        yield* eventually(logsOf(base, "logs-echo", "?tail=1"), (r) => r.json.lines[0]?.line === "while away")
        const resumed = yield* openSse(`${base}/v1/services/logs-echo/logs?follow=1`, {
          "last-event-id": frame.id!
        })
        const again = yield* eventually(
          Effect.sync(() => resumed.frames.filter((f) => f.event === "line").map((f) => JSON.parse(f.data).line)),
          (l) => l.length >= 1
        )
        assert.deepStrictEqual(again, ["while away"])
      }).pipe(Effect.scoped)
    )

    it.effect("followers are bounded: one more than the limit is a 503 TooManyFollowers with Retry-After", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const url = `${base}/v1/services/logs-echo/logs?follow=1&tail=0`
        const open: Array<SseClient> = []
        for (let i = 0; i < MAX_FOLLOWERS_PER_SERVICE; i++) open.push(yield* openSse(url))
        for (const sse of open) assert.strictEqual(sse.status, 200)
        // Each holds its place once its stream has started (the retry line is its first frame).
        yield* eventually(
          Effect.sync(() => open.every((sse) => sse.frames.length > 0)),
          (ready) => ready
        )
        const refused = yield* callJson(url)
        assert.strictEqual(refused.status, 503)
        assert.strictEqual(refused.json.error, "TooManyFollowers")
        assert.strictEqual(refused.json.limit, MAX_FOLLOWERS_PER_SERVICE)
        assert.strictEqual(refused.headers["retry-after"], "5")
        // A follower that leaves frees its place.
        open[0]!.close()
        yield* eventually(
          Effect.map(call(`${base}/v1/services/logs-echo/logs?tail=0`), (r) => r.status),
          (status) => status === 200
        )
        const later = yield* eventually(
          Effect.gen(function* () {
            const sse = yield* openSse(url)
            if (sse.status !== 200) sse.close()
            return sse.status
          }).pipe(Effect.provideService(Scope.Scope, yield* Effect.scope)),
          (status) => status === 200
        )
        assert.strictEqual(later, 200)
      }).pipe(Effect.scoped)
    )

    it.effect("an unknown service is a 404; a bad or unknown parameter a 400 naming it", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const unknown = yield* logsOf(base, "nope")
        assert.strictEqual(unknown.status, 404)
        assert.strictEqual(unknown.json.error, "UnknownService")
        const badTail = yield* logsOf(base, "logs-echo", "?tail=5000")
        assert.strictEqual(badTail.status, 400)
        assert.match(badTail.json.message, /tail must be a whole number from 0 to 1000, got "5000"/)
        const badFollow = yield* logsOf(base, "logs-echo", "?follow=yes")
        assert.strictEqual(badFollow.status, 400)
        assert.match(badFollow.json.message, /follow must be 1, 0, true or false/)
        const extra = yield* logsOf(base, "logs-echo", "?lines=5")
        assert.strictEqual(extra.status, 400)
        assert.match(extra.json.message, /unknown parameter "lines"/)
      })
    )

    it.effect("GET /v1/metrics/history: the cold starts of the last hour; an unknown service is a 404", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        yield* call(`${base}/services/logs-echo/x`)
        const history = yield* eventually(
          callJson(`${base}/v1/metrics/history?serviceId=logs-echo`),
          (r) => r.json.services?.["logs-echo"]?.coldStarts.length > 0
        )
        assert.strictEqual(history.json.intervalMs, 10_000)
        const [start] = history.json.services["logs-echo"].coldStarts
        assert.strictEqual(start.outcome, "success")
        assert.strictEqual(start.machine, "local")
        assert.isAbove(start.durationMs, 0)
        const all = yield* callJson(`${base}/v1/metrics/history`)
        assert.sameMembers(Object.keys(all.json.services), ["logs-echo", "logs-crash"])
        const unknown = yield* callJson(`${base}/v1/metrics/history?serviceId=nope`)
        assert.strictEqual(unknown.status, 404)
      })
    )
  }
)
