import { assert, describe, it } from "@effect/vitest"
import { Effect, FiberSet, TestClock } from "effect"
import { HestiaConfig, type ServiceConfig } from "../../src/config/HestiaConfig.ts"
import type { HealthCheck } from "../../src/domain/Instances.ts"
import { targetsFor } from "../../src/domain/Placement.ts"
import { type InstanceChange, InstanceSet } from "../../src/registry/InstanceSet.ts"

// The instance set's logic alone: the default pick, taking an instance out, the probe that brings it back in (on the
// TestClock), and a reload. The probe is a fake whose answers the test sets per URL.

const settingsOf = (yaml: string) => Effect.provide(HestiaConfig, HestiaConfig.layerYaml(yaml))

const poolYaml = (instances: string) => `services:
  pool:
    health_url: http://127.0.0.1:1/health
    instances: ${instances}
`

const setUp = (instances = `["http://a:1", "http://b:2", { url: "http://c:3", health_url: "http://c:3/ready" }]`) =>
  Effect.gen(function* () {
    const settings = yield* settingsOf(poolYaml(instances))
    const service = settings.services.get("pool")!
    const up = new Map<string, boolean>()
    const asked: Array<string> = []
    const changes: Array<InstanceChange> = []
    const run = yield* FiberSet.makeRuntime<never>()
    const clock = yield* Effect.clock
    const set = new InstanceSet(
      {
        serviceId: "pool",
        probe: (check: HealthCheck) =>
          Effect.sync(() => {
            asked.push(check.url)
            return up.get(check.url) ?? false
          }),
        run: (effect) => run(effect),
        changed: (change) => Effect.sync(() => void changes.push(change)),
        now: () => clock.unsafeCurrentTimeMillis()
      },
      service,
      targetsFor(service, settings)[0]!
    )
    const reload = (next: string) =>
      Effect.map(settingsOf(poolYaml(next)), (s) => {
        const svc: ServiceConfig = s.services.get("pool")!
        set.update(svc, targetsFor(svc, s)[0]!)
      })
    return { set, up, asked, changes, reload }
  })

const urls = (set: InstanceSet) => set.view().map((i) => `${i.url}:${i.healthy ? "in" : "out"}`)

describe("InstanceSet (TestClock)", () => {
  it.scoped("the default rule: the healthy instance with the fewest requests in flight, ties in config order", () =>
    Effect.gen(function* () {
      const { set } = yield* setUp()
      const [a, b, c] = set.instances
      assert.strictEqual(set.pick(), a)
      a!.inFlight = 2
      b!.inFlight = 1
      c!.inFlight = 1
      assert.strictEqual(set.pick(), b)
      b!.healthy = false
      assert.strictEqual(set.pick(), c)
      c!.healthy = false
      assert.strictEqual(set.pick(), a)
      a!.healthy = false
      assert.strictEqual(set.pick(), undefined)
      assert.strictEqual(set.healthy(), 0)
      // Where requests to each go, and what each one's health is.
      assert.deepStrictEqual(
        set.instances.map((i) => [i.target.baseUrl, i.health.url]),
        [
          ["http://a:1", "http://a:1/health"],
          ["http://b:2", "http://b:2/health"],
          ["http://c:3", "http://c:3/ready"]
        ]
      )
    })
  )

  it.scoped("taken out: out until its health answers (one probe fiber, on its schedule), then back in", () =>
    Effect.gen(function* () {
      const { set, up, asked, changes } = yield* setUp()
      const b = set.instances[1]!
      set.takeOut(b, "connection refused")
      set.takeOut(b, "connection refused") // already out: nothing more
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(urls(set), ["http://a:1:in", "http://b:2:out", "http://c:3:in"])
      assert.deepStrictEqual(changes, [{ type: "instance_down", url: "http://b:2", reason: "connection refused" }])
      assert.notStrictEqual(set.pick(), b)
      // Asked at once, then 100, 200, 400, 800 ms apart (t = 100, 300, 700, 1500), then every second: by one fiber.
      assert.strictEqual(asked.length, 1)
      yield* TestClock.adjust("100 millis")
      assert.strictEqual(asked.length, 2)
      yield* TestClock.adjust("1500 millis")
      assert.strictEqual(asked.length, 5)
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual(asked.length, 15)
      assert.isTrue(asked.every((url) => url === "http://b:2/health"))
      assert.isFalse(b.healthy)
      // Its health answers: back in at the next probe, with how long it was out.
      up.set("http://b:2/health", true)
      yield* TestClock.adjust("1 second")
      assert.isTrue(b.healthy)
      assert.deepStrictEqual(changes[1], { type: "instance_up", url: "http://b:2", downMs: 12_500 })
      // No probe runs once it is back.
      const after = asked.length
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(asked.length, after)
      // Out again: a new probe.
      up.set("http://b:2/health", false)
      set.takeOut(b, "connection reset")
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(asked.length, after + 1)
    })
  )

  it.scoped("a reload: kept instances keep their state; a removed one's probe ends; a new one comes in healthy", () =>
    Effect.gen(function* () {
      const { set, asked, reload } = yield* setUp()
      const [a, b] = set.instances
      a!.inFlight = 3
      set.takeOut(b!, "connection refused")
      const c = set.instances[2]!
      set.takeOut(c, "connection refused")
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(asked.length, 2)
      // c goes, d comes; a and b stay as they were (b out, still asked).
      yield* reload(`["http://a:1", "http://b:2", "http://d:4"]`)
      assert.strictEqual(set.instances[0], a)
      assert.strictEqual(set.instances[1], b)
      assert.deepStrictEqual(urls(set), ["http://a:1:in", "http://b:2:out", "http://d:4:in"])
      assert.strictEqual(set.instances[0]!.inFlight, 3)
      assert.isFalse(set.has(c))
      // c's probe ended: only b is asked from now on.
      asked.length = 0
      yield* TestClock.adjust("5 seconds")
      assert.isAbove(asked.length, 0)
      assert.isTrue(asked.every((url) => url === "http://b:2/health"))
      // b's health URL changes: it stays out, and the new URL is the one asked.
      yield* reload(`["http://a:1", { url: "http://b:2", health_url: "http://b:2/alive" }]`)
      assert.deepStrictEqual(urls(set), ["http://a:1:in", "http://b:2:out"])
      asked.length = 0
      yield* TestClock.adjust("5 seconds")
      assert.isAbove(asked.length, 0)
      assert.isTrue(asked.every((url) => url === "http://b:2/alive"))
      // A taken-out instance removed by a reload is no longer taken out (a lease on it may still report it).
      set.takeOut(c, "connection refused")
      assert.strictEqual(set.instances.length, 2)
      set.close()
      asked.length = 0
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(asked.length, 0)
    })
  )
})
