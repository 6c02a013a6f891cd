import { copyFileSync, mkdirSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { ensureBundle } from "../fixtures/Bundle.ts"
import { call, callJson, freePort, modelService, processService, repoRoot, tempDir } from "../fixtures/Gateway.ts"
import { type GatewayProcess, startGateway } from "../fixtures/GatewayProcess.ts"
import { opened } from "../fixtures/WebSockets.ts"

// Routing strategies in the bundle npm start runs: strategies/header-router.ts on a router service (cold targets
// started as a client's request would start them), strategies that throw, loop or name no service, and a
// model_strategy that chooses by a body field before the catalog. Real processes, real HTTP.

const logged = (gateway: GatewayProcess, event: string) =>
  gateway.lines.flatMap((line) => {
    if (!line.includes(`"event":"${event}"`)) return []
    try {
      return [JSON.parse(line) as Record<string, unknown>]
    } catch {
      return []
    }
  })

const pidOf = (port: number) => Effect.map(callJson(`http://127.0.0.1:${port}/health`), (r) => r.json.pid as number)

const strategiesDir = () => {
  const dir = tempDir("hestia-routing-")
  const strategies = Path.join(dir, "strategies")
  mkdirSync(strategies)
  copyFileSync(Path.join(repoRoot, "strategies/header-router.ts"), Path.join(strategies, "header-router.ts"))
  const write = (file: string, route: string) =>
    writeFileSync(
      Path.join(strategies, file),
      `export default { name: "${file.split(".")[0]}", kind: "routing", route: ${route} }\n`
    )
  write("thrower.mjs", `() => { throw new RangeError("nope") }`)
  write("looper.mjs", `() => { for (;;) {} }`)
  write("nowhere.mjs", `() => "ghost"`)
  // By a body field other than the model (the model endpoints read the body; the proxy does not give one).
  write(
    "by-tier.mjs",
    `(request) => { const tier = request.body === undefined ? undefined : JSON.parse(request.body).tier; return tier === "big" ? "big" : tier === "ghost" ? "ghost" : undefined }`
  )
  return { dir, strategies }
}

describe("routing strategies (the bundle)", () => {
  it.live(
    "header-router: X-Hestia-Service b → b (cold-started), none → the router's own; throw, loop → the default; unknown → 404; websockets too",
    () =>
      Effect.gen(function* () {
        const [entry] = ensureBundle()
        const { dir, strategies } = strategiesDir()
        const ports = { router: yield* Effect.promise(freePort), b: yield* Effect.promise(freePort) }
        const external = (strategy: string) =>
          JSON.stringify({
            base_url: `http://127.0.0.1:${ports.router}`,
            health_url: `http://127.0.0.1:${ports.router}/health`,
            strategy
          })
        const file = Path.join(dir, "hestia.yml")
        writeFileSync(
          file,
          `server: { host: 127.0.0.1, port: 0 }
log_level: debug
strategies_dir: ${JSON.stringify(strategies)}
strategy_timeout_ms: 1000
services:
${processService("router", ports.router, { settings: { strategy: "header-router", idle_timeout_ms: 0 } })}${processService("b", ports.b, { settings: { idle_timeout_ms: 0 } })}  throws: ${external("thrower")}
  loops: ${external("looper")}
  lost: ${external("nowhere")}
`
        )
        const gateway = yield* startGateway(file, { HESTIA_DATABASE: Path.join(dir, "hestia.db") }, [entry!])
        const status = (id: string) => Effect.map(callJson(`${gateway.url}/v1/services/${id}/status`), (r) => r.json)

        // No header, no prefix of the router's: the router's own upstream (started for it).
        const own = yield* callJson(`${gateway.url}/services/router/who?x=1`)
        assert.strictEqual(own.status, 200)
        assert.strictEqual(own.json.pid, yield* pidOf(ports.router))
        assert.strictEqual(own.json.url, "/who?x=1")
        assert.strictEqual((yield* status("b")).state, "cold")

        // The header names b: b is started as a request to /services/b would start it, and answers.
        const routed = yield* callJson(`${gateway.url}/services/router/who?x=2`, {
          headers: { "x-hestia-service": "b", "x-request-id": "routed-1" }
        })
        assert.strictEqual(routed.status, 200)
        assert.strictEqual(routed.json.pid, yield* pidOf(ports.b))
        assert.strictEqual(routed.json.url, "/who?x=2")
        // X-Forwarded-* as for the client's own request (to the router's address), X-Request-ID kept.
        assert.strictEqual(routed.json.headers["x-forwarded-host"], new URL(gateway.url).host)
        assert.strictEqual(routed.json.headers["x-request-id"], "routed-1")
        assert.strictEqual(routed.headers["x-request-id"], "routed-1")
        assert.strictEqual((yield* status("b")).state, "hot")
        const line = logged(gateway, "routed").find((entry) => entry.requestId === "routed-1")
        assert.deepStrictEqual([line?.serviceId, line?.to, line?.strategy], ["router", "b", "header-router"])
        // Counted for b: its requests and its activity.
        const metrics = (yield* call(`${gateway.url}/metrics`)).text
        assert.match(metrics, /hestia_requests_total\{code="2xx",service="b"\} 1\b/)
        assert.isNotNull((yield* status("b")).lastActivity)

        // A throw, a synchronous loop (cut at strategy_timeout_ms): the default rule, the service's own base URL.
        for (const id of ["throws", "loops"]) {
          const answer = yield* callJson(`${gateway.url}/services/${id}/who`)
          assert.strictEqual(answer.status, 200, id)
          assert.strictEqual(answer.json.pid, yield* pidOf(ports.router), id)
        }
        const failures = logged(gateway, "strategy_failed").map((entry) => [entry.strategy, entry.reason])
        assert.deepInclude(failures, ["thrower", "threw"])
        assert.deepInclude(failures, ["looper", "timeout"])

        // An id that is no configured service: 404 UnknownService for it, as a client's would be; logged by name.
        const lost = yield* callJson(`${gateway.url}/services/lost/who`)
        assert.strictEqual(lost.status, 404)
        assert.deepStrictEqual([lost.json.error, lost.json.serviceId], ["UnknownService", "ghost"])
        const unknown = logged(gateway, "routed_unknown")
        assert.deepStrictEqual(
          [unknown[0]?.strategy, unknown[0]?.serviceId, unknown[0]?.to],
          ["nowhere", "lost", "ghost"]
        )
        const named = yield* callJson(`${gateway.url}/services/router/who`, { headers: { "x-hestia-service": "nope" } })
        assert.deepStrictEqual([named.status, named.json.serviceId], [404, "nope"])

        // A websocket handshake is routed the same way.
        const wsUrl = `${gateway.url.replace("http", "ws")}/services/router/ws`
        const toB = yield* opened(wsUrl, { headers: { "x-hestia-service": "b" } })
        assert.strictEqual(Number(toB.headers["x-upstream-pid"]), yield* pidOf(ports.b))
        const toRouter = yield* opened(wsUrl)
        assert.strictEqual(Number(toRouter.headers["x-upstream-pid"]), yield* pidOf(ports.router))
      }).pipe(Effect.scoped)
  )

  it.live(
    "model_strategy: a body field chooses the service before the catalog; none → by model; unknown → 404 in the API's format",
    () =>
      Effect.gen(function* () {
        const [entry] = ensureBundle()
        const { dir, strategies } = strategiesDir()
        const ports = { small: yield* Effect.promise(freePort), big: yield* Effect.promise(freePort) }
        const file = Path.join(dir, "hestia.yml")
        // Both serve "chat"; the catalog gives it to small (big claims no model of its own).
        writeFileSync(
          file,
          `server: { host: 127.0.0.1, port: 0 }
strategies_dir: ${JSON.stringify(strategies)}
strategy_timeout_ms: 1000
model_strategy: by-tier
services:
${modelService("small", ports.small, { serves: ["chat"] })}${modelService("big", ports.big, { serves: ["chat"], models: [] })}`
        )
        const gateway = yield* startGateway(file, { HESTIA_DATABASE: Path.join(dir, "hestia.db") }, [entry!])
        const chat = (body: Record<string, unknown>) =>
          callJson(`${gateway.url}/openai/v1/chat/completions`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ model: "chat", messages: [{ role: "user", content: "hi" }], ...body })
          })
        const seen = (port: number) =>
          Effect.map(callJson(`http://127.0.0.1:${port}/_seen`), (r) => (r.json as Array<{ path: string }>).length)

        const byModel = yield* chat({})
        assert.strictEqual(byModel.status, 200)
        assert.strictEqual(yield* seen(ports.small), 1)

        const byTier = yield* chat({ tier: "big" })
        assert.strictEqual(byTier.status, 200)
        assert.strictEqual(byTier.json.model, "chat")
        assert.strictEqual(yield* seen(ports.big), 1)
        assert.strictEqual(yield* seen(ports.small), 1)

        // A strategy's answer wins even where the body names no known model.
        const unknownModel = yield* chat({ model: "not-in-the-catalog", tier: "big" })
        assert.strictEqual(unknownModel.status, 404, "big itself refuses a model it does not serve")
        assert.strictEqual(yield* seen(ports.big), 2)

        const ghost = yield* chat({ tier: "ghost" })
        assert.strictEqual(ghost.status, 404)
        assert.strictEqual(ghost.json.error.code, "unknown_service")
        assert.strictEqual(ghost.json.error.hestia.serviceId, "ghost")
        const ollama = yield* callJson(`${gateway.url}/ollama/api/chat`, {
          method: "POST",
          body: JSON.stringify({ model: "chat", tier: "ghost", stream: false })
        })
        assert.strictEqual(ollama.status, 404)
        assert.strictEqual(ollama.json.error, 'unknown service "ghost"')
      }).pipe(Effect.scoped)
  )

  it.live(
    "a strategy of the wrong kind for its use, or a missing model_strategy, stops the start (exit 2, one line)",
    () =>
      Effect.gen(function* () {
        const [entry] = ensureBundle()
        const { dir } = strategiesDir()
        const shipped = Path.join(repoRoot, "strategies")
        const cases: ReadonlyArray<readonly [string, RegExp]> = [
          [
            `services:\n  a: { base_url: "http://127.0.0.1:1", strategy: round-robin }\n`,
            /services\.a\.strategy: "round-robin" is a balance strategy: it picks one of a service's instances:, and a has none/
          ],
          [
            `services:\n  a: { instances: ["http://127.0.0.1:1"], strategy: lru-placement }\n`,
            /services\.a\.strategy: "lru-placement" is a placement strategy: it orders the machines a start tries, and a service with instances: starts none/
          ],
          [
            `model_strategy: round-robin\nservices: {}\n`,
            /model_strategy: "round-robin" is a balance strategy: the model endpoints need a routing strategy/
          ],
          [
            `model_strategy: nothing-here\nservices: {}\n`,
            /model_strategy: no strategy named "nothing-here" in strategies_dir/
          ]
        ]
        for (const [yaml, message] of cases) {
          const file = Path.join(dir, "wrong.yml")
          writeFileSync(
            file,
            `server: { host: 127.0.0.1, port: 0 }\nstrategies_dir: ${JSON.stringify(shipped)}\n${yaml}`
          )
          const exit = yield* Effect.either(startGateway(file, { HESTIA_DATABASE: ":memory:" }, [entry!]))
          assert.isTrue(exit._tag === "Left", yaml)
          const output = exit._tag === "Left" ? exit.left.message : ""
          assert.match(output, /gateway exited \(2\)/, yaml)
          assert.match(output, /hestia: configuration error: /, yaml)
          assert.match(output, message, yaml)
        }
      }).pipe(Effect.scoped)
  )
})
