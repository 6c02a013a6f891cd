import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { MachineConfig, ServiceConfig } from "../../src/config/HestiaConfig.ts"
import { Strategies } from "../../src/strategies/Strategies.ts"
import { repoRoot } from "../fixtures/Gateway.ts"
import { listed, strategiesLayer, strategiesYaml } from "../fixtures/Strategies.ts"

// The examples shipped in strategies/, loaded as the gateway loads them (bundled, in their own worker threads).

const layer = strategiesLayer(
  strategiesYaml(Path.join(repoRoot, "strategies"), {
    llama: "header-router",
    gpu: "lru-placement",
    pool: ["round-robin", ["http://127.0.0.1:1", "http://127.0.0.1:2"]]
  })
)

const service = (id: string) =>
  ({ id, kind: "external", baseUrl: "http://x", machines: [] }) as unknown as ServiceConfig
const machine = (id: string): MachineConfig => ({
  id,
  host: `${id}.lan`,
  semaphoreMachineId: undefined,
  labels: {},
  dockerUrl: undefined,
  containerDiscovery: false
})

describe("the example strategies", () => {
  it.live("all three load, each of its kind", () =>
    Effect.gen(function* () {
      const view = yield* listed
      assert.deepStrictEqual(
        view.strategies.map((s) => [s.name, s.kind, Path.basename(s.file!), s.error]),
        [
          ["header-router", "routing", "header-router.ts", undefined],
          ["lru-placement", "placement", "lru-placement.ts", undefined],
          ["round-robin", "balance", "round-robin.js", undefined]
        ]
      )
    }).pipe(Effect.provide(layer))
  )

  it.live("header-router: the X-Hestia-Service header, else a path prefix, else no decision", () =>
    Effect.gen(function* () {
      const strategies = yield* Strategies
      const route = (path: string, headers: Record<string, string> = {}) =>
        strategies.route("header-router", { method: "POST", path, headers })
      assert.strictEqual(yield* route("/v1/chat", { "X-Hestia-Service": "whisper" }), "whisper")
      assert.strictEqual(yield* route("/v1/chat", { "x-hestia-service": " coder " }), "coder")
      // A header that is no service id is ignored.
      assert.strictEqual(yield* route("/chat/x", { "X-Hestia-Service": "../etc" }), "llama")
      assert.strictEqual(yield* route("/chat/completions?stream=1"), "llama")
      assert.strictEqual(yield* route("/chat"), "llama")
      assert.strictEqual(yield* route("/code/complete"), "coder")
      assert.strictEqual(yield* route("/chatty"), undefined)
      assert.strictEqual(yield* route("/"), undefined)
    }).pipe(Effect.provide(layer))
  )

  it.live("lru-placement: the machine a start picked least recently first, never-picked first, ties in order", () =>
    Effect.gen(function* () {
      const strategies = yield* Strategies
      const machines = ["m1", "m2", "m3", "m4"].map(machine)
      const place = (lastStartedOn: Record<string, number>) =>
        strategies.place("lru-placement", service("gpu"), machines, { now: 10_000, hot: [], lastStartedOn })
      assert.deepStrictEqual(yield* place({}), ["m1", "m2", "m3", "m4"])
      assert.deepStrictEqual(yield* place({ m1: 300, m2: 100, m4: 200 }), ["m3", "m2", "m4", "m1"])
      // As starts go by: each start takes the head, which becomes the most recent.
      const last: Record<string, number> = {}
      const picks: Array<string> = []
      for (let t = 1; t <= 6; t++) {
        const order = (yield* place(last))!
        picks.push(order[0]!)
        last[order[0]!] = t
      }
      assert.deepStrictEqual(picks, ["m1", "m2", "m3", "m4", "m1", "m2"])
    }).pipe(Effect.provide(layer))
  )

  it.live("round-robin: the next healthy instance in turn, per service; none healthy is no decision", () =>
    Effect.gen(function* () {
      const strategies = yield* Strategies
      const instances = [
        { url: "http://a", healthy: true, inFlight: 0, labels: {} },
        { url: "http://b", healthy: false, inFlight: 0, labels: {} },
        { url: "http://c", healthy: true, inFlight: 3, labels: {} }
      ]
      const pick = (id: string, list = instances) =>
        Effect.map(strategies.balance("round-robin", service(id), list), (instance) => instance?.url)
      const picks: Array<string | undefined> = []
      for (let i = 0; i < 5; i++) picks.push(yield* pick("pool"))
      assert.deepStrictEqual(picks, ["http://a", "http://c", "http://a", "http://c", "http://a"])
      // Another service has its own turn.
      assert.strictEqual(yield* pick("other"), "http://a")
      // b healthy again: it gets its turn.
      const recovered = instances.map((instance) => ({ ...instance, healthy: true }))
      assert.deepStrictEqual([yield* pick("pool", recovered), yield* pick("pool", recovered)], ["http://b", "http://c"])
      assert.strictEqual(
        yield* pick(
          "pool",
          instances.map((instance) => ({ ...instance, healthy: false }))
        ),
        undefined
      )
    }).pipe(Effect.provide(layer))
  )
})
