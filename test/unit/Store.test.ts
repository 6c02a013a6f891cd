import * as Path from "node:path"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric, MetricLabel } from "effect"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { type LifecycleEvent, LifecycleEvents } from "../../src/registry/LifecycleEvents.ts"
import { ActivityLog } from "../../src/store/ActivityLog.ts"
import { AuthKeys } from "../../src/store/AuthKeys.ts"
import { ContainerRows } from "../../src/store/ContainerRows.ts"
import { Database } from "../../src/store/Database.ts"
import { ProcessRecords } from "../../src/store/ProcessRecords.ts"
import { type PersistedService, ServiceRows } from "../../src/store/ServiceRows.ts"
import { StoreHealth, storeWriteFailures, type WriteOperation } from "../../src/store/StoreHealth.ts"
import { eventually, tempDir } from "../fixtures/Gateway.ts"
import { captureLogs } from "../fixtures/Observability.ts"

const configYaml = (database: string, services = ["a", "b"]) =>
  `database: ${JSON.stringify(database)}
machines:
  laptop: { host: 127.0.0.1, labels: { gpu: false } }
routing_rules:
  - { services: ["a"], prefer: [laptop] }
services:
${services.map((id) => `  ${id}: { base_url: "http://127.0.0.1:1", env: { SECRET_TOKEN: "s3cr3t" } }`).join("\n")}
`

/** Every store service, their SqlClient, health and the bus, all on one database (layers are shared within a build). */
const storeLayer = (yaml: string) =>
  Layer.mergeAll(
    ActivityLog.Default,
    ServiceRows.Default,
    ProcessRecords.Default,
    ContainerRows.Default,
    AuthKeys.Default,
    StoreHealth.Default,
    Database,
    LifecycleEvents.Default
  ).pipe(Layer.provide(HestiaConfig.layerYaml(yaml)))

const emit = (event: LifecycleEvent) => Effect.flatMap(LifecycleEvents, (events) => events.emit(event))

const timeline = (query: { serviceId?: string; limit?: number; beforeId?: number; beforeTs?: number } = {}) =>
  Effect.flatMap(ActivityLog, (log) => log.activity({ limit: 100, ...query }))

/** Rows are written by the ActivityLog's own fiber: wait until `n` are there. */
const rowsAtLeast = (n: number) =>
  Effect.flatMap(ActivityLog, (log) => eventually(log.activity({ limit: 100 }), (rows) => rows.length >= n))

/** The services row as the next run will read it, once `check` holds: written by the ServiceRows' own fiber. */
const serviceRowWhen = (serviceId: string, check: (row: PersistedService | undefined) => boolean) =>
  Effect.flatMap(ServiceRows, (rows) =>
    eventually(
      Effect.map(rows.services(), (services) => services.get(serviceId)),
      check
    )
  )

describe("Store (SQLite file in a temp dir)", () => {
  it.scoped("migrations from empty create every table; the folder is created; WAL is on", () =>
    Effect.gen(function* () {
      const file = Path.join(tempDir(), "nested", "deeper", "hestia.db")
      const context = yield* Layer.build(storeLayer(configYaml(file)))
      const sql = yield* Effect.provide(SqlClient.SqlClient, context)
      const tables = yield* sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`
      const names = tables.map((t) => t.name)
      for (const table of [
        "services",
        "machines",
        "routing_rules",
        "activity",
        "auth_keys",
        "processes",
        "containers"
      ]) {
        assert.include(names, table)
      }
      const [mode] = yield* sql<{ journal_mode: string }>`PRAGMA journal_mode`
      assert.strictEqual(mode!.journal_mode, "wal")
    })
  )

  it.effect("a second start on the same file applies no migration twice and keeps the data", () =>
    Effect.gen(function* () {
      const file = Path.join(tempDir(), "hestia.db")
      const count = Effect.flatMap(SqlClient.SqlClient, (sql) =>
        Effect.map(sql<{ n: number }>`SELECT count(*) AS n FROM effect_sql_migrations`, (rows) => rows[0]!.n)
      )
      const first = yield* Effect.zipLeft(
        count,
        Effect.flatMap(ActivityLog, (log) => log.append({ ts: 1, type: "note", detail: { n: 1 } }))
      ).pipe(Effect.provide(storeLayer(configYaml(file))))
      assert.isAtLeast(first, 3)
      const again = yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const migrations = yield* sql<{ n: number }>`SELECT count(*) AS n FROM effect_sql_migrations`
        return { migrations: migrations[0]!.n, rows: yield* timeline() }
      }).pipe(Effect.provide(storeLayer(configYaml(file))))
      assert.strictEqual(again.migrations, first)
      assert.deepStrictEqual(
        again.rows.map((r) => [r.type, r.detail]),
        [["note", { n: 1 }]]
      )
    })
  )

  it.effect("config services, machines and routing rules are upserted; a removed service is kept out of config", () =>
    Effect.gen(function* () {
      const file = Path.join(tempDir(), "hestia.db")
      yield* Effect.provide(Effect.void, storeLayer(configYaml(file, ["a", "b"])))
      const rows = yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        return {
          services: yield* sql<{ id: string; in_config: number; state: string; config: string }>`
            SELECT id, in_config, state, config FROM services ORDER BY id`,
          machines: yield* sql<{ id: string; host: string; labels: string }>`SELECT id, host, labels FROM machines`,
          rules: yield* sql<{ position: number; services: string; prefer: string }>`SELECT * FROM routing_rules`
        }
      }).pipe(Effect.provide(storeLayer(configYaml(file, ["a"]))))
      assert.deepStrictEqual(
        rows.services.map((s) => [s.id, s.in_config, s.state]),
        [
          ["a", 1, "cold"],
          ["b", 0, "cold"]
        ]
      )
      // Env values may be secrets: only their names are kept.
      assert.notInclude(rows.services[0]!.config, "s3cr3t")
      assert.deepStrictEqual(JSON.parse(rows.services[0]!.config).env, ["SECRET_TOKEN"])
      assert.deepStrictEqual(rows.machines, [{ id: "laptop", host: "127.0.0.1", labels: '{"gpu":false}' }])
      assert.strictEqual(rows.rules.length, 1)
      assert.deepStrictEqual(JSON.parse(rows.rules[0]!.services), ["a"])
    })
  )

  it.effect("lifecycle events set the services row and become timeline rows (state and queued are not rows)", () =>
    Effect.gen(function* () {
      yield* emit({
        type: "start_requested",
        serviceId: "a",
        at: 1_000,
        trigger: "request",
        requestId: "r-1",
        machines: ["laptop"]
      })
      yield* emit({ type: "state", serviceId: "a", at: 1_000, from: "cold", to: "starting", machineId: undefined })
      yield* emit({ type: "request_queued", serviceId: "a", at: 1_001, position: 1, requestId: "r-1" })
      yield* emit({ type: "attempt_started", serviceId: "a", at: 1_002, machineId: "laptop", attempt: 1 })
      yield* emit({ type: "state", serviceId: "a", at: 1_500, from: "starting", to: "hot", machineId: "laptop" })
      yield* emit({ type: "ready", serviceId: "a", at: 1_500, machineId: "laptop", durationMs: 500, released: 1 })
      const rows = yield* rowsAtLeast(3)
      assert.deepStrictEqual(
        rows.map((r) => [r.type, r.serviceId, r.machineId, r.requestId, r.ts]),
        [
          ["ready", "a", "laptop", null, new Date(1_500).toISOString()],
          ["attempt_started", "a", "laptop", null, new Date(1_002).toISOString()],
          ["start_requested", "a", null, "r-1", new Date(1_000).toISOString()]
        ]
      )
      assert.deepStrictEqual(rows[0]!.detail, { durationMs: 500, released: 1 })
      assert.deepStrictEqual(rows[2]!.detail, { trigger: "request", machines: ["laptop"] })
      const service = yield* serviceRowWhen("a", (row) => row?.state === "hot")
      assert.deepStrictEqual(service, {
        serviceId: "a",
        state: "hot",
        stateSince: 1_500,
        machineId: "laptop",
        lastActivity: 1_500,
        lastError: null
      })

      yield* emit({ type: "state", serviceId: "a", at: 2_000, from: "hot", to: "stopping", machineId: "laptop" })
      yield* emit({ type: "state", serviceId: "a", at: 2_100, from: "stopping", to: "cold", machineId: undefined })
      yield* emit({ type: "stopped", serviceId: "a", at: 2_100, machineId: "laptop", reason: "api" })
      yield* emit({ type: "start_requested", serviceId: "a", at: 3_000, trigger: "api", machines: ["laptop"] })
      const attempts = [{ machine: "laptop", attempt: 1, error: "ProcessExited", message: "exited" }]
      yield* emit({ type: "start_failed", serviceId: "a", at: 3_100, durationMs: 100, attempts, rejected: 0 })
      yield* rowsAtLeast(6)
      const failed = (yield* serviceRowWhen("a", (row) => row?.lastError !== null))!
      assert.strictEqual(failed.state, "cold")
      assert.strictEqual(failed.machineId, null)
      assert.deepStrictEqual(failed.lastError?.attempts, attempts)
    }).pipe(Effect.provide(storeLayer(configYaml(Path.join(tempDir(), "hestia.db")))))
  )

  it.effect("the timeline pages newest first, by limit, cursor (id) or time, and by service", () =>
    Effect.gen(function* () {
      const store = yield* ActivityLog
      for (let i = 1; i <= 10; i++) {
        yield* store.append({ ts: i * 100, type: "note", serviceId: i % 2 === 0 ? "a" : "b", detail: { i } })
      }
      const page1 = yield* timeline({ limit: 4 })
      assert.deepStrictEqual(
        page1.map((r) => r.detail.i),
        [10, 9, 8, 7]
      )
      const page2 = yield* timeline({ limit: 4, beforeId: page1[3]!.id })
      assert.deepStrictEqual(
        page2.map((r) => r.detail.i),
        [6, 5, 4, 3]
      )
      assert.deepStrictEqual(
        (yield* timeline({ beforeTs: 300 })).map((r) => r.detail.i),
        [2, 1]
      )
      assert.deepStrictEqual(
        (yield* timeline({ serviceId: "a", limit: 3 })).map((r) => r.detail.i),
        [10, 8, 6]
      )
    }).pipe(Effect.provide(storeLayer(configYaml(":memory:"))))
  )

  it.effect("recordLastActivity: one batch, a newer stamp wins, an older one changes nothing", () =>
    Effect.gen(function* () {
      const rows = yield* ServiceRows
      const sql = yield* SqlClient.SqlClient
      const persisted = Effect.map(
        sql<{ id: string; last_activity: number | null }>`SELECT id, last_activity FROM services ORDER BY id`,
        (all) => all.map((r) => r.last_activity)
      )
      assert.deepStrictEqual(yield* persisted, [null, null])
      yield* rows.recordLastActivity([
        ["a", 5_000],
        ["b", 6_000]
      ])
      assert.deepStrictEqual(yield* persisted, [5_000, 6_000])
      yield* rows.recordLastActivity([
        ["a", 4_000],
        ["b", 7_000],
        ["not-configured", 1]
      ])
      assert.deepStrictEqual(yield* persisted, [5_000, 7_000])
      yield* rows.recordLastActivity([])
      assert.deepStrictEqual((yield* StoreHealth).status(), { writes: "ok", writeFailures: 0, lastError: null })
    }).pipe(Effect.provide(storeLayer(configYaml(":memory:"))))
  )

  it.effect("process records are kept until forgotten", () =>
    Effect.gen(function* () {
      const store = yield* ProcessRecords
      const record = {
        serviceId: "a",
        machineId: "local",
        pid: 4242,
        pgid: 4242,
        identity: "boot:123",
        command: "node x.mjs",
        startedAt: 7,
        ownerPid: 100,
        ownerIdentity: "boot:99"
      }
      yield* store.recordProcess(record)
      assert.deepStrictEqual(yield* store.processes(), [record])
      yield* store.forgetProcess("a", 1)
      assert.strictEqual((yield* store.processes()).length, 1)
      yield* store.forgetProcess("a", 4242)
      assert.deepStrictEqual(yield* store.processes(), [])
    }).pipe(Effect.provide(storeLayer(configYaml(":memory:"))))
  )

  it.effect("container records are kept until forgotten, one per service", () =>
    Effect.gen(function* () {
      const store = yield* ContainerRows
      const record = {
        serviceId: "web",
        machineId: "nas",
        engine: "tcp://nas.lan:2375",
        containerId: "abc123",
        name: "hestia-web",
        image: "app:1.2",
        created: true,
        startedAt: 7
      }
      yield* store.recordContainer(record)
      assert.deepStrictEqual(yield* store.containers(), [record])
      const recreated = { ...record, containerId: "def456", created: false }
      yield* store.recordContainer(recreated)
      assert.deepStrictEqual(yield* store.containers(), [recreated])
      yield* store.forgetContainer("web", "abc123")
      assert.strictEqual((yield* store.containers()).length, 1)
      yield* store.forgetContainer("web", "def456")
      assert.deepStrictEqual(yield* store.containers(), [])
    }).pipe(Effect.provide(storeLayer(configYaml(":memory:"))))
  )

  it.effect("config key hashes keep their rows across restarts; removed ones go; CLI labels are unique", () =>
    Effect.gen(function* () {
      const store = yield* AuthKeys
      yield* store.syncConfigKeys(["h1", "h2"])
      assert.deepStrictEqual(
        (yield* store.authKeys()).map((k) => [k.label, k.hash, k.source]),
        [
          ["config-1", "h1", "config"],
          ["config-2", "h2", "config"]
        ]
      )
      assert.isTrue(yield* store.disableKey("config-2"))
      // Same keys again (a restart): nothing changes, the disabled one stays disabled.
      yield* store.syncConfigKeys(["h2", "h1"])
      const again = yield* store.authKeys()
      assert.deepStrictEqual(
        again.map((k) => [k.label, k.hash, k.disabledAt !== null]),
        [
          ["config-1", "h1", false],
          ["config-2", "h2", true]
        ]
      )
      // h1 removed from the config, h3 added: h3 takes the free label.
      yield* store.syncConfigKeys(["h2", "h3"])
      assert.deepStrictEqual(
        (yield* store.authKeys()).map((k) => [k.label, k.hash]),
        [
          ["config-2", "h2"],
          ["config-1", "h3"]
        ]
      )
      yield* store.addKey("laptop", "h4")
      const taken = yield* Effect.flip(store.addKey("laptop", "h5"))
      assert.strictEqual(taken._tag, "KeyLabelTaken")
      assert.isFalse(yield* store.disableKey("nope"))
      yield* store.touchKeys([["h4", 99]])
      const laptop = (yield* store.authKeys()).find((k) => k.label === "laptop")!
      assert.strictEqual(laptop.source, "cli")
      assert.strictEqual(laptop.lastUsedAt, 99)
    }).pipe(Effect.provide(storeLayer(configYaml(":memory:"))))
  )
})

// ---------------------------------------------------------------------------
// A database that refuses writes: a real SqlClient on the file opened read-only (SQLite answers SQLITE_READONLY, as
// for a read-only mount or an immutable file).
// ---------------------------------------------------------------------------

const OPERATIONS: ReadonlyArray<WriteOperation> = [
  "activity",
  "service_state",
  "last_activity",
  "config_mirror",
  "process_record",
  "key_sync",
  "key_last_use"
]

const failureCounts = Effect.forEach(OPERATIONS, (operation) =>
  Effect.map(
    Metric.value(Metric.taggedWithLabels(storeWriteFailures, [MetricLabel.make("operation", operation)])),
    (state) => [operation, state.count] as const
  )
).pipe(Effect.map((pairs) => Object.fromEntries(pairs) as Record<WriteOperation, number>))

/** The store services on a read-only SqlClient of `file` (migrated and seeded before), logs into `lines`. */
const refusingStore = (file: string, lines: Array<string>) =>
  Layer.mergeAll(
    ActivityLog.DefaultWithoutDependencies,
    ServiceRows.DefaultWithoutDependencies,
    ProcessRecords.DefaultWithoutDependencies,
    AuthKeys.DefaultWithoutDependencies
  ).pipe(
    Layer.provideMerge(
      Layer.mergeAll(
        SqliteClient.layer({ filename: file, readonly: true, disableWAL: true }),
        StoreHealth.Default,
        LifecycleEvents.Default
      )
    ),
    Layer.provide(HestiaConfig.layerYaml(configYaml(file))),
    Layer.provideMerge(captureLogs(lines))
  )

const processRecord = {
  serviceId: "a",
  machineId: "local",
  pid: 4242,
  pgid: 4242,
  identity: null,
  command: "node x.mjs",
  startedAt: 7,
  ownerPid: null,
  ownerIdentity: null
}

describe("Store on a database that refuses writes (a read-only SqlClient)", () => {
  it.effect("every bookkeeping write succeeds for its caller: logged with SQLite's reason, counted, shown", () =>
    Effect.gen(function* () {
      const file = Path.join(tempDir(), "hestia.db")
      // A previous run left rows behind.
      yield* Effect.gen(function* () {
        yield* (yield* ProcessRecords).recordProcess(processRecord)
        yield* (yield* ActivityLog).append({ ts: 1, type: "note", serviceId: "a" })
      }).pipe(Effect.provide(storeLayer(configYaml(file))))

      const lines: Array<string> = []
      const before = yield* failureCounts
      yield* Effect.gen(function* () {
        const health = yield* StoreHealth
        const log = yield* ActivityLog
        const rows = yield* ServiceRows
        const processes = yield* ProcessRecords
        const keys = yield* AuthKeys
        // Building went through although mirroring the config failed.
        assert.strictEqual(health.status().lastError?.operation, "config_mirror")

        yield* emit({ type: "start_requested", serviceId: "a", at: 10, trigger: "request", machines: ["laptop"] })
        yield* emit({ type: "state", serviceId: "a", at: 10, from: "cold", to: "starting", machineId: undefined })
        yield* log.append({ ts: 11, type: "auth_denied", detail: { reason: "missing API key" } })
        yield* rows.recordLastActivity([["a", 12]])
        yield* processes.recordProcess({ ...processRecord, pid: 4343, pgid: 4343 })
        yield* processes.forgetProcess("a", 4242)
        yield* keys.syncConfigKeys(["h1"])
        yield* keys.touchKeys([["h1", 13]])
        const status = yield* eventually(
          Effect.sync(() => health.status()),
          () => lines.some((line) => line.includes('"operation":"service_state"'))
        )

        // Reads still answer, with what the database holds.
        assert.deepStrictEqual(yield* processes.processes(), [processRecord])
        assert.deepStrictEqual(
          (yield* log.activity({ limit: 10 })).map((row) => row.type),
          ["note"]
        )
        assert.strictEqual((yield* rows.services()).get("a")?.state, "cold")

        const after = yield* failureCounts
        const delta = Object.fromEntries(OPERATIONS.map((op) => [op, after[op] - before[op]])) as Record<
          WriteOperation,
          number
        >
        assert.deepInclude(delta, {
          config_mirror: 1,
          last_activity: 1,
          process_record: 2,
          key_sync: 1,
          key_last_use: 1
        })
        assert.isAtLeast(delta.activity, 2, "the event batch and the appended row")
        assert.isAtLeast(delta.service_state, 1)
        assert.strictEqual(status.writes, "failing")
        assert.strictEqual(
          status.writeFailures,
          OPERATIONS.reduce((sum, op) => sum + delta[op], 0)
        )
        assert.strictEqual(status.lastError?.message, "SQLITE_READONLY: attempt to write a readonly database")

        const failures = lines.map((line) => JSON.parse(line)).filter((entry) => entry.event === "store_write_failed")
        assert.strictEqual(failures.length, status.writeFailures)
        for (const entry of failures) {
          assert.strictEqual(entry.level, "error")
          assert.strictEqual(entry.error, "SQLITE_READONLY: attempt to write a readonly database")
          assert.include(entry.msg, `database write failed (${entry.operation}): SQLITE_READONLY`)
        }
        assert.deepStrictEqual(new Set(failures.map((entry) => entry.operation)), new Set(OPERATIONS))
      }).pipe(Effect.provide(refusingStore(file, lines)))
    })
  )

  it.effect("the next write that succeeds ends the failing state; the count and the last error stay", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const health = yield* StoreHealth
        const log = yield* ActivityLog
        yield* sql`CREATE TRIGGER refuse BEFORE INSERT ON activity BEGIN SELECT RAISE(ABORT, 'no room left'); END`
        yield* log.append({ ts: 1, type: "note" })
        assert.strictEqual(health.status().writes, "failing")
        assert.strictEqual(health.status().lastError?.message, "SQLITE_CONSTRAINT_TRIGGER: no room left")
        yield* sql`DROP TRIGGER refuse`
        yield* log.append({ ts: 2, type: "note" })
        const status = health.status()
        assert.strictEqual(status.writes, "ok")
        assert.strictEqual(status.writeFailures, 1)
        assert.strictEqual(status.lastError?.operation, "activity")
        assert.deepStrictEqual(
          (yield* log.activity({ limit: 10 })).map((row) => row.ts),
          [new Date(2).toISOString()]
        )
        assert.isTrue(lines.some((line) => line.includes('"event":"store_write_recovered"')))
      }).pipe(Effect.provide(Layer.provideMerge(storeLayer(configYaml(":memory:")), captureLogs(lines))))
    })
  )
})
