import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import {
  callJson,
  eventually,
  freePort,
  gatewayLayer,
  gatewayUrl,
  gatewayYaml,
  processService
} from "../fixtures/Gateway.ts"

const post = (url: string, headers: Record<string, string> = {}) => callJson(url, { method: "POST", headers })
const status = (base: string, id: string) => Effect.map(callJson(`${base}/v1/services/${id}/status`), (r) => r.json)

describe("explicit load and unload over HTTP (real processes)", () => {
  it.live(
    "start?wait=true answers once hot; a failing start answers its typed error; the request id is in the events",
    () =>
      Effect.gen(function* () {
        const [ok, dies] = [yield* Effect.promise(freePort), yield* Effect.promise(freePort)]
        const yaml = gatewayYaml(
          processService("ok", ok, { extraArgs: ["--boot-ms", "300"], settings: { idle_timeout_ms: 0 } }) +
            processService("dies", dies, { extraArgs: ["--exit-code", "3"] })
        )
        const context = yield* Layer.build(gatewayLayer(yaml))
        const base = yield* Effect.provide(gatewayUrl, context)

        const started = yield* post(`${base}/v1/services/ok/start?wait=true`, { "x-request-id": "load-ok-1" })
        assert.strictEqual(started.status, 200)
        assert.strictEqual(started.json.state, "hot")
        assert.strictEqual(started.json.started, true)
        const again = yield* post(`${base}/v1/services/ok/start?wait=true`)
        assert.strictEqual(again.status, 200)
        assert.strictEqual(again.json.started, false)

        const failed = yield* post(`${base}/v1/services/dies/start?wait=true`)
        assert.strictEqual(failed.status, 503)
        assert.strictEqual(failed.json.error, "StartupFailed")
        assert.deepStrictEqual(
          failed.json.attempts.map((a: { error: string }) => a.error),
          ["ProcessExited"]
        )
        const bad = yield* post(`${base}/v1/services/ok/start?wait=soon`)
        assert.strictEqual(bad.status, 400)

        // Without ?wait the answer comes at once (202 while it starts).
        yield* post(`${base}/v1/services/ok/stop`)
        yield* eventually(status(base, "ok"), (s) => s.state === "cold")
        const fast = yield* post(`${base}/v1/services/ok/start`)
        assert.strictEqual(fast.status, 202)
        assert.strictEqual(fast.json.state, "starting")

        const activity = yield* callJson(`${base}/v1/activity?serviceId=ok&limit=100`)
        const requested = activity.json.activity.filter((row: { type: string }) => row.type === "start_requested")
        assert.isTrue(requested.some((row: { requestId: string | null }) => row.requestId === "load-ok-1"))
      }).pipe(Effect.scoped)
  )

  it.live("POST /v1/groups/{name}/stop unloads every member; an unknown group is 404", () =>
    Effect.gen(function* () {
      const [a, b] = [yield* Effect.promise(freePort), yield* Effect.promise(freePort)]
      const yaml = `${gatewayYaml(
        processService("a", a, { settings: { idle_timeout_ms: 0 } }) +
          processService("b", b, { settings: { idle_timeout_ms: 0 } })
      )}groups:\n  pair: { members: [a, b] }\n`
      const context = yield* Layer.build(gatewayLayer(yaml))
      const base = yield* Effect.provide(gatewayUrl, context)
      for (const id of ["a", "b"])
        assert.strictEqual((yield* post(`${base}/v1/services/${id}/start?wait=1`)).status, 200)
      assert.strictEqual((yield* status(base, "a")).group, "pair")

      const stopped = yield* post(`${base}/v1/groups/pair/stop`)
      assert.strictEqual(stopped.status, 202)
      assert.deepStrictEqual(
        stopped.json.services.map((s: { serviceId: string }) => s.serviceId),
        ["a", "b"]
      )
      for (const id of ["a", "b"]) yield* eventually(status(base, id), (s) => s.state === "cold")

      const unknown = yield* post(`${base}/v1/groups/nope/stop`)
      assert.strictEqual(unknown.status, 404)
      assert.strictEqual(unknown.json.error, "UnknownGroup")
    }).pipe(Effect.scoped)
  )
})
