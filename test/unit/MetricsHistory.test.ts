import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric, MetricLabel, TestClock } from "effect"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { requestsTotal } from "../../src/observability/Metrics.ts"
import { MAX_COLD_STARTS, MAX_SAMPLES, MetricsHistory } from "../../src/observability/MetricsHistory.ts"
import { LifecycleEvents } from "../../src/registry/LifecycleEvents.ts"

// Effect's metric registry is global to the process: each test counts requests of its own service ids.
const yamlFor = (...ids: ReadonlyArray<string>) =>
  `services:\n${ids.map((id) => `  ${id}: { base_url: "http://127.0.0.1:1" }\n`).join("")}`

const withHistory = (yaml: string) =>
  Effect.provide(
    Layer.mergeAll(MetricsHistory.Default, LifecycleEvents.Default).pipe(Layer.provide(HestiaConfig.layerYaml(yaml)))
  )

const count = (serviceId: string, code: string, n: number) =>
  Metric.incrementBy(
    Metric.taggedWithLabels(requestsTotal, [MetricLabel.make("service", serviceId), MetricLabel.make("code", code)]),
    n
  )

/** Let the history's fibers (sampler, event subscriber) run after the clock moved or an event was published. */
const settle = Effect.repeatN(Effect.yieldNow(), 50)

describe("MetricsHistory: the last hour in memory, sampled on Effect's Clock", () => {
  it.effect("requests/s per sampling interval, summed over status classes, per service", () =>
    Effect.gen(function* () {
      const history = yield* MetricsHistory
      yield* settle // the first sample, at time 0
      yield* count("hist-a", "2xx", 40)
      yield* count("hist-a", "5xx", 10)
      yield* count("hist-b", "2xx", 5)
      yield* TestClock.adjust("10 seconds")
      yield* settle
      yield* TestClock.adjust("10 seconds")
      yield* settle
      const read = yield* history.read()
      assert.strictEqual(read.intervalMs, 10_000)
      assert.strictEqual(read.windowMs, 3_600_000)
      assert.deepStrictEqual(read.services["hist-a"]!.requests, [
        { at: 10_000, perSecond: 5 },
        { at: 20_000, perSecond: 0 }
      ])
      assert.deepStrictEqual(
        read.services["hist-b"]!.requests.map((r) => r.perSecond),
        [0.5, 0]
      )
      const one = yield* history.read("hist-b")
      assert.deepStrictEqual(Object.keys(one.services), ["hist-b"])
      // Between samples, the last point is the interval in progress.
      yield* count("hist-a", "2xx", 10)
      yield* TestClock.adjust("5 seconds")
      assert.deepStrictEqual((yield* history.read("hist-a")).services["hist-a"]!.requests.at(-1), {
        at: 25_000,
        perSecond: 2
      })
    }).pipe(withHistory(yamlFor("hist-a", "hist-b")))
  )

  it.effect("cold starts from the lifecycle events, successes and failures, within the window", () =>
    Effect.gen(function* () {
      const history = yield* MetricsHistory
      const events = yield* LifecycleEvents
      yield* settle
      yield* events.emit({
        type: "ready",
        serviceId: "hist-c",
        machineId: "local",
        at: 1_000,
        durationMs: 640,
        released: 1
      })
      yield* events.emit({
        type: "start_failed",
        serviceId: "hist-c",
        at: 2_000,
        durationMs: 3_000,
        attempts: [],
        rejected: 0
      })
      yield* events.emit({ type: "ready", serviceId: "not-configured", at: 2_000, durationMs: 1, released: 0 })
      yield* settle
      assert.deepStrictEqual((yield* history.read("hist-c")).services["hist-c"]!.coldStarts, [
        { at: 1_000, durationMs: 640, outcome: "success", machine: "local" },
        { at: 2_000, durationMs: 3_000, outcome: "failure", machine: null }
      ])
      // An hour and a bit later both are out of the window.
      yield* TestClock.adjust("61 minutes")
      yield* settle
      assert.deepStrictEqual((yield* history.read("hist-c")).services["hist-c"]!.coldStarts, [])
    }).pipe(withHistory(yamlFor("hist-c")))
  )

  it.effect("bounded: one window of samples and at most MAX_COLD_STARTS starts per service", () =>
    Effect.gen(function* () {
      const history = yield* MetricsHistory
      const events = yield* LifecycleEvents
      yield* settle
      // An hour and a half of samples: the history keeps one hour's worth.
      yield* TestClock.adjust("90 minutes")
      yield* settle
      const requests = (yield* history.read("hist-d")).services["hist-d"]!.requests
      assert.strictEqual(requests.length, MAX_SAMPLES - 1)
      assert.strictEqual(requests[0]!.at, 30 * 60_000 + 10_000)
      const now = 90 * 60_000
      for (let i = 0; i < MAX_COLD_STARTS + 20; i++) {
        yield* events.emit({ type: "ready", serviceId: "hist-d", at: now - i, durationMs: i, released: 0 })
      }
      yield* settle
      assert.strictEqual((yield* history.read("hist-d")).services["hist-d"]!.coldStarts.length, MAX_COLD_STARTS)
    }).pipe(withHistory(yamlFor("hist-d")))
  )
})
