import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Fiber, Layer, Queue, TestClock } from "effect"
import { HestiaConfig, parse } from "../../src/config/HestiaConfig.ts"
import { LiveConfig } from "../../src/config/LiveConfig.ts"
import { type LifecycleEvent, LifecycleEvents } from "../../src/registry/LifecycleEvents.ts"
import { ServiceRegistry } from "../../src/registry/ServiceRegistry.ts"
import { untilQueued } from "../fixtures/Registry.ts"
import * as Simulated from "../fixtures/SimulatedMachines.ts"

const svc = (port: number, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ base_url: `http://127.0.0.1:${port}`, warmup_ms: 0, retry_count: 0, idle_timeout_ms: 0, ...extra })

const yaml = (services: Record<string, string>) =>
  `services:\n${Object.entries(services)
    .map(([id, body]) => `  ${id}: ${body}\n`)
    .join("")}`

const initial = yaml({ svc: svc(1), other: svc(2) })

const withLive = Effect.provide(
  Layer.mergeAll(ServiceRegistry.Default, LiveConfig.Default).pipe(
    Layer.provideMerge(Simulated.layer(() => Simulated.ready(1_000))),
    Layer.provideMerge(LifecycleEvents.Default),
    Layer.provide(HestiaConfig.layerYaml(initial))
  )
)

/** Apply YAML as a reload would (parsed as a start would, then every follower). */
const reloadWith = (text: string) =>
  Effect.gen(function* () {
    const live = yield* LiveConfig
    const settings = yield* parse(text, "reloaded config", ":memory:")
    return yield* live.apply(settings)
  })

const status = (id: string) => Effect.flatMap(ServiceRegistry, (registry) => registry.status(id))

const recordEvents = Effect.gen(function* () {
  const subscription = yield* Effect.flatMap(LifecycleEvents, (events) => events.subscribe)
  return Effect.map(Queue.takeAll(subscription), (chunk) => Array.from(chunk) as ReadonlyArray<LifecycleEvent>)
})

describe("live configuration: the registry follows a reload (Simulated machines, TestClock)", () => {
  it.scoped("a new service appears cold and starts on its first request; the others are untouched", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      yield* registry.start("svc")
      yield* TestClock.adjust("1 second")
      const outcome = yield* reloadWith(yaml({ svc: svc(1), other: svc(2), added: svc(3) }))
      assert.deepStrictEqual([outcome.added, outcome.removed, outcome.changed], [["added"], [], []])
      assert.strictEqual((yield* status("added")).state, "cold")
      assert.strictEqual((yield* status("svc")).state, "hot", "an unchanged service keeps running")
      const lease = yield* Effect.fork(registry.acquire("added"))
      yield* untilQueued(1, "added")
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* Fiber.join(lease)).target.baseUrl, "http://127.0.0.1:3")
    }).pipe(withLive)
  )

  it.scoped("a removed service is unknown at once, finishes its open request, then stops; it never restarts", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const events = yield* recordEvents
      const first = yield* Effect.fork(registry.acquire("other"))
      yield* untilQueued(1, "other")
      yield* TestClock.adjust("1 second")
      const open = yield* Fiber.join(first)
      yield* reloadWith(yaml({ svc: svc(1) }))
      const unknown = yield* Effect.either(registry.acquire("other"))
      assert.strictEqual(Either.isLeft(unknown) && unknown.left._tag, "UnknownService")
      yield* TestClock.adjust("1 minute")
      const calls = yield* Effect.flatMap(Simulated.SimulatedMachines, (m) => m.calls)
      assert.isFalse(
        calls.some((c) => c.op === "stop" && c.serviceId === "other"),
        "not stopped while its request is open"
      )
      open.release()
      yield* TestClock.adjust("1 second")
      const stopped = (yield* events).find((e) => e.type === "stopped" && e.serviceId === "other")
      assert.strictEqual(stopped?.type === "stopped" && stopped.reason, "removed")
      assert.strictEqual(
        (yield* Effect.flatMap(Simulated.SimulatedMachines, (m) => m.calls)).filter(
          (c) => c.op === "start" && c.serviceId === "other"
        ).length,
        1
      )
    }).pipe(withLive)
  )

  it.scoped("a changed service keeps serving its open request; new ones wait and get the new settings", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const first = yield* Effect.fork(registry.acquire("svc"))
      yield* untilQueued(1)
      yield* TestClock.adjust("1 second")
      const open = yield* Fiber.join(first)
      assert.strictEqual(open.target.baseUrl, "http://127.0.0.1:1")
      const outcome = yield* reloadWith(yaml({ svc: svc(11), other: svc(2) }))
      assert.deepStrictEqual(outcome.changed, ["svc"])
      for (let i = 0; i < 1_000 && (yield* status("svc")).draining === undefined; i++) yield* Effect.yieldNow()
      assert.strictEqual((yield* status("svc")).draining?.by, "configuration")
      const waiting = yield* Effect.fork(registry.acquire("svc"))
      yield* untilQueued(1)
      yield* TestClock.adjust("10 seconds")
      assert.isNull(waiting.unsafePoll(), "waits while the old instance serves its open request")
      open.release()
      yield* TestClock.adjust("2 seconds")
      const next = yield* Fiber.join(waiting)
      assert.strictEqual(next.target.baseUrl, "http://127.0.0.1:11")
    }).pipe(withLive)
  )

  it.scoped("a change that does not concern the running instance (idle_timeout_ms) applies at once", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const lease = yield* Effect.fork(registry.acquire("svc"))
      yield* untilQueued(1)
      yield* TestClock.adjust("1 second")
      ;(yield* Fiber.join(lease)).release() // last activity at t = 1 s; idle_timeout_ms 0: never stopped
      yield* reloadWith(yaml({ svc: svc(1, { idle_timeout_ms: 60_000 }), other: svc(2) }))
      assert.strictEqual((yield* status("svc")).state, "hot", "not restarted for a timeout")
      assert.isUndefined((yield* status("svc")).draining)
      // Idle since t = 1 s, stopped at t = 61 s by the running instance's new reaper.
      yield* TestClock.adjust("59999 millis")
      assert.strictEqual((yield* status("svc")).state, "hot")
      yield* TestClock.adjust("1 millis")
      assert.strictEqual((yield* status("svc")).state, "cold")
      const calls = yield* Effect.flatMap(Simulated.SimulatedMachines, (m) => m.calls)
      assert.strictEqual(calls.filter((c) => c.op === "start").length, 1)
    }).pipe(withLive)
  )
})
