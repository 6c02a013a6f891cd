import { SqlClient } from "@effect/sql"
import { Clock, Effect } from "effect"
import { HestiaConfig, type ServiceConfig, type Settings } from "../config/HestiaConfig.ts"
import type { StartAttempt } from "../domain/Errors.ts"
import { type LifecycleEvent, LifecycleEvents, type ServiceStatus } from "../registry/LifecycleEvents.ts"
import { Database, inTraceOnly } from "./Database.ts"
import { eventWriter } from "./EventWriter.ts"
import { StoreHealth } from "./StoreHealth.ts"

export interface PersistedError {
  readonly error: string
  readonly message: string
  readonly attempts: ReadonlyArray<StartAttempt>
}

/** What the previous run last recorded about a service. Times are Clock milliseconds. */
export interface PersistedService {
  readonly serviceId: string
  readonly state: ServiceStatus
  readonly stateSince: number | null
  readonly machineId: string | null
  readonly lastActivity: number | null
  readonly lastError: PersistedError | null
}

/** The service settings kept in the services row: env values left out (they may hold secrets). */
const describeService = (service: ServiceConfig) => JSON.stringify({ ...service, env: Object.keys(service.env) })

const parseError = (text: string | null): PersistedError | null => {
  if (text === null) return null
  try {
    return JSON.parse(text) as PersistedError
  } catch {
    return null
  }
}

/** The events that change a services row; the others only reach the timeline. */
const CHANGES_ROW: ReadonlySet<LifecycleEvent["type"]> = new Set(["state", "attempt_started", "ready", "start_failed"])

/**
 * The `services`, `machines` and `routing_rules` tables: the config mirrored at start, then each service's last known
 * state (from the lifecycle bus, in batches) and last activity (from the registry, `recordLastActivity`). Every write
 * is best effort: a failure is logged and counted, never passed on.
 */
export class ServiceRows extends Effect.Service<ServiceRows>()("hestia/ServiceRows", {
  scoped: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const config = yield* HestiaConfig
    const health = yield* StoreHealth

    // ---- the config, upserted at start and at each reload (entries no longer configured kept with in_config = 0) ----
    const mirror = (settings: Settings, now: number) =>
      Effect.gen(function* () {
        const serviceIds = [...settings.services.keys()]
        const machineIds = [...settings.machines.keys()]
        for (const service of settings.services.values()) {
          yield* sql`INSERT INTO services (id, kind, config, in_config, state, updated_at)
            VALUES (${service.id}, ${service.kind}, ${describeService(service)}, 1, 'cold', ${now})
            ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, config = excluded.config, in_config = 1,
              updated_at = excluded.updated_at`
        }
        yield* serviceIds.length === 0
          ? sql`UPDATE services SET in_config = 0`
          : sql`UPDATE services SET in_config = 0 WHERE id NOT IN ${sql.in(serviceIds)}`
        for (const machine of settings.machines.values()) {
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
        for (const [position, rule] of settings.routingRules.entries()) {
          yield* sql`INSERT INTO routing_rules (position, services, prefer, updated_at)
            VALUES (${position}, ${rule.services === undefined ? null : JSON.stringify(rule.services)},
              ${JSON.stringify(rule.prefer)}, ${now})`
        }
      })
    /** Mirror a reloaded configuration (best effort, as every write). */
    const mirrorConfig = (settings: Settings) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        health.bestEffort("config_mirror", sql.withTransaction(mirror(settings, now)))
      )
    yield* mirrorConfig(config)

    // ---- lifecycle events → the row's state, machine, last error ----
    const apply = (event: LifecycleEvent) => {
      const id = event.serviceId
      switch (event.type) {
        case "state":
          // hot: where it runs; starting/cold: nowhere yet (attempt_started names the machine being tried).
          return event.to === "stopping"
            ? sql`UPDATE services SET state = ${event.to}, state_since = ${event.at}, updated_at = ${event.at}
                WHERE id = ${id}`
            : sql`UPDATE services SET state = ${event.to}, state_since = ${event.at},
                machine_id = ${event.to === "hot" ? (event.machineId ?? null) : null}, updated_at = ${event.at}
                WHERE id = ${id}`
        case "attempt_started":
          return sql`UPDATE services SET machine_id = ${event.machineId ?? null}, updated_at = ${event.at}
            WHERE id = ${id}`
        case "ready":
          return sql`UPDATE services SET last_error = NULL, updated_at = ${event.at},
            last_activity = MAX(COALESCE(last_activity, 0), ${event.at}) WHERE id = ${id}`
        case "start_failed": {
          const lastError: PersistedError = {
            error: "StartupFailed",
            message: `service "${id}" failed to start after ${event.attempts.length} attempt(s)`,
            attempts: event.attempts
          }
          return sql`UPDATE services SET last_error = ${JSON.stringify(lastError)}, updated_at = ${event.at}
            WHERE id = ${id}`
        }
        default:
          return Effect.void
      }
    }
    // Subscribed now, before the registry exists, so its first events (restart adoption) are not missed.
    yield* eventWriter((batch) => {
      const changes = batch.filter((event) => CHANGES_ROW.has(event.type))
      if (changes.length === 0) return Effect.void
      return health.bestEffort(
        "service_state",
        sql.withTransaction(Effect.forEach(changes, apply, { discard: true })),
        {
          lost: changes.length
        }
      )
    })

    /** Every service the database knows, as the last run left it (read before this run changes anything). */
    const services = Effect.fn("ServiceRows.services")(function* () {
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
            lastError: parseError(row.last_error)
          }
        ])
      )
    })

    /**
     * Each service's last activity, in one transaction; a stamp older than the one stored changes nothing. The
     * caller decides how often (the registry: at most once a second, only what changed). Never fails.
     */
    const recordLastActivity = Effect.fn("ServiceRows.recordLastActivity")(function* (
      stamps: ReadonlyArray<readonly [serviceId: string, at: number]>
    ) {
      if (stamps.length === 0) return
      yield* health.bestEffort(
        "last_activity",
        sql.withTransaction(
          Effect.forEach(
            stamps,
            ([serviceId, at]) =>
              sql`UPDATE services SET last_activity = MAX(COALESCE(last_activity, 0), ${at}) WHERE id = ${serviceId}`,
            { discard: true }
          )
        ),
        { lost: stamps.length }
      )
    })

    return {
      services: inTraceOnly(services),
      recordLastActivity: inTraceOnly(recordLastActivity),
      mirrorConfig: (settings: Settings) => Effect.withTracerEnabled(mirrorConfig(settings), false)
    }
  }).pipe(Effect.withTracerEnabled(false)),
  dependencies: [Database, StoreHealth.Default, LifecycleEvents.Default]
}) {}
