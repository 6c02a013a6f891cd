import { assert, describe, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Fiber, Layer, Option, Stream, TestClock } from "effect"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { eventStream } from "../../src/http/ObservabilityRoutes.ts"
import { LifecycleEvents } from "../../src/registry/LifecycleEvents.ts"
import { ServiceRegistry } from "../../src/registry/ServiceRegistry.ts"
import { parseSseFrame } from "../fixtures/Observability.ts"
import * as Simulated from "../fixtures/SimulatedMachines.ts"

const yaml = `services:\n  svc: ${JSON.stringify({ base_url: "http://127.0.0.1:1", warmup_ms: 0, idle_timeout_ms: 0 })}\n`

const withRegistry = Effect.provide(
  Layer.mergeAll(ServiceRegistry.Default, LifecycleEvents.Default).pipe(
    Layer.provideMerge(Simulated.layer(() => Simulated.ready(1_000))),
    Layer.provide(HestiaConfig.layerYaml(yaml))
  )
)

const frame = (text: string) => parseSseFrame(text.replace(/\n\n$/, ""))

describe("Live events (SSE frames from the lifecycle bus)", () => {
  it.effect("a subscriber sees a snapshot, then cold → starting → hot and the lifecycle events, in order", () =>
    Effect.gen(function* () {
      const registry = yield* ServiceRegistry
      const subscribed = yield* Deferred.make<void>()
      const collector = yield* eventStream({ capacity: 64, heartbeat: "1 hour" }).pipe(
        Stream.map(frame),
        Stream.tap((f) => (f.event === "snapshot" ? Deferred.succeed(subscribed, undefined) : Effect.void)),
        Stream.takeUntil((f) => f.event === "ready"),
        Stream.runCollect,
        Effect.fork
      )
      yield* Deferred.await(subscribed)
      const waiter = yield* Effect.fork(registry.acquire("svc", "sse-req"))
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(waiter)
      const frames = Chunk.toReadonlyArray(yield* Fiber.join(collector))
      assert.deepStrictEqual(JSON.parse(frames[0]!.data).services, [{ serviceId: "svc", state: "cold", machine: null }])
      const states = frames.filter((f) => f.event === "state").map((f) => JSON.parse(f.data))
      assert.deepStrictEqual(
        states.map((s) => [s.serviceId, s.from, s.to, s.machine]),
        [
          ["svc", "cold", "starting", null],
          ["svc", "starting", "hot", "local"]
        ]
      )
      assert.strictEqual(states[1].at, new Date(1_000).toISOString())
      const kinds = frames.map((f) => f.event)
      assert.strictEqual(kinds[0], "snapshot")
      assert.strictEqual(kinds.at(-1), "ready")
      assert.includeMembers(kinds, ["start_requested", "request_queued", "attempt_started"])
      assert.isBelow(kinds.indexOf("start_requested"), kinds.indexOf("attempt_started"))
      const queued = JSON.parse(frames.find((f) => f.event === "request_queued")!.data)
      assert.strictEqual(queued.requestId, "sse-req")
    }).pipe(withRegistry)
  )

  it.effect("heartbeats keep a quiet connection alive", () =>
    Effect.gen(function* () {
      const fiber = yield* eventStream({ capacity: 8, heartbeat: "15 seconds" }).pipe(
        Stream.map(frame),
        Stream.filter((f) => f.event === ":comment"),
        Stream.take(2),
        Stream.runCollect,
        Effect.fork
      )
      yield* TestClock.adjust("30 seconds")
      const beats = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      assert.strictEqual(beats.length, 2)
    }).pipe(withRegistry)
  )

  it.scoped("a subscriber that does not keep up is dropped; the bus and the gateway go on", () =>
    Effect.gen(function* () {
      const events = yield* LifecycleEvents
      const pull = yield* Stream.toPull(eventStream({ capacity: 4, heartbeat: "1 hour" }).pipe(Stream.map(frame)))
      // The first pull opens the subscription (the snapshot).
      const first = yield* pull
      assert.strictEqual(Chunk.unsafeHead(first).event, "snapshot")
      // The subscriber reads nothing while 100 events are published: emit never waits for it.
      for (let i = 0; i < 100; i++) {
        yield* events.emit({ type: "request_queued", serviceId: "svc", at: i, position: i, requestId: `r${i}` })
      }
      const received: Array<{ event: string; data: string }> = []
      for (;;) {
        const chunk = yield* Effect.option(pull)
        if (Option.isNone(chunk)) break
        received.push(...Chunk.toReadonlyArray(chunk.value))
      }
      assert.isBelow(received.length, 100)
      assert.strictEqual(received.at(-1)?.event, "dropped")
      assert.strictEqual(JSON.parse(received.at(-1)!.data).capacity, 4)
      // A fresh subscriber still works.
      const again = yield* Stream.toPull(eventStream({ capacity: 4, heartbeat: "1 hour" }).pipe(Stream.map(frame)))
      assert.strictEqual(Chunk.unsafeHead(yield* again).event, "snapshot")
    }).pipe(withRegistry)
  )
})
