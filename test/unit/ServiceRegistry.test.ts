import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Exit, Fiber, Layer, Ref, TestClock } from "effect"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { ServiceRegistry } from "../../src/registry/ServiceRegistry.ts"
import { untilQueued } from "../fixtures/Registry.ts"
import * as Simulated from "../fixtures/SimulatedMachines.ts"

const service = (settings: Record<string, unknown>) =>
  `services:\n  svc: ${JSON.stringify({ base_url: "http://127.0.0.1:1", warmup_ms: 0, ...settings })}\n`

const withRegistry = (yaml: string, script: Simulated.SimulatedScript) =>
  Effect.provide(
    ServiceRegistry.Default.pipe(
      Layer.provideMerge(Simulated.layer(script)),
      Layer.provide(HestiaConfig.layerYaml(yaml))
    )
  )

const calls = (op: "start" | "stop") =>
  Effect.map(Simulated.SimulatedMachines, (machines) => machines.calls).pipe(
    Effect.flatten,
    Effect.map((all) => all.filter((call) => call.op === op))
  )

const state = Effect.flatMap(ServiceRegistry, (registry) => registry.status("svc"))

describe("ServiceRegistry (Simulated machines, TestClock)", () => {
  it.effect("1000 concurrent requests to a cold service cause exactly one start", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const fibers = yield* Effect.forEach(Array.from({ length: 1000 }), () => Effect.fork(registry.acquire("svc")))
      yield* untilQueued(1000)
      yield* TestClock.adjust("5 seconds")
      const leases = yield* Fiber.joinAll(fibers)
      assert.strictEqual(leases.length, 1000)
      assert.strictEqual((yield* calls("start")).length, 1)
      assert.strictEqual((yield* state).inFlight, 1000)
      for (const lease of leases) lease.release()
      assert.strictEqual((yield* state).inFlight, 0)
    }).pipe(withRegistry(service({ queue_size: 1000, idle_timeout_ms: 0 }), () => Simulated.ready(5_000)))
  )

  it.effect("retries retry_count times, retry_delay_ms apart, and cleans up each failed attempt", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const fiber = yield* Effect.fork(registry.acquire("svc"))
      yield* untilQueued(1)
      yield* TestClock.adjust("10 seconds")
      const lease = yield* Fiber.join(fiber)
      assert.strictEqual(lease.target.machineId, "local")
      // boot 100 ms, then 1000 ms between attempts.
      assert.deepStrictEqual(
        (yield* calls("start")).map((c) => c.at),
        [0, 1_100, 2_200]
      )
      assert.deepStrictEqual(
        (yield* calls("stop")).map((c) => c.at),
        [100, 1_200]
      )
      assert.strictEqual((yield* state).state, "hot")
    }).pipe(
      withRegistry(service({ retry_count: 2, retry_delay_ms: 1000, idle_timeout_ms: 0 }), ({ attempt }) =>
        attempt <= 2 ? Simulated.fail(100) : Simulated.ready(100)
      )
    )
  )

  it.effect("moves to the fallback after every local attempt fails; status names the fallback machine", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const fiber = yield* Effect.fork(registry.acquire("svc"))
      yield* untilQueued(1)
      yield* TestClock.adjust("1 minute")
      const lease = yield* Fiber.join(fiber)
      assert.strictEqual(lease.target.machineId, "fallback")
      assert.strictEqual(lease.target.baseUrl, "http://127.0.0.1:2")
      assert.deepStrictEqual(
        (yield* calls("start")).map((c) => `${c.machineId}#${c.attempt}`),
        ["local#1", "local#2", "fallback#1"]
      )
      const status = yield* state
      assert.strictEqual(status.machineId, "fallback")
      assert.strictEqual(status.baseUrl, "http://127.0.0.1:2")
    }).pipe(
      withRegistry(
        service({ retry_count: 1, retry_delay_ms: 500, fallback_url: "http://127.0.0.1:2", idle_timeout_ms: 0 }),
        ({ machineId }) => (machineId === "local" ? Simulated.fail(10, "no GPU") : Simulated.ready(10))
      )
    )
  )

  it.effect(
    "all machines fail → StartupFailed with every attempt; cold with lastError; the next request starts afresh",
    () =>
      Effect.gen(function* () {
        const registry = yield* ServiceRegistry
        const waiters = yield* Effect.forEach(Array.from({ length: 3 }), () =>
          Effect.fork(Effect.either(registry.acquire("svc")))
        )
        yield* untilQueued(3)
        yield* TestClock.adjust("1 minute")
        const results = yield* Fiber.joinAll(waiters)
        for (const result of results) {
          assert.isTrue(Either.isLeft(result))
          const error = (result as Either.Left<any, any>).left
          assert.strictEqual(error._tag, "StartupFailed")
          assert.deepStrictEqual(
            error.attempts.map((a: any) => [a.machine, a.attempt, a.error, a.message]),
            [
              ["local", 1, "SimulatedFailure", "boom"],
              ["local", 2, "SimulatedFailure", "boom"],
              ["fallback", 1, "SimulatedFailure", "boom"],
              ["fallback", 2, "SimulatedFailure", "boom"]
            ]
          )
        }
        const status = yield* state
        assert.strictEqual(status.state, "cold")
        assert.strictEqual(status.lastError?.error, "StartupFailed")
        assert.strictEqual(status.lastError?.attempts.length, 4)

        const again = yield* Effect.fork(Effect.either(registry.acquire("svc")))
        yield* untilQueued(1)
        yield* TestClock.adjust("1 minute")
        yield* Fiber.join(again)
        assert.strictEqual((yield* calls("start")).length, 8)
      }).pipe(
        withRegistry(
          service({ retry_count: 1, retry_delay_ms: 250, fallback_url: "http://127.0.0.1:2", queue_size: 5 }),
          () => Simulated.fail(50, "boom")
        )
      )
  )

  it.effect("a full queue is refused with QueueFull at once", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      yield* Effect.fork(registry.acquire("svc"))
      yield* Effect.fork(registry.acquire("svc"))
      yield* untilQueued(2)
      const third = yield* Effect.either(registry.acquire("svc"))
      assert.isTrue(Either.isLeft(third))
      assert.strictEqual((third as Either.Left<any, any>).left._tag, "QueueFull")
      assert.strictEqual((third as Either.Left<any, any>).left.capacity, 2)
    }).pipe(withRegistry(service({ queue_size: 2 }), () => Simulated.ready(10_000)))
  )

  it.effect("a request waits at most request_timeout_seconds (QueueTimeout), then leaves the queue", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const fiber = yield* Effect.fork(Effect.either(registry.acquire("svc")))
      yield* untilQueued(1)
      yield* TestClock.adjust("4999 millis")
      assert.isNull(fiber.unsafePoll())
      yield* TestClock.adjust("1 millis")
      const result = yield* Fiber.join(fiber)
      assert.isTrue(Either.isLeft(result))
      const error = (result as Either.Left<any, any>).left
      assert.strictEqual(error._tag, "QueueTimeout")
      assert.strictEqual(error.waitedMs, 5000)
      assert.strictEqual((yield* state).queuePending, 0)
    }).pipe(withRegistry(service({ request_timeout_seconds: 5 }), () => Simulated.ready(60_000)))
  )

  it.effect("stops the service idle_timeout_ms after the last request ended, not before", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const fiber = yield* Effect.fork(registry.acquire("svc"))
      yield* untilQueued(1)
      yield* TestClock.adjust("1 second")
      const lease = yield* Fiber.join(fiber)
      yield* TestClock.adjust("30 seconds")
      lease.release() // last activity at t = 31 s
      yield* TestClock.adjust("599999 millis")
      assert.strictEqual((yield* state).state, "hot")
      yield* TestClock.adjust("1 millis")
      assert.strictEqual((yield* state).state, "cold")
      assert.deepStrictEqual(
        (yield* calls("stop")).map((c) => c.at),
        [631_000]
      )
    }).pipe(withRegistry(service({ idle_timeout_ms: 600_000 }), () => Simulated.ready(1_000)))
  )

  it.effect("never stops a service while a request or stream is open", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const fiber = yield* Effect.fork(registry.acquire("svc"))
      yield* untilQueued(1)
      yield* TestClock.adjust("0 millis")
      const stream = yield* Fiber.join(fiber)
      yield* TestClock.adjust("3 hours")
      assert.strictEqual((yield* state).state, "hot")
      stream.release()
      yield* TestClock.adjust("59 seconds")
      assert.strictEqual((yield* state).state, "hot")
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* state).state, "cold")
    }).pipe(withRegistry(service({ idle_timeout_ms: 60_000 }), () => Simulated.ready(0)))
  )

  it.effect("idle_timeout_ms 0 never stops", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const fiber = yield* Effect.fork(registry.acquire("svc"))
      yield* untilQueued(1)
      yield* TestClock.adjust("0 millis")
      ;(yield* Fiber.join(fiber)).release()
      yield* TestClock.adjust("30 days")
      assert.strictEqual((yield* state).state, "hot")
      assert.strictEqual((yield* calls("stop")).length, 0)
    }).pipe(withRegistry(service({ idle_timeout_ms: 0 }), () => Simulated.ready(0)))
  )

  it.effect("releases waiting requests in arrival order", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const order = yield* Ref.make<ReadonlyArray<number>>([])
      const fibers = []
      for (let i = 0; i < 50; i++) {
        fibers.push(
          yield* Effect.fork(registry.acquire("svc").pipe(Effect.tap(() => Ref.update(order, (seen) => [...seen, i]))))
        )
        yield* untilQueued(i + 1)
      }
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.joinAll(fibers)
      assert.deepStrictEqual(
        yield* Ref.get(order),
        Array.from({ length: 50 }, (_, i) => i)
      )
    }).pipe(withRegistry(service({}), () => Simulated.ready(2_000)))
  )

  it.effect("a crash after start sends the service back to cold; the next request starts it again", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const first = yield* Effect.fork(registry.acquire("svc"))
      yield* untilQueued(1)
      yield* TestClock.adjust("100 millis")
      ;(yield* Fiber.join(first)).release()
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual((yield* state).state, "cold")
      const second = yield* Effect.fork(registry.acquire("svc"))
      yield* untilQueued(1)
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(second)
      assert.strictEqual((yield* state).state, "hot")
      assert.strictEqual((yield* calls("start")).length, 2)
    }).pipe(
      withRegistry(service({ idle_timeout_ms: 0 }), ({ attempt }) =>
        attempt === 1 ? Simulated.crash(100, 5_000) : Simulated.ready(100)
      )
    )
  )

  it.effect("a stop request during a start cancels it: waiters get StartupFailed, the attempt is cleaned up", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const waiter = yield* Effect.fork(registry.acquire("svc"))
      yield* untilQueued(1)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* registry.stop("svc"), "starting")
      const exit = yield* Fiber.await(waiter)
      assert.isTrue(Exit.isFailure(exit))
      assert.strictEqual((yield* state).state, "cold")
      assert.strictEqual((yield* calls("stop")).length, 1)
    }).pipe(withRegistry(service({}), () => Simulated.ready(60_000)))
  )

  it.effect("start via the API: cold → starting → hot without any request", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      assert.strictEqual(yield* registry.start("svc"), "cold")
      assert.strictEqual((yield* state).state, "starting")
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* state).state, "hot")
      assert.strictEqual(yield* registry.start("svc"), "hot")
      assert.strictEqual((yield* calls("start")).length, 1)
    }).pipe(withRegistry(service({ idle_timeout_ms: 0 }), () => Simulated.ready(1_000)))
  )

  it.effect("an unknown service is UnknownService", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const result = yield* Effect.either(registry.acquire("nope"))
      assert.isTrue(Either.isLeft(result))
      assert.strictEqual((result as Either.Left<any, any>).left._tag, "UnknownService")
    }).pipe(withRegistry(service({}), () => Simulated.ready(0)))
  )
})
