import { assert, describe, it } from "@effect/vitest"
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-base"
import { Effect, Either, Fiber, Layer, Option, TestClock } from "effect"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import * as Telemetry from "../../src/observability/Telemetry.ts"
import { ContainerRecords } from "../../src/orchestrators/ContainerRecords.ts"
import { Orchestrator } from "../../src/orchestrators/Orchestrator.ts"
import { SemaphoreTasks } from "../../src/orchestrators/SemaphoreTasks.ts"
import { ServiceRegistry } from "../../src/registry/ServiceRegistry.ts"
import { childrenOf, renderTree, spanId } from "../fixtures/Observability.ts"
import { untilQueued } from "../fixtures/Registry.ts"
import * as Simulated from "../fixtures/SimulatedMachines.ts"

const service = (settings: Record<string, unknown>) =>
  `services:\n  svc: ${JSON.stringify({ base_url: "http://127.0.0.1:1", idle_timeout_ms: 0, ...settings })}\n`

/** Runs `test` against a registry whose spans go to a fresh in-memory exporter (a provider shuts its exporter down). */
const traced = <A, E>(
  yaml: string,
  script: Simulated.SimulatedScript,
  test: (exporter: InMemorySpanExporter) => Effect.Effect<A, E, ServiceRegistry>
) =>
  Effect.suspend(() => {
    const exporter = new InMemorySpanExporter()
    return test(exporter).pipe(
      Effect.provide(
        ServiceRegistry.Default.pipe(
          Layer.provideMerge(Simulated.layer(script)),
          Layer.provide(HestiaConfig.layerYaml(yaml)),
          Layer.provideMerge(Telemetry.layerExporter(exporter))
        )
      )
    )
  })

const named = (spans: ReadonlyArray<ReadableSpan>, name: string) => spans.filter((span) => span.name === name)
const only = (spans: ReadonlyArray<ReadableSpan>, name: string) => {
  const found = named(spans, name)
  assert.strictEqual(found.length, 1, `exactly one ${name} span (found ${found.length})`)
  return found[0]!
}
const ERROR = 2

describe("Telemetry: the trace of a cold start (Simulated machines, TestClock, in-memory exporter)", () => {
  it.effect(
    "one failed attempt then success: coldStart → machine → attempts → Orchestrator.start / Readiness.wait",
    () =>
      traced(
        service({ retry_count: 1, retry_delay_ms: 500, warmup_ms: 300 }),
        ({ attempt }) => (attempt === 1 ? Simulated.fail(120, "no GPU free") : Simulated.ready(2_000)),
        (exporter) =>
          Effect.gen(function* () {
            const registry = yield* ServiceRegistry
            const fiber = yield* Effect.fork(registry.acquire("svc", "req-1"))
            yield* untilQueued(1)
            yield* TestClock.adjust("10 seconds")
            yield* Fiber.join(fiber)
            const spans = exporter.getFinishedSpans()

            const coldStart = only(spans, "ServiceRegistry.coldStart")
            assert.isUndefined(coldStart.parentSpanContext, "a cold start is the root of its own trace")
            assert.strictEqual(coldStart.attributes["hestia.service.id"], "svc")
            assert.strictEqual(coldStart.attributes["hestia.trigger"], "request")
            assert.strictEqual(coldStart.attributes["hestia.outcome"], "ready")
            assert.strictEqual(coldStart.attributes["hestia.machine.id"], "local")
            assert.strictEqual(coldStart.attributes["hestia.attempts"], 2)
            assert.notStrictEqual(coldStart.status.code, ERROR)

            const machines = childrenOf(spans, coldStart)
            assert.deepStrictEqual(
              machines.map((span) => [span.name, span.attributes["hestia.machine.id"]]),
              [["ServiceRegistry.machine", "local"]]
            )
            const attempts = childrenOf(spans, machines[0]!)
            assert.deepStrictEqual(
              attempts.map((span) => [span.name, span.attributes["hestia.attempt"]]),
              [
                ["ServiceRegistry.attempt", 1],
                ["ServiceRegistry.attempt", 2]
              ]
            )
            const [failed, succeeded] = attempts as [ReadableSpan, ReadableSpan]
            assert.strictEqual(failed.status.code, ERROR)
            assert.strictEqual(failed.attributes["error.type"], "SimulatedFailure")
            assert.notStrictEqual(succeeded.status.code, ERROR)

            const failedChildren = childrenOf(spans, failed)
            assert.deepStrictEqual(
              failedChildren.map((span) => span.name),
              ["Orchestrator.start"]
            )
            assert.strictEqual(failedChildren[0]!.status.code, ERROR)
            assert.strictEqual(failedChildren[0]!.attributes["error.type"], "SimulatedFailure")
            assert.strictEqual(failedChildren[0]!.attributes["hestia.machine.id"], "local")

            const succeededChildren = childrenOf(spans, succeeded)
            assert.deepStrictEqual(
              succeededChildren.map((span) => span.name),
              ["Orchestrator.start", "Readiness.wait"]
            )
            const readiness = succeededChildren[1]!
            assert.strictEqual(readiness.attributes["hestia.readiness.probes"], 0)
            assert.strictEqual(readiness.attributes["hestia.readiness.mode"], "warmup")

            // The request that triggered the start is linked both ways.
            const acquire = only(spans, "ServiceRegistry.acquire")
            assert.isTrue(acquire.links.some((link) => link.context.spanId === spanId(coldStart)))
            assert.isTrue(coldStart.links.some((link) => link.context.spanId === spanId(acquire)))
            assert.deepStrictEqual(
              coldStart.events.map((event) => [event.name, event.attributes?.["hestia.request.id"]]),
              [["hestia.request.triggered", "req-1"]]
            )
            if (process.env.HESTIA_PRINT_TRACE) console.log(renderTree(spans, coldStart))
          })
      )
  )

  it.effect("50 concurrent cold requests: one coldStart span, an event and a link for every request", () =>
    traced(
      service({ queue_size: 100 }),
      () => Simulated.ready(1_000),
      (exporter) =>
        Effect.gen(function* () {
          const registry = yield* ServiceRegistry
          const fibers = yield* Effect.forEach(
            Array.from({ length: 50 }, (_, i) => i),
            (i) => Effect.fork(registry.acquire("svc", `req-${i}`))
          )
          yield* untilQueued(50)
          yield* TestClock.adjust("5 seconds")
          yield* Fiber.joinAll(fibers)
          const spans = exporter.getFinishedSpans()

          const coldStart = only(spans, "ServiceRegistry.coldStart")
          const events = coldStart.events.map((event) => [event.name, event.attributes?.["hestia.request.id"]] as const)
          assert.strictEqual(events.length, 50)
          assert.strictEqual(events.filter(([name]) => name === "hestia.request.triggered").length, 1)
          assert.strictEqual(events.filter(([name]) => name === "hestia.request.joined").length, 49)
          assert.deepStrictEqual(
            events.map(([, id]) => id).sort(),
            Array.from({ length: 50 }, (_, i) => `req-${i}`).sort()
          )
          const acquires = named(spans, "ServiceRegistry.acquire")
          assert.strictEqual(acquires.length, 50)
          for (const acquire of acquires) {
            assert.isTrue(
              acquire.links.some((link) => link.context.spanId === spanId(coldStart)),
              "every waiting request links to the cold start it waited for"
            )
          }
        })
    )
  )

  it.effect("every attempt failing: coldStart is an error tagged StartupFailed, outcome failed", () =>
    traced(
      service({ retry_count: 0, fallback_url: "http://127.0.0.1:2" }),
      () => Simulated.fail(10, "boom"),
      (exporter) =>
        Effect.gen(function* () {
          const registry = yield* ServiceRegistry
          const fiber = yield* Effect.fork(Effect.either(registry.acquire("svc")))
          yield* untilQueued(1)
          yield* TestClock.adjust("1 minute")
          assert.isTrue(Either.isLeft(yield* Fiber.join(fiber)))
          const spans = exporter.getFinishedSpans()
          const coldStart = only(spans, "ServiceRegistry.coldStart")
          assert.strictEqual(coldStart.status.code, ERROR)
          assert.strictEqual(coldStart.attributes["error.type"], "StartupFailed")
          assert.strictEqual(coldStart.attributes["hestia.outcome"], "failed")
          const machines = childrenOf(spans, coldStart)
          assert.deepStrictEqual(
            machines.map((span) => [span.attributes["hestia.machine.id"], span.status.code]),
            [
              ["local", ERROR],
              ["fallback", ERROR]
            ]
          )
          for (const attempt of named(spans, "ServiceRegistry.attempt")) {
            assert.strictEqual(attempt.attributes["error.type"], "SimulatedFailure")
          }
        })
    )
  )

  it.effect("a start from the API is its own trace with trigger api", () =>
    traced(
      service({}),
      () => Simulated.ready(100),
      (exporter) =>
        Effect.gen(function* () {
          const registry = yield* ServiceRegistry
          yield* registry.start("svc")
          yield* TestClock.adjust("10 seconds")
          const coldStart = only(exporter.getFinishedSpans(), "ServiceRegistry.coldStart")
          assert.strictEqual(coldStart.attributes["hestia.trigger"], "api")
          assert.strictEqual(coldStart.attributes["hestia.outcome"], "ready")
        })
    )
  )

  it.effect("an orchestrator's own span annotations (e.g. semaphore.task.id) land on Orchestrator.start", () =>
    Effect.gen(function* () {
      const exporter = new InMemorySpanExporter()
      const annotating = Layer.succeed(
        Orchestrator,
        Orchestrator.of({
          start: () =>
            Effect.as(Effect.annotateCurrentSpan({ "semaphore.task.id": 42, "semaphore.task.status": "success" }), {
              pid: undefined,
              exited: Effect.never
            }),
          stop: () => Effect.void,
          adopt: () => Effect.succeed(Option.none()),
          reclaim: () => Effect.succeed(false)
        })
      ).pipe(Layer.merge(SemaphoreTasks.layer), Layer.merge(ContainerRecords.layer))
      yield* Effect.gen(function* () {
        const registry = yield* ServiceRegistry
        yield* registry.start("svc")
        yield* TestClock.adjust("10 seconds")
        // Read before the layer closes: shutting the exporter down empties it.
        const start = only(exporter.getFinishedSpans(), "Orchestrator.start")
        assert.strictEqual(start.attributes["semaphore.task.id"], 42)
        assert.strictEqual(start.attributes["semaphore.task.status"], "success")
      }).pipe(
        Effect.provide(
          ServiceRegistry.Default.pipe(
            Layer.provide(annotating),
            Layer.provide(HestiaConfig.layerYaml(service({ warmup_ms: 0 }))),
            // Merged: the tracer must also be the test fiber's, which calls start.
            Layer.provideMerge(Telemetry.layerExporter(exporter))
          )
        )
      )
    })
  )
})
