import { mkdirSync } from "node:fs"
import * as Path from "node:path"
import { Migrator, SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Chunk, Clock, Data, Effect, Fiber, Layer, Queue, type Scope } from "effect"
import { HestiaConfig, type ServiceConfig } from "../config/HestiaConfig.ts"
import type { StartAttempt } from "../domain/Errors.ts"
import {
  type LifecycleEvent,
  LifecycleEvents,
  type LifecycleEventType,
  type ServiceStatus
} from "../registry/LifecycleEvents.ts"
import { loader } from "./migrations/index.ts"

// ---------------------------------------------------------------------------
// Rows as the rest of the gateway sees them. Times are Clock milliseconds.
// ---------------------------------------------------------------------------

/** One row of the persisted timeline, as `GET /v1/activity` returns it. */
export interface ActivityEntry {
  readonly id: number
  readonly ts: string
  readonly serviceId: string | null
  readonly machineId: string | null
  readonly type: string
  readonly detail: Record<string, unknown>
  readonly requestId: string | null
}

/** A row to append to the timeline outside the lifecycle bus (auth decisions). */
export interface ActivityInput {
  readonly ts: number
  readonly type: string
  readonly serviceId?: string | undefined
  readonly machineId?: string | undefined
  readonly requestId?: string | undefined
  readonly detail?: Record<string, unknown>
}

export interface PersistedError {
  readonly error: string
  readonly message: string
  readonly attempts: ReadonlyArray<StartAttempt>
}

/** What the previous run last recorded about a service. */
export interface PersistedService {
  readonly serviceId: string
  readonly state: ServiceStatus
  readonly stateSince: number | null
  readonly machineId: string | null
  readonly lastActivity: number | null
  readonly lastError: PersistedError | null
}

/** A process group the gateway spawned and has not yet seen stopped. */
export interface ProcessRecord {
  readonly serviceId: string
  readonly machineId: string
  readonly pid: number
  readonly pgid: number
  /** Tells the recorded process from a later one that reuses its pid (Linux: boot id + start time); null if unknown. */
  readonly identity: string | null
  readonly command: string
  readonly startedAt: number
  /** The gateway that spawned it (pid and identity as above; null in rows from before this was recorded). */
  readonly ownerPid: number | null
  readonly ownerIdentity: string | null
}

/** A container the gateway started and has not yet seen stopped (paused ones included). */
export interface ContainerRecord {
  readonly serviceId: string
  readonly machineId: string
  /** The engine's address as configured. */
  readonly engine: string
  readonly containerId: string
  readonly name: string
  readonly image: string
  /** Hestia created it (from `container.image`); else it existed before. */
  readonly created: boolean
  readonly startedAt: number
}

export interface AuthKeyRow {
  readonly label: string
  /** SHA-256 of the key, hex. The key itself is never stored. */
  readonly hash: string
  readonly source: "config" | "cli"
  readonly createdAt: number
  readonly lastUsedAt: number | null
  readonly disabledAt: number | null
}

export interface ActivityQuery {
  readonly serviceId?: string | undefined
  readonly limit: number
  /** Only rows with an id below this (the `nextBefore` cursor of a previous page). */
  readonly beforeId?: number | undefined
  /** Only rows older than this Clock time. */
  readonly beforeTs?: number | undefined
}

export class KeyLabelTaken extends Data.TaggedError("KeyLabelTaken")<{ readonly label: string }> {
  override get message() {
    return `a key labelled "${this.label}" already exists`
  }
}

// ---------------------------------------------------------------------------
// The database: SQLite file from `database:` (folder created), WAL, migrated at start.
// ---------------------------------------------------------------------------

const clientLayer = Layer.unwrapEffect(
  Effect.gen(function* () {
    const { database } = yield* HestiaConfig
    if (database !== ":memory:") {
      yield* Effect.sync(() => mkdirSync(Path.dirname(Path.resolve(database)), { recursive: true }))
    }
    return SqliteClient.layer({ filename: database })
  })
)

const migrationsLayer = Layer.effectDiscard(
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    // WAL with NORMAL sync: a crash never corrupts the file; a power cut may lose the last second of history.
    yield* sql`PRAGMA synchronous = NORMAL`
    yield* Migrator.make({})({ loader })
  })
)

/** SqlClient on the configured file, with every migration applied. Failing to open or migrate is fatal. */
export const Database = migrationsLayer.pipe(Layer.provideMerge(clientLayer), Layer.orDie)

/**
 * Not written as activity rows: `state` only updates the services row (every transition also has its own event);
 * `request_queued` and `request_released` come once per waiting request, too noisy for a timeline (the `ready` row
 * counts the requests released). Rejected requests are kept.
 */
const NOT_IN_TIMELINE: ReadonlySet<LifecycleEventType> = new Set(["state", "request_queued", "request_released"])

/** How often changed last-activity stamps are written: never a write per request. */
const LAST_ACTIVITY_FLUSH = "1 second"

const BATCH = 512

/** The service settings kept in the services row: env values left out (they may hold secrets). */
const describeService = (service: ServiceConfig) =>
  JSON.stringify({
    ...service,
    env: Object.keys(service.env),
    container: service.container && { ...service.container, env: Object.keys(service.container.env) }
  })

const parseJson = <A>(text: string | null): A | null => {
  if (text === null) return null
  try {
    return JSON.parse(text) as A
  } catch {
    return null
  }
}

interface ActivityDbRow {
  readonly id: number
  readonly ts: number
  readonly service_id: string | null
  readonly machine_id: string | null
  readonly type: string
  readonly detail: string
  readonly request_id: string | null
}

/**
 * Persistence: the timeline, each service's last known state, the processes spawned and containers started, and API
 * key hashes.
 * Lifecycle events reach it through the LifecycleEvents bus (batched writes on a fiber of its own); the proxy path
 * never writes.
 */
export class Store extends Effect.Service<Store>()("hestia/Store", {
  scoped: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const config = yield* HestiaConfig
    const events = yield* LifecycleEvents
    const clock = yield* Effect.clock
    const scope: Scope.Scope = yield* Effect.scope

    // ---- configuration: upserted at start ----
    const now = clock.unsafeCurrentTimeMillis()
    const serviceIds = [...config.services.keys()]
    const machineIds = [...config.machines.keys()]
    yield* sql
      .withTransaction(
        Effect.gen(function* () {
          for (const service of config.services.values()) {
            yield* sql`INSERT INTO services (id, kind, config, in_config, state, updated_at)
              VALUES (${service.id}, ${service.kind}, ${describeService(service)}, 1, 'cold', ${now})
              ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, config = excluded.config, in_config = 1,
                updated_at = excluded.updated_at`
          }
          yield* serviceIds.length === 0
            ? sql`UPDATE services SET in_config = 0`
            : sql`UPDATE services SET in_config = 0 WHERE id NOT IN ${sql.in(serviceIds)}`
          for (const machine of config.machines.values()) {
            yield* sql`INSERT INTO machines (id, host, semaphore_machine_id, labels, in_config, updated_at)
              VALUES (${machine.id}, ${machine.host}, ${machine.semaphoreMachineId ?? null},
                ${JSON.stringify(machine.labels)}, 1, ${now})
              ON CONFLICT (id) DO UPDATE SET host = excluded.host, semaphore_machine_id = excluded.semaphore_machine_id,
                labels = excluded.labels, in_config = 1, updated_at = excluded.updated_at`
          }
          yield* machineIds.length === 0
            ? sql`UPDATE machines SET in_config = 0`
            : sql`UPDATE machines SET in_config = 0 WHERE id NOT IN ${sql.in(machineIds)}`
          yield* sql`DELETE FROM routing_rules`
          for (const [position, rule] of config.routingRules.entries()) {
            yield* sql`INSERT INTO routing_rules (position, services, prefer, updated_at)
              VALUES (${position}, ${rule.services === undefined ? null : JSON.stringify(rule.services)},
                ${JSON.stringify(rule.prefer)}, ${now})`
          }
        })
      )
      .pipe(Effect.orDie)

    // ---- lifecycle events → services row + timeline ----
    const insertActivity = (row: ActivityInput) =>
      sql`INSERT INTO activity (ts, service_id, machine_id, type, detail, request_id)
        VALUES (${row.ts}, ${row.serviceId ?? null}, ${row.machineId ?? null}, ${row.type},
          ${JSON.stringify(row.detail ?? {})}, ${row.requestId ?? null})`

    const writeEvent = (event: LifecycleEvent) =>
      Effect.gen(function* () {
        const id = event.serviceId
        switch (event.type) {
          case "state": {
            // hot: where it runs; starting/cold: nowhere yet (attempt_started names the machine being tried).
            if (event.to === "stopping") {
              yield* sql`UPDATE services SET state = ${event.to}, state_since = ${event.at}, updated_at = ${event.at}
                WHERE id = ${id}`
            } else {
              const machineId = event.to === "hot" ? (event.machineId ?? null) : null
              yield* sql`UPDATE services SET state = ${event.to}, state_since = ${event.at}, machine_id = ${machineId},
                updated_at = ${event.at} WHERE id = ${id}`
            }
            break
          }
          case "attempt_started":
            yield* sql`UPDATE services SET machine_id = ${event.machineId ?? null}, updated_at = ${event.at}
              WHERE id = ${id}`
            break
          case "ready":
            yield* sql`UPDATE services SET last_error = NULL, updated_at = ${event.at},
              last_activity = MAX(COALESCE(last_activity, 0), ${event.at}) WHERE id = ${id}`
            break
          case "start_failed": {
            const lastError = {
              error: "StartupFailed",
              message: `service "${id}" failed to start after ${event.attempts.length} attempt(s)`,
              attempts: event.attempts
            }
            yield* sql`UPDATE services SET last_error = ${JSON.stringify(lastError)}, updated_at = ${event.at}
              WHERE id = ${id}`
            break
          }
        }
        if (NOT_IN_TIMELINE.has(event.type)) return
        const { type, serviceId, at, machineId, requestId, ...detail } = event
        yield* insertActivity({ ts: at, type, serviceId, machineId, requestId, detail })
      })

    const writeBatch = (batch: ReadonlyArray<LifecycleEvent>) =>
      sql
        .withTransaction(Effect.forEach(batch, writeEvent, { discard: true }))
        .pipe(
          Effect.catchAllCause((cause) =>
            Effect.logError("could not persist lifecycle events", cause).pipe(
              Effect.annotateLogs({ event: "store_write_failed", lost: batch.length })
            )
          )
        )

    // Subscribed now, before the registry exists, so its first events (restart adoption) are not missed.
    const subscription = yield* events.subscribe
    // A batch once taken is written even if the fiber is being interrupted: nothing is lost at shutdown.
    const writer = yield* Effect.uninterruptibleMask((restore) =>
      restore(Queue.takeBetween(subscription, 1, BATCH)).pipe(
        Effect.flatMap((batch) => writeBatch(Chunk.toReadonlyArray(batch)))
      )
    ).pipe(Effect.forever, Effect.forkScoped)

    // ---- last activity: read from the registry's plain counters, written when changed ----
    const lastActivitySources: Array<() => Iterable<readonly [string, number]>> = []
    // Opened by lastActivityChanged: the writer sleeps on it, so an idle gateway does no periodic work at all.
    const changedLatch = yield* Effect.makeLatch(false)
    const written = new Map<string, number>()
    const flushLastActivity = Effect.suspend(() => {
      const changed: Array<readonly [string, number]> = []
      for (const source of lastActivitySources) {
        for (const [serviceId, at] of source()) {
          if (at > 0 && written.get(serviceId) !== at) changed.push([serviceId, at])
        }
      }
      if (changed.length === 0) return Effect.void
      return sql
        .withTransaction(
          Effect.forEach(
            changed,
            ([serviceId, at]) =>
              sql`UPDATE services SET last_activity = MAX(COALESCE(last_activity, 0), ${at}) WHERE id = ${serviceId}`,
            { discard: true }
          )
        )
        .pipe(
          Effect.tap(() => {
            for (const [serviceId, at] of changed) written.set(serviceId, at)
          }),
          Effect.catchAllCause((cause) => Effect.logError("could not persist last activity", cause))
        )
    })

    /**
     * Persist the last-activity stamps `source` reports: at most once a second, after `lastActivityChanged`, only
     * those that changed (and once more at shutdown).
     */
    const trackLastActivity = (source: () => Iterable<readonly [string, number]>) =>
      Effect.gen(function* () {
        for (const [serviceId, at] of source()) written.set(serviceId, at)
        lastActivitySources.push(source)
        if (lastActivitySources.length === 1) {
          const writeChanges = changedLatch.await.pipe(
            Effect.zipRight(Effect.sleep(LAST_ACTIVITY_FLUSH)),
            Effect.zipRight(changedLatch.close),
            Effect.zipRight(flushLastActivity)
          )
          yield* Effect.forkIn(Effect.forever(writeChanges), scope)
        }
      })

    /** Synchronous and cheap (the proxy calls it per request): a stamp changed, write it within a second. */
    const lastActivityChanged = () => changedLatch.unsafeOpen()

    yield* Effect.addFinalizer(() =>
      Fiber.interrupt(writer).pipe(
        Effect.zipRight(Queue.takeAll(subscription)),
        Effect.flatMap((rest) => writeBatch(Chunk.toReadonlyArray(rest))),
        Effect.zipRight(flushLastActivity)
      )
    )

    // ---- reads and the few direct writes ----
    const append = Effect.fn("Store.append")(function* (row: ActivityInput) {
      yield* insertActivity(row).pipe(Effect.orDie)
    })

    const activity = Effect.fn("Store.activity")(function* (query: ActivityQuery) {
      const conditions = [
        ...(query.serviceId === undefined ? [] : [sql`service_id = ${query.serviceId}`]),
        ...(query.beforeId === undefined ? [] : [sql`id < ${query.beforeId}`]),
        ...(query.beforeTs === undefined ? [] : [sql`ts < ${query.beforeTs}`])
      ]
      const rows = yield* sql<ActivityDbRow>`SELECT id, ts, service_id, machine_id, type, detail, request_id
        FROM activity WHERE ${sql.and(conditions)} ORDER BY id DESC LIMIT ${query.limit}`.pipe(Effect.orDie)
      return rows.map(
        (row): ActivityEntry => ({
          id: row.id,
          ts: new Date(row.ts).toISOString(),
          serviceId: row.service_id,
          machineId: row.machine_id,
          type: row.type,
          detail: parseJson<Record<string, unknown>>(row.detail) ?? {},
          requestId: row.request_id
        })
      )
    })

    /** Every service the database knows, as the last run left it (read before this run changes anything). */
    const services = Effect.fn("Store.services")(function* () {
      const rows = yield* sql<{
        id: string
        state: ServiceStatus
        state_since: number | null
        machine_id: string | null
        last_activity: number | null
        last_error: string | null
      }>`SELECT id, state, state_since, machine_id, last_activity, last_error FROM services`.pipe(Effect.orDie)
      return new Map(
        rows.map((row): [string, PersistedService] => [
          row.id,
          {
            serviceId: row.id,
            state: row.state,
            stateSince: row.state_since,
            machineId: row.machine_id,
            lastActivity: row.last_activity,
            lastError: parseJson<PersistedError>(row.last_error)
          }
        ])
      )
    })

    const recordProcess = Effect.fn("Store.recordProcess")(function* (record: ProcessRecord) {
      yield* sql`INSERT OR REPLACE INTO processes
        (service_id, machine_id, pid, pgid, identity, command, started_at, owner_pid, owner_identity)
        VALUES (${record.serviceId}, ${record.machineId}, ${record.pid}, ${record.pgid}, ${record.identity},
          ${record.command}, ${record.startedAt}, ${record.ownerPid}, ${record.ownerIdentity})`.pipe(Effect.orDie)
    })

    const forgetProcess = Effect.fn("Store.forgetProcess")(function* (serviceId: string, pid: number) {
      yield* sql`DELETE FROM processes WHERE service_id = ${serviceId} AND pid = ${pid}`.pipe(Effect.orDie)
    })

    const recordContainer = Effect.fn("Store.recordContainer")(function* (record: ContainerRecord) {
      yield* sql`INSERT OR REPLACE INTO containers
        (service_id, machine_id, engine, container_id, name, image, created, started_at)
        VALUES (${record.serviceId}, ${record.machineId}, ${record.engine}, ${record.containerId}, ${record.name},
          ${record.image}, ${record.created ? 1 : 0}, ${record.startedAt})`.pipe(Effect.orDie)
    })

    const forgetContainer = Effect.fn("Store.forgetContainer")(function* (serviceId: string, containerId: string) {
      yield* sql`DELETE FROM containers WHERE service_id = ${serviceId} AND container_id = ${containerId}`.pipe(
        Effect.orDie
      )
    })

    const containers = Effect.fn("Store.containers")(function* () {
      const rows = yield* sql<{
        service_id: string
        machine_id: string
        engine: string
        container_id: string
        name: string
        image: string
        created: number
        started_at: number
      }>`SELECT service_id, machine_id, engine, container_id, name, image, created, started_at
        FROM containers`.pipe(Effect.orDie)
      return rows.map(
        (row): ContainerRecord => ({
          serviceId: row.service_id,
          machineId: row.machine_id,
          engine: row.engine,
          containerId: row.container_id,
          name: row.name,
          image: row.image,
          created: row.created === 1,
          startedAt: row.started_at
        })
      )
    })

    const processes = Effect.fn("Store.processes")(function* () {
      const rows = yield* sql<{
        service_id: string
        machine_id: string
        pid: number
        pgid: number
        identity: string | null
        command: string
        started_at: number
        owner_pid: number | null
        owner_identity: string | null
      }>`SELECT service_id, machine_id, pid, pgid, identity, command, started_at, owner_pid, owner_identity
        FROM processes`.pipe(Effect.orDie)
      return rows.map(
        (row): ProcessRecord => ({
          serviceId: row.service_id,
          machineId: row.machine_id,
          pid: row.pid,
          pgid: row.pgid,
          identity: row.identity,
          command: row.command,
          startedAt: row.started_at,
          ownerPid: row.owner_pid,
          ownerIdentity: row.owner_identity
        })
      )
    })

    // ---- API keys (hashes only) ----
    const authKeys = Effect.fn("Store.authKeys")(function* () {
      const rows = yield* sql<{
        label: string
        hash: string
        source: "config" | "cli"
        created_at: number
        last_used_at: number | null
        disabled_at: number | null
      }>`SELECT label, hash, source, created_at, last_used_at, disabled_at FROM auth_keys ORDER BY id`.pipe(
        Effect.orDie
      )
      return rows.map(
        (row): AuthKeyRow => ({
          label: row.label,
          hash: row.hash,
          source: row.source,
          createdAt: row.created_at,
          lastUsedAt: row.last_used_at,
          disabledAt: row.disabled_at
        })
      )
    })

    /**
     * Make the `config` keys match the configured hashes: a known hash keeps its row (label, last use, disabled
     * flag), a new one gets the first free `config-N` label, a hash no longer configured is deleted.
     */
    const syncConfigKeys = Effect.fn("Store.syncConfigKeys")(function* (hashes: ReadonlyArray<string>) {
      const at = yield* Clock.currentTimeMillis
      yield* sql
        .withTransaction(
          Effect.gen(function* () {
            const rows = yield* sql<{ label: string; hash: string; source: string }>`
              SELECT label, hash, source FROM auth_keys`
            const wanted = new Set(hashes)
            for (const row of rows) {
              if (row.source === "config" && !wanted.has(row.hash)) {
                yield* sql`DELETE FROM auth_keys WHERE label = ${row.label}`
              }
            }
            const known = new Set(rows.map((row) => row.hash))
            const labels = new Set(
              rows.filter((row) => row.source !== "config" || wanted.has(row.hash)).map((r) => r.label)
            )
            let n = 1
            for (const hash of wanted) {
              if (known.has(hash)) continue
              while (labels.has(`config-${n}`)) n++
              labels.add(`config-${n}`)
              yield* sql`INSERT INTO auth_keys (label, hash, source, created_at) VALUES (${`config-${n}`}, ${hash}, 'config', ${at})`
            }
          })
        )
        .pipe(Effect.orDie)
    })

    const addKey = Effect.fn("Store.addKey")(function* (label: string, hash: string) {
      const at = yield* Clock.currentTimeMillis
      const taken = yield* sql`SELECT 1 FROM auth_keys WHERE label = ${label}`.pipe(Effect.orDie)
      if (taken.length > 0) return yield* new KeyLabelTaken({ label })
      yield* sql`INSERT INTO auth_keys (label, hash, source, created_at) VALUES (${label}, ${hash}, 'cli', ${at})`.pipe(
        Effect.orDie
      )
    })

    /** Disable the key with this label; false when there is none. */
    const disableKey = Effect.fn("Store.disableKey")(function* (label: string) {
      const at = yield* Clock.currentTimeMillis
      const rows = yield* sql`UPDATE auth_keys SET disabled_at = COALESCE(disabled_at, ${at}) WHERE label = ${label}
        RETURNING label`.pipe(Effect.orDie)
      return rows.length > 0
    })

    const touchKeys = Effect.fn("Store.touchKeys")(function* (used: ReadonlyArray<readonly [string, number]>) {
      if (used.length === 0) return
      yield* sql
        .withTransaction(
          Effect.forEach(used, ([hash, at]) => sql`UPDATE auth_keys SET last_used_at = ${at} WHERE hash = ${hash}`, {
            discard: true
          })
        )
        .pipe(Effect.orDie)
    })

    return {
      append,
      activity,
      services,
      trackLastActivity,
      lastActivityChanged,
      recordProcess,
      forgetProcess,
      processes,
      recordContainer,
      forgetContainer,
      containers,
      authKeys,
      syncConfigKeys,
      addKey,
      disableKey,
      touchKeys
    }
  }),
  dependencies: [Database, LifecycleEvents.Default]
}) {}
