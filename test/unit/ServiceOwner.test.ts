import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Fiber, Layer, LogLevel, Queue, TestClock } from "effect"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { type LifecycleEvent, LifecycleEvents } from "../../src/registry/LifecycleEvents.ts"
import { ServiceRegistry } from "../../src/registry/ServiceRegistry.ts"
import { captureLogs } from "../fixtures/Observability.ts"
import { untilQueued } from "../fixtures/Registry.ts"
import * as Simulated from "../fixtures/SimulatedMachines.ts"

const yaml = (settings: Record<string, unknown>) =>
  `services:\n  svc: ${JSON.stringify({ base_url: "http://127.0.0.1:1", warmup_ms: 0, retry_count: 0, ...settings })}\n`

const withOwner = (settings: Record<string, unknown>, script: Simulated.SimulatedScript, options = {}) =>
  Effect.provide(
    ServiceRegistry.Default.pipe(
      Layer.provideMerge(Simulated.layer(script, options)),
      Layer.provideMerge(LifecycleEvents.Default),
      Layer.provide(HestiaConfig.layerYaml(yaml(settings)))
    )
  )

const status = Effect.flatMap(ServiceRegistry, (registry) => registry.status("svc"))
const state = Effect.map(status, (s) => s.state)
const starts = Effect.flatMap(Simulated.SimulatedMachines, (m) => m.calls).pipe(
  Effect.map((calls) => calls.filter((c) => c.op === "start").length)
)

/** Every event from now on, for order assertions. */
const recordEvents = Effect.gen(function* () {
  const subscription = yield* Effect.flatMap(LifecycleEvents, (events) => events.subscribe)
  return Effect.map(Queue.takeAll(subscription), (chunk) =>
    Array.from(chunk, (event: LifecycleEvent) =>
      event.type === "state"
        ? `${event.from}→${event.to}`
        : event.type === "stopped"
          ? `stopped:${event.reason}`
          : event.type
    ).filter((line) => !line.startsWith("request_"))
  )
})

/** Hot at t = boot, with no request open. */
const makeHot = Effect.gen(function* () {
  const registry = yield* ServiceRegistry
  yield* registry.start("svc")
  yield* TestClock.adjust("1 second")
  assert.strictEqual(yield* state, "hot")
})

describe("ServiceOwner transitions (Simulated machines, TestClock)", () => {
  it.scoped("a request during stopping waits, and the service starts again once the stop has ended", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      yield* makeHot
      const events = yield* recordEvents
      yield* registry.stop("svc")
      assert.strictEqual(yield* state, "stopping")
      const waiter = yield* Effect.fork(registry.acquire("svc"))
      yield* untilQueued(1)
      yield* TestClock.adjust("4999 millis")
      assert.strictEqual(yield* state, "stopping")
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* state, "starting")
      yield* TestClock.adjust("1 second")
      const lease = yield* Fiber.join(waiter)
      assert.strictEqual(lease.target.machineId, "local")
      assert.strictEqual(yield* starts, 2)
      assert.deepStrictEqual(yield* events, [
        "hot→stopping",
        "stopping→cold",
        "stopped:api",
        "start_requested",
        "cold→starting",
        "attempt_started",
        "starting→hot",
        "ready"
      ])
      lease.release()
    }).pipe(withOwner({ idle_timeout_ms: 0 }, () => Simulated.ready(1_000), { stopMs: 5_000 }))
  )

  it.scoped("start during stopping starts after the stop; a stop request meanwhile takes that back", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      yield* makeHot
      yield* registry.stop("svc")
      assert.strictEqual(yield* registry.start("svc"), "stopping")
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(yield* state, "starting")
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* state, "hot")
      yield* registry.stop("svc")
      yield* registry.start("svc")
      assert.strictEqual(yield* registry.stop("svc"), "stopping")
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(yield* state, "cold")
      assert.strictEqual(yield* starts, 2)
    }).pipe(withOwner({ idle_timeout_ms: 0 }, () => Simulated.ready(1_000), { stopMs: 5_000 }))
  )

  it.scoped("stop during start: cold at once; the waiters hear only after the attempt has been cleaned up", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const waiter = yield* Effect.fork(Effect.either(registry.acquire("svc")))
      yield* untilQueued(1)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* registry.stop("svc"), "starting")
      assert.strictEqual(yield* state, "cold")
      yield* TestClock.adjust("2999 millis")
      assert.isNull(waiter.unsafePoll(), "still waiting while the attempt is cleaned up")
      yield* TestClock.adjust("1 millis")
      const result = yield* Fiber.join(waiter)
      assert.isTrue(Either.isLeft(result))
      const error = (result as Either.Left<any, any>).left
      assert.strictEqual(error._tag, "StartupFailed")
      assert.deepStrictEqual(
        error.attempts.map((a: any) => [a.machine, a.attempt, a.error]),
        [["local", 1, "Interrupted"]]
      )
      assert.strictEqual((yield* status).lastError?.attempts[0]?.error, "Interrupted")
    }).pipe(withOwner({}, () => Simulated.ready(60_000), { stopMs: 3_000 }))
  )

  it.scoped("a crash while hot: upstream_gone, stopping, stopped (gone), cold; the next request starts it again", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const events = yield* recordEvents
      yield* registry.start("svc")
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual(yield* state, "cold")
      assert.deepStrictEqual(yield* events, [
        "start_requested",
        "cold→starting",
        "attempt_started",
        "starting→hot",
        "ready",
        "upstream_gone",
        "hot→stopping",
        "stopping→cold",
        "stopped:gone"
      ])
      // Cold with what it died of, until it is ready again.
      assert.strictEqual((yield* status).lastError?.error, "ProcessExited")
      const again = yield* Effect.fork(registry.acquire("svc"))
      yield* untilQueued(1)
      yield* TestClock.adjust("1 second")
      ;(yield* Fiber.join(again)).release()
      assert.strictEqual(yield* starts, 2)
    }).pipe(
      withOwner({ idle_timeout_ms: 0 }, ({ attempt }) =>
        attempt === 1 ? Simulated.crash(1_000, 10_000) : Simulated.ready(1_000)
      )
    )
  )

  it.scoped("status during a start names the machine and the attempt; a request that gives up is told the same", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const waiter = yield* Effect.fork(Effect.either(registry.acquire("svc")))
      yield* untilQueued(1)
      yield* TestClock.adjust("100 millis")
      const during = yield* status
      assert.strictEqual(during.state, "starting")
      assert.strictEqual(during.machineId, "local")
      assert.deepStrictEqual(
        [during.attempt?.machine, during.attempt?.number, during.attempt?.of, during.attempt?.phase],
        ["local", 2, 2, "starting"]
      )
      assert.deepStrictEqual(
        during.lastError,
        null,
        "a start in progress keeps the previous error only; there was none"
      )
      yield* TestClock.adjust("1900 millis")
      const result = yield* Fiber.join(waiter)
      const error = (result as Either.Left<any, any>).left
      assert.strictEqual(error._tag, "QueueTimeout")
      assert.strictEqual(error.waitedMs, 2_000)
      assert.deepStrictEqual(
        error.attempts.map((a: any) => [a.machine, a.attempt, a.error]),
        [["local", 1, "SimulatedFailure"]]
      )
      assert.deepStrictEqual([error.attempt.number, error.attempt.of, error.attempt.phase], [2, 2, "starting"])
      // The start goes on without it; a later request joins it rather than starting another.
      const later = yield* Effect.fork(registry.acquire("svc"))
      yield* untilQueued(1)
      yield* TestClock.adjust("1100 millis")
      ;(yield* Fiber.join(later)).release()
      assert.strictEqual(yield* starts, 2)
    }).pipe(
      withOwner({ retry_count: 1, retry_delay_ms: 50, request_timeout_seconds: 2 }, ({ attempt }) =>
        attempt === 1 ? Simulated.fail(50, "no GPU") : Simulated.ready(3_000)
      )
    )
  )

  it.scoped("a failed stop is an event, and the service still ends cold", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      yield* makeHot
      const events = yield* recordEvents
      yield* registry.stop("svc")
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* state, "cold")
      assert.deepStrictEqual(yield* events, ["hot→stopping", "stop_failed", "stopping→cold", "stopped:api"])
    }).pipe(withOwner({ idle_timeout_ms: 0 }, () => Simulated.ready(1_000), { stopFails: "refused" }))
  )

  it.scoped("a start in progress says so every 5 s: how long, which attempt, what the last probe answered", () => {
    const lines: Array<string> = []
    return Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      yield* registry.start("svc")
      yield* TestClock.adjust("12 seconds")
      assert.strictEqual(yield* state, "hot")
      yield* TestClock.adjust("1 minute")
      const still = lines.map((line) => JSON.parse(line)).filter((entry) => entry.event === "still_starting")
      assert.deepStrictEqual(
        still.map((entry) => [entry.elapsedMs, entry.attempt, entry.phase]),
        [
          [5_000, 1, "starting"],
          [10_000, 1, "starting"]
        ],
        "two lines while it started, none once hot"
      )
      assert.strictEqual(still[0].msg, "svc: still starting: 5 s, attempt 1/1 on local, starting")
    }).pipe(
      withOwner({ idle_timeout_ms: 0 }, () => Simulated.ready(12_000)),
      Effect.provide(captureLogs(lines, LogLevel.Info))
    )
  })
})
