import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Metric, MetricBoundaries, TestClock } from "effect"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import * as Metrics from "../../src/observability/Metrics.ts"
import { ServiceRegistry } from "../../src/registry/ServiceRegistry.ts"
import { parsePrometheus, sampleValue } from "../fixtures/Observability.ts"
import { untilQueued } from "../fixtures/Registry.ts"
import * as Simulated from "../fixtures/SimulatedMachines.ts"

// Effect's metric registry is global to the process: every test uses its own service ids and reads deltas.
const yamlFor = (id: string, settings: Record<string, unknown> = {}) =>
  `services:\n  ${id}: ${JSON.stringify({ base_url: "http://127.0.0.1:1", warmup_ms: 0, idle_timeout_ms: 0, ...settings })}\n`

const withMetrics = (yaml: string, script: Simulated.SimulatedScript) =>
  Effect.provide(
    Layer.mergeAll(ServiceRegistry.Default, Metrics.Metrics.Default).pipe(
      Layer.provideMerge(Simulated.layer(script)),
      Layer.provide(HestiaConfig.layerYaml(yaml))
    )
  )

const scrape = Effect.gen(function* () {
  const metrics = yield* Metrics.Metrics
  return parsePrometheus(yield* metrics.prometheus)
})

/** Let the bus subscriber catch up (it runs in its own fiber) until `check` holds. */
const settled = <A>(effect: Effect.Effect<A, never, any>, check: (a: A) => boolean) =>
  Effect.gen(function* () {
    for (let i = 0; i < 1_000; i++) {
      const value = yield* effect
      if (check(value)) return value
      yield* Effect.yieldNow()
    }
    return yield* effect
  })

describe("Metrics: Prometheus text exposition from Effect's Metric registry", () => {
  it.effect("counters, gauges and histograms with HELP/TYPE, escaped labels, cumulative buckets", () =>
    Effect.gen(function* () {
      const counter = Metric.counter("test_expo_things_total", { description: "Things.\nCounted \\ here." })
      yield* Metric.incrementBy(counter.pipe(Metric.tagged("service", 'we"ird\\name\n')), 3)
      yield* Metric.set(Metric.gauge("test_expo_level", { description: "A level." }).pipe(Metric.tagged("a", "b")), 7)
      const histogram = Metric.histogram(
        "test_expo_seconds",
        MetricBoundaries.fromIterable([0.1, 1, 10]),
        "Durations."
      ).pipe(Metric.tagged("service", "x"))
      for (const value of [0.05, 0.5, 5, 50]) yield* Metric.update(histogram, value)

      const text = yield* Metrics.prometheusText()
      const parsed = parsePrometheus(text)
      assert.strictEqual(parsed.types.get("test_expo_things_total"), "counter")
      assert.strictEqual(parsed.help.get("test_expo_things_total"), "Things.\\nCounted \\\\ here.")
      assert.strictEqual(sampleValue(parsed, "test_expo_things_total", { service: 'we"ird\\name\n' }), 3)
      assert.strictEqual(parsed.types.get("test_expo_level"), "gauge")
      assert.strictEqual(sampleValue(parsed, "test_expo_level", { a: "b" }), 7)
      assert.strictEqual(parsed.types.get("test_expo_seconds"), "histogram")
      assert.deepStrictEqual(
        ["0.1", "1", "10", "+Inf"].map((le) => sampleValue(parsed, "test_expo_seconds_bucket", { service: "x", le })),
        [1, 2, 3, 4]
      )
      assert.strictEqual(sampleValue(parsed, "test_expo_seconds_count", { service: "x" }), 4)
      assert.closeTo(sampleValue(parsed, "test_expo_seconds_sum", { service: "x" }), 55.55, 1e-9)
    })
  )

  it("status classes: 1xx..5xx, anything else is its own bounded class", () => {
    assert.deepStrictEqual([101, 200, 204, 302, 404, 499, 502, 0, 700].map(Metrics.statusClass), [
      "1xx",
      "2xx",
      "2xx",
      "3xx",
      "4xx",
      "4xx",
      "5xx",
      "none",
      "none"
    ])
  })

  it.effect("request metrics: per service and status class, duration histogram; unknown services pooled", () =>
    Effect.gen(function* () {
      const recorder = Metrics.requestRecorder((id) => id === "rq-a" || id === "rq-b")
      recorder.observe("rq-a", 200, 0.002)
      recorder.observe("rq-a", 201, 0.3)
      recorder.observe("rq-a", 503, 1.5)
      recorder.observe("rq-b", 404, 0.01)
      recorder.observe("not-configured", 404, 0.01)
      const parsed = parsePrometheus(yield* Metrics.prometheusText())
      assert.strictEqual(sampleValue(parsed, "hestia_requests_total", { service: "rq-a", code: "2xx" }), 2)
      assert.strictEqual(sampleValue(parsed, "hestia_requests_total", { service: "rq-a", code: "5xx" }), 1)
      assert.strictEqual(sampleValue(parsed, "hestia_requests_total", { service: "rq-b", code: "4xx" }), 1)
      assert.isAtLeast(sampleValue(parsed, "hestia_requests_total", { service: "_unknown", code: "4xx" }), 1)
      assert.isFalse(parsed.samples.some((sample) => sample.labels.service === "not-configured"))
      assert.strictEqual(sampleValue(parsed, "hestia_request_duration_seconds_count", { service: "rq-a" }), 3)
      assert.closeTo(sampleValue(parsed, "hestia_request_duration_seconds_sum", { service: "rq-a" }), 1.802, 1e-9)
    })
  )
})

describe("Metrics: lifecycle metrics follow the event bus (Simulated machines, TestClock)", () => {
  it.effect(
    "a cold start with one failed attempt: attempts by outcome, cold start outcome and duration, queue wait",
    () =>
      Effect.gen(function* () {
        const registry = yield* ServiceRegistry
        const fiber = yield* Effect.fork(registry.acquire("mx-retry"))
        yield* untilQueued(1, "mx-retry")
        yield* TestClock.adjust("10 seconds")
        ;(yield* Fiber.join(fiber)).release()
        const parsed = yield* settled(
          scrape,
          (p) => sampleValue(p, "hestia_cold_starts_total", { service: "mx-retry", outcome: "success" }) === 1
        )
        assert.strictEqual(
          sampleValue(parsed, "hestia_cold_starts_total", { service: "mx-retry", outcome: "success" }),
          1
        )
        assert.strictEqual(
          sampleValue(parsed, "hestia_cold_starts_total", { service: "mx-retry", outcome: "failure" }),
          0
        )
        assert.strictEqual(
          sampleValue(parsed, "hestia_startup_attempts_total", {
            service: "mx-retry",
            machine: "local",
            outcome: "failure"
          }),
          1
        )
        assert.strictEqual(
          sampleValue(parsed, "hestia_startup_attempts_total", {
            service: "mx-retry",
            machine: "local",
            outcome: "success"
          }),
          1
        )
        // 1 s failing boot, 1 s retry delay, 1 s boot: 3 s.
        assert.strictEqual(
          sampleValue(parsed, "hestia_cold_start_duration_seconds_count", { service: "mx-retry", outcome: "success" }),
          1
        )
        assert.strictEqual(
          sampleValue(parsed, "hestia_cold_start_duration_seconds_sum", { service: "mx-retry", outcome: "success" }),
          3
        )
        assert.strictEqual(sampleValue(parsed, "hestia_queue_wait_seconds_count", { service: "mx-retry" }), 1)
        assert.strictEqual(sampleValue(parsed, "hestia_queue_wait_seconds_sum", { service: "mx-retry" }), 3)
        assert.strictEqual(sampleValue(parsed, "hestia_service_state", { service: "mx-retry", state: "hot" }), 1)
        assert.strictEqual(sampleValue(parsed, "hestia_service_state", { service: "mx-retry", state: "cold" }), 0)
      }).pipe(
        withMetrics(yamlFor("mx-retry", { retry_count: 1, retry_delay_ms: 1000 }), ({ attempt }) =>
          attempt === 1 ? Simulated.fail(1_000) : Simulated.ready(1_000)
        )
      )
  )

  it.effect("failed starts, queue depth and in-flight while waiting, idle stops", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      // Three requests wait for a start that will fail.
      const waiting = yield* Effect.forEach([1, 2, 3], () => Effect.fork(Effect.either(registry.acquire("mx-flaky"))))
      yield* untilQueued(3, "mx-flaky")
      let parsed = yield* scrape
      assert.strictEqual(sampleValue(parsed, "hestia_queue_depth", { service: "mx-flaky" }), 3)
      assert.strictEqual(sampleValue(parsed, "hestia_service_state", { service: "mx-flaky", state: "starting" }), 1)
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.joinAll(waiting)
      parsed = yield* settled(
        scrape,
        (p) => sampleValue(p, "hestia_cold_starts_total", { service: "mx-flaky", outcome: "failure" }) === 1
      )
      assert.strictEqual(
        sampleValue(parsed, "hestia_cold_starts_total", { service: "mx-flaky", outcome: "failure" }),
        1
      )
      assert.strictEqual(sampleValue(parsed, "hestia_queue_depth", { service: "mx-flaky" }), 0)

      // The next start works; one request in flight, then the idle reaper stops it.
      const fiber = yield* Effect.fork(registry.acquire("mx-flaky"))
      yield* untilQueued(1, "mx-flaky")
      yield* TestClock.adjust("2 seconds")
      const lease = yield* Fiber.join(fiber)
      parsed = yield* scrape
      assert.strictEqual(sampleValue(parsed, "hestia_in_flight", { service: "mx-flaky" }), 1)
      lease.release()
      yield* TestClock.adjust("1 minute")
      parsed = yield* settled(scrape, (p) => sampleValue(p, "hestia_idle_stops_total", { service: "mx-flaky" }) === 1)
      assert.strictEqual(sampleValue(parsed, "hestia_idle_stops_total", { service: "mx-flaky" }), 1)
      assert.strictEqual(sampleValue(parsed, "hestia_in_flight", { service: "mx-flaky" }), 0)
      assert.strictEqual(sampleValue(parsed, "hestia_service_state", { service: "mx-flaky", state: "cold" }), 1)
    }).pipe(
      withMetrics(yamlFor("mx-flaky", { idle_timeout_ms: 30_000, queue_size: 10, retry_count: 0 }), ({ attempt }) =>
        attempt === 1 ? Simulated.fail(1_000) : Simulated.ready(1_000)
      )
    )
  )

  it.effect("JSON: every metric with its labels; one service's view holds only its own", () =>
    Effect.gen(function* () {
      const metrics = yield* Metrics.Metrics
      const registry = yield* ServiceRegistry
      yield* registry.start("mx-json")
      yield* TestClock.adjust("1 second")
      const all = yield* settled(metrics.json(), (m) =>
        m.metrics.some(
          (metric) =>
            metric.name === "hestia_cold_starts_total" &&
            metric.labels.service === "mx-json" &&
            metric.labels.outcome === "success" &&
            metric.value === 1
        )
      )
      const histogram = all.metrics.find(
        (metric) => metric.name === "hestia_cold_start_duration_seconds" && metric.labels.service === "mx-json"
      )
      assert.strictEqual(histogram?.type, "histogram")
      assert.strictEqual(histogram?.count, 1)
      assert.strictEqual(histogram?.buckets?.at(-1)?.[0], "+Inf")
      const one = yield* metrics.json("mx-json")
      assert.isAbove(one.metrics.length, 0)
      assert.isTrue(one.metrics.every((metric) => metric.labels.service === "mx-json"))
    }).pipe(withMetrics(yamlFor("mx-json"), () => Simulated.ready(500)))
  )
})
