import * as Path from "node:path"
import { SqlClient } from "@effect/sql"
import { assert, describe, it } from "@effect/vitest"
import { Clock, Context, Effect, Fiber, Layer, TestClock } from "effect"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { ServiceRegistry } from "../../src/registry/ServiceRegistry.ts"
import { ActivityLog } from "../../src/store/ActivityLog.ts"
import { Database } from "../../src/store/Database.ts"
import { ServiceRows } from "../../src/store/ServiceRows.ts"
import { eventually, tempDir } from "../fixtures/Gateway.ts"
import * as Simulated from "../fixtures/SimulatedMachines.ts"

const yaml = (database: string, settings: Record<string, unknown>) =>
  `database: ${JSON.stringify(database)}
services:
  svc: ${JSON.stringify({ base_url: "http://127.0.0.1:1", warmup_ms: 0, retry_count: 0, ...settings })}
`

/** One gateway run: registry, store and simulated machines on the database file (its SqlClient in reach). */
const run = (text: string, script: Simulated.SimulatedScript) =>
  Layer.mergeAll(ServiceRegistry.Default, ServiceRows.Default, ActivityLog.Default, Database).pipe(
    Layer.provideMerge(Simulated.layer(script)),
    Layer.provide(HestiaConfig.layerYaml(text))
  )

const persistedState = (serviceId: string) =>
  Effect.flatMap(ServiceRows, (rows) => Effect.map(rows.services(), (services) => services.get(serviceId)))

const types = Effect.flatMap(ActivityLog, (log) =>
  Effect.map(log.activity({ serviceId: "svc", limit: 100 }), (rows) => rows.map((r) => r.type).reverse())
)

describe("restart from the Store (Simulated machines, TestClock)", () => {
  it.effect("a service recorded hot is adopted hot; its idle timer resumes from the persisted last activity", () =>
    Effect.gen(function* () {
      const text = yaml(Path.join(tempDir(), "hestia.db"), { idle_timeout_ms: 10_000 })
      const script = () => Simulated.ready(1_000)

      // First run: a request starts it at t=0, it is ready at 1 000 and the request ends there.
      yield* Effect.scoped(
        Effect.gen(function* () {
          const context = yield* Layer.build(run(text, script))
          const registry = Context.get(context, ServiceRegistry)
          const lease = yield* Effect.fork(registry.acquire("svc"))
          yield* TestClock.adjust("1 second")
          ;(yield* Fiber.join(lease)).release()
          yield* TestClock.adjust("1 second")
          yield* eventually(
            persistedState("svc").pipe(Effect.provide(context)),
            (s) => s?.state === "hot" && s.lastActivity === 1_000
          )
          // The gateway dies here: its scope closes without stopping anything.
        })
      )

      // Second run at t=2 000: adopted, nothing started, stopped 10 s after the last activity (t=11 000).
      yield* Effect.scoped(
        Effect.gen(function* () {
          const context = yield* Layer.build(run(text, script))
          const registry = Context.get(context, ServiceRegistry)
          const status = yield* registry.status("svc")
          assert.strictEqual(status.state, "hot")
          assert.strictEqual(status.machineId, "local")
          assert.strictEqual(status.lastActivity, new Date(1_000).toISOString())
          yield* TestClock.adjust(8_999)
          assert.strictEqual((yield* registry.status("svc")).state, "hot")
          yield* TestClock.adjust(1)
          yield* eventually(Effect.orDie(registry.status("svc")), (s) => s.state === "cold")
          const calls = yield* Effect.flatMap(Simulated.SimulatedMachines, (m) => m.calls).pipe(Effect.provide(context))
          assert.deepStrictEqual(
            calls.map((c) => [c.op, c.at]),
            [["stop", 11_000]]
          )
          const timeline = yield* eventually(types.pipe(Effect.provide(context)), (t) => t.includes("stopped"))
          assert.deepStrictEqual(timeline, [
            "start_requested",
            "attempt_started",
            "ready",
            "adopted",
            "idle_stop",
            "stopped"
          ])
          const adopted = (yield* Effect.flatMap(ActivityLog, (s) => s.activity({ limit: 100 })).pipe(
            Effect.provide(context)
          )).find((r) => r.type === "adopted")!
          assert.deepStrictEqual(adopted.detail, { lastActivity: 1_000 })
          assert.strictEqual(adopted.machineId, "local")
        })
      )
    })
  )

  it.effect("a service recorded starting comes back cold with the interrupted start as its last error", () =>
    Effect.gen(function* () {
      const text = yield* Effect.sync(() => yaml(Path.join(tempDir(), "hestia.db"), { idle_timeout_ms: 0 }))
      const script = () => Simulated.ready(60_000)
      yield* Effect.scoped(
        Effect.gen(function* () {
          const context = yield* Layer.build(run(text, script))
          const registry = Context.get(context, ServiceRegistry)
          yield* registry.start("svc")
          yield* TestClock.adjust("5 seconds")
          yield* eventually(
            persistedState("svc").pipe(Effect.provide(context)),
            (s) => s?.state === "starting" && s.machineId === "local"
          )
        })
      )
      yield* Effect.scoped(
        Effect.gen(function* () {
          const context = yield* Layer.build(run(text, script))
          const registry = Context.get(context, ServiceRegistry)
          const status = yield* registry.status("svc")
          assert.strictEqual(status.state, "cold")
          assert.deepStrictEqual(status.lastError?.attempts, [
            {
              machine: "local",
              attempt: 0,
              error: "GatewayRestarted",
              message: "the gateway stopped while this start was in progress"
            }
          ])
          const persisted = yield* eventually(
            persistedState("svc").pipe(Effect.provide(context)),
            (s) => s?.state === "cold"
          )
          assert.strictEqual(persisted?.lastError?.attempts[0]?.error, "GatewayRestarted")
          const timeline = yield* eventually(types.pipe(Effect.provide(context)), (t) => t.includes("start_failed"))
          assert.deepStrictEqual(timeline, ["start_requested", "attempt_started", "start_failed"])
        })
      )
    })
  )

  it.effect("a cold service keeps its last error and last activity across a restart", () =>
    Effect.gen(function* () {
      const text = yaml(Path.join(tempDir(), "hestia.db"), { idle_timeout_ms: 0 })
      const script = () => Simulated.fail(100, "no GPU")
      yield* Effect.scoped(
        Effect.gen(function* () {
          const context = yield* Layer.build(run(text, script))
          const registry = Context.get(context, ServiceRegistry)
          yield* registry.start("svc")
          yield* TestClock.adjust("1 second")
          yield* eventually(
            persistedState("svc").pipe(Effect.provide(context)),
            (s) => s?.state === "cold" && s.lastError !== null
          )
        })
      )
      const status = yield* Effect.scoped(
        Effect.flatMap(Layer.build(run(text, script)), (context) => Context.get(context, ServiceRegistry).status("svc"))
      )
      assert.strictEqual(status.state, "cold")
      assert.strictEqual(status.lastError?.error, "StartupFailed")
      assert.deepStrictEqual(
        status.lastError?.attempts.map((a) => [a.machine, a.error, a.message]),
        [["local", "SimulatedFailure", "no GPU"]]
      )
    })
  )

  it.effect(
    "last activity: the registry flushes changed stamps at most once a second, nothing when idle, the rest at shutdown",
    () =>
      Effect.gen(function* () {
        const text = yaml(Path.join(tempDir(), "hestia.db"), { idle_timeout_ms: 0 })
        const script = () => Simulated.ready(1_000)
        const shutdownStamp = yield* Effect.scoped(
          Effect.gen(function* () {
            const context = yield* Layer.build(run(text, script))
            const registry = Context.get(context, ServiceRegistry)
            const sql = Context.get(context, SqlClient.SqlClient)
            const lastActivity = Effect.map(persistedState("svc").pipe(Effect.provide(context)), (s) => s?.lastActivity)
            /** Rows changed on the gateway's connection so far: every write, whoever made it. */
            const changes = Effect.map(sql<{ n: number }>`SELECT total_changes() AS n`, ([row]) => row!.n)

            const lease = yield* Effect.fork(registry.acquire("svc"))
            yield* TestClock.adjust("1 second")
            const first = yield* Fiber.join(lease)
            // `ready` at 1 000 stamps the row (the services-row writer); the request ends at 3 000.
            yield* eventually(lastActivity, (at) => at === 1_000)
            yield* TestClock.adjust("2 seconds")
            first.release()
            yield* TestClock.adjust(999)
            assert.strictEqual(yield* lastActivity, 1_000)
            yield* TestClock.adjust(1)
            yield* eventually(lastActivity, (at) => at === 3_000)

            // Nothing changed: not one write, however long.
            const idle = yield* changes
            yield* TestClock.adjust("1 hour")
            assert.strictEqual(yield* changes, idle)

            // 100 requests within a second: one write, of the newest stamp.
            const burst = yield* Clock.currentTimeMillis
            for (let i = 0; i < 100; i++) {
              registry.tryAcquireHot("svc")!.release()
              yield* TestClock.adjust(1)
            }
            const busy = yield* changes
            yield* TestClock.adjust("1 second")
            const newest = burst + 99
            yield* eventually(lastActivity, (at) => at === newest)
            assert.strictEqual((yield* changes) - busy, 1)

            // The gateway stops before the next flush is due: the last stamp is written on the way out.
            yield* TestClock.adjust(10)
            registry.tryAcquireHot("svc")!.release()
            return yield* Clock.currentTimeMillis
          })
        )
        const persisted = yield* persistedState("svc").pipe(
          Effect.provide(ServiceRows.Default.pipe(Layer.provide(HestiaConfig.layerYaml(text))))
        )
        assert.strictEqual(persisted?.lastActivity, shutdownStamp)
      })
  )
})
