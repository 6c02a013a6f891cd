import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Fiber, Layer, Queue, TestClock } from "effect"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { type LifecycleEvent, LifecycleEvents } from "../../src/registry/LifecycleEvents.ts"
import { ServiceRegistry } from "../../src/registry/ServiceRegistry.ts"
import * as Simulated from "../fixtures/SimulatedMachines.ts"

const service = (port: number) =>
  JSON.stringify({ base_url: `http://127.0.0.1:${port}`, warmup_ms: 0, retry_count: 0, idle_timeout_ms: 0 })

const yaml = (group: Record<string, unknown>, extra = "") => `services:
  a: ${service(1)}
  b: ${service(2)}
  w: ${service(3)}
${extra}groups:
  gpu: ${JSON.stringify({ exclusive: true, members: ["a", "b", "w"], persistent: ["w"], ...group })}
`

const withGroup = (group: Record<string, unknown>, bootMs = 1_000, options: Simulated.SimulatedOptions = {}) =>
  Effect.provide(
    ServiceRegistry.Default.pipe(
      Layer.provideMerge(Simulated.layer(() => Simulated.ready(bootMs), options)),
      Layer.provideMerge(LifecycleEvents.Default),
      Layer.provide(HestiaConfig.layerYaml(yaml(group)))
    )
  )

const stateOf = (id: string) => Effect.flatMap(ServiceRegistry, (registry) => registry.status(id))
const calls = Effect.flatMap(Simulated.SimulatedMachines, (m) => m.calls).pipe(
  Effect.map((all) => all.map((c) => `${c.op} ${c.serviceId} @${c.at}`))
)

const recordEvents = Effect.gen(function* () {
  const subscription = yield* Effect.flatMap(LifecycleEvents, (events) => events.subscribe)
  return Effect.map(Queue.takeAll(subscription), (chunk) => Array.from(chunk) as ReadonlyArray<LifecycleEvent>)
})

/** Let forked fibers run until `check` holds on the registry (no Clock time passes). */
const until = (check: Effect.Effect<boolean, unknown, ServiceRegistry>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 10_000; i++) {
      if (yield* check) return
      yield* Effect.yieldNow()
    }
    throw new Error("condition never held")
  })

describe("exclusive groups (Simulated machines, TestClock)", () => {
  it.scoped("a request for B while A is hot: A drains its open request, stops, then B starts", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const events = yield* recordEvents
      const first = yield* Effect.fork(registry.acquire("a"))
      yield* TestClock.adjust("1 second")
      const stream = yield* Fiber.join(first) // an open request on A from t = 1 s
      const forB = yield* Effect.fork(registry.acquire("b"))
      yield* until(Effect.map(stateOf("a"), (s) => s.draining?.by === "b"))
      assert.strictEqual((yield* stateOf("b")).waitingFor, "a")
      // While A drains, a new request for A waits instead of joining it.
      const laterA = yield* Effect.fork(Effect.either(registry.acquire("a")))
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual((yield* stateOf("a")).state, "hot", "not stopped while its request is open")
      assert.strictEqual((yield* stateOf("b")).state, "starting")
      stream.release() // t = 11 s
      yield* TestClock.adjust("1 second")
      const leaseB = yield* Fiber.join(forB)
      assert.strictEqual(leaseB.target.machineId, "local")
      assert.deepStrictEqual(yield* calls, ["start a @0", "stop a @11000", "start b @11000"])
      const evicted = (yield* events).find((e) => e.type === "evicted")
      assert.deepStrictEqual(evicted && { ...evicted, at: undefined }, {
        type: "evicted",
        serviceId: "a",
        machineId: "local",
        by: "b",
        waitedMs: 10_000,
        cut: 0,
        at: undefined
      })
      // A's waiting request swaps A back in once B has made room in turn.
      leaseB.release()
      yield* TestClock.adjust("2 seconds")
      const again = yield* Fiber.join(laterA)
      assert.isTrue(Either.isRight(again))
      assert.deepStrictEqual((yield* calls).slice(3), ["stop b @12000", "start a @12000"])
    }).pipe(withGroup({}))
  )

  it.scoped("the persistent member is never evicted and never waits", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      yield* registry.start("w")
      yield* registry.start("a")
      yield* TestClock.adjust("1 second")
      yield* registry.start("b")
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual((yield* stateOf("w")).state, "hot")
      assert.strictEqual((yield* stateOf("a")).state, "cold")
      assert.strictEqual((yield* stateOf("b")).state, "hot")
      assert.isFalse((yield* calls).includes("stop w @1000"))
    }).pipe(withGroup({}))
  )

  it.scoped("min_hot_ms: a member is not evicted before it has been hot that long", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      yield* registry.start("a") // hot at t = 1 s
      yield* TestClock.adjust("2 seconds")
      yield* registry.start("b") // asks at t = 2 s
      yield* TestClock.adjust("28999 millis")
      assert.strictEqual((yield* stateOf("a")).state, "hot", "hot for 30 s at t = 31 s: not yet evicted at 30.999")
      yield* TestClock.adjust("1 millis")
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* calls, ["start a @0", "stop a @31000", "start b @31000"])
    }).pipe(withGroup({ min_hot_ms: 30_000 }))
  )

  it.scoped("drain_timeout_ms: a request that never ends is cut off after that long, and the eviction says so", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const events = yield* recordEvents
      const first = yield* Effect.fork(registry.acquire("a"))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(first) // never released
      yield* registry.start("b")
      yield* TestClock.adjust("59 seconds")
      assert.strictEqual((yield* stateOf("a")).state, "hot")
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* stateOf("b")).state, "hot")
      const evicted = (yield* events).find((e) => e.type === "evicted")
      assert.strictEqual(evicted?.type === "evicted" && evicted.waitedMs, 60_000)
      assert.strictEqual(evicted?.type === "evicted" && evicted.cut, 1)
    }).pipe(withGroup({ drain_timeout_ms: 60_000 }))
  )

  it.scoped("two members alternating under load: every request answered, swaps in arrival order, none starved", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      // 20 requests, a and b alternating, one every 100 ms, each holding its lease for 300 ms.
      const fibers = []
      for (let i = 0; i < 20; i++) {
        const id = i % 2 === 0 ? "a" : "b"
        fibers.push(
          yield* Effect.fork(
            registry.acquire(id).pipe(
              Effect.tap((lease) => Effect.delay(Effect.sync(lease.release), "300 millis")),
              Effect.as(id)
            )
          )
        )
        yield* TestClock.adjust("100 millis")
      }
      yield* TestClock.adjust("1 minute")
      const answered = yield* Fiber.joinAll(fibers)
      assert.strictEqual(answered.length, 20)
      const starts = (yield* calls).filter((c) => c.startsWith("start")).map((c) => c.split(" ")[1])
      // Each start is the other member's: a strict alternation, never the same one twice in a row.
      for (let i = 1; i < starts.length; i++) assert.notStrictEqual(starts[i], starts[i - 1])
      assert.isAtLeast(starts.length, 2)
    }).pipe(withGroup({}, 200))
  )

  it.scoped("a stop request cancels a start waiting for its group, which then leaves the queue", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const held = yield* Effect.fork(registry.acquire("a"))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(held)
      yield* registry.start("b")
      yield* until(Effect.map(stateOf("b"), (s) => s.waitingFor === "a"))
      assert.strictEqual(yield* registry.stop("b"), "starting")
      yield* TestClock.adjust("1 hour")
      assert.strictEqual((yield* stateOf("a")).state, "hot", "nothing waits for its place any more")
      assert.strictEqual((yield* stateOf("b")).state, "cold")
    }).pipe(withGroup({ drain_timeout_ms: 10 * 3_600_000 }))
  )

  it.effect("a member of two exclusive groups is a config error", () =>
    Effect.gen(function* () {
      const result = yield* Effect.either(
        Effect.provide(
          HestiaConfig,
          HestiaConfig.layerYaml(
            yaml({}).replace("groups:\n", `groups:\n  other: ${JSON.stringify({ exclusive: true, members: ["a"] })}\n`)
          )
        )
      )
      assert.isTrue(Either.isLeft(result))
      assert.match(
        (result as Either.Left<any, any>).left.message,
        /groups\.gpu\.members\.0: "a" is a member of exclusive group "other"/
      )
    })
  )
})
