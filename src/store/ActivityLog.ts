import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { type LifecycleEvent, LifecycleEvents, type LifecycleEventType } from "../registry/LifecycleEvents.ts"
import { Database, inTraceOnly } from "./Database.ts"
import { eventWriter } from "./EventWriter.ts"
import { StoreHealth } from "./StoreHealth.ts"

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

export interface ActivityQuery {
  readonly serviceId?: string | undefined
  readonly limit: number
  /** Only rows with an id below this (the `nextBefore` cursor of a previous page). */
  readonly beforeId?: number | undefined
  /** Only rows older than this Clock time. */
  readonly beforeTs?: number | undefined
}

/**
 * Not written as activity rows: `state` only updates the services row (every transition also has its own event);
 * `request_queued` and `request_released` come once per waiting request, too noisy for a timeline (the `ready` row
 * counts the requests released). Rejected requests are kept.
 */
const NOT_IN_TIMELINE: ReadonlySet<LifecycleEventType> = new Set(["state", "request_queued", "request_released"])

interface ActivityDbRow {
  readonly id: number
  readonly ts: number
  readonly service_id: string | null
  readonly machine_id: string | null
  readonly type: string
  readonly detail: string
  readonly request_id: string | null
}

const parseDetail = (text: string): Record<string, unknown> => {
  try {
    return JSON.parse(text) as Record<string, unknown>
  } catch {
    return {}
  }
}

const toInput = (event: LifecycleEvent): ActivityInput => {
  const { type, serviceId, at, machineId, requestId, ...detail } = event
  return { ts: at, type, serviceId, machineId, requestId, detail }
}

/**
 * The timeline: every lifecycle event worth keeping becomes a row, written in batches on a fiber of its own (never on
 * the request path, never failing what caused it); `append` adds rows from outside the bus; `activity` pages it.
 */
export class ActivityLog extends Effect.Service<ActivityLog>()("hestia/ActivityLog", {
  scoped: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const health = yield* StoreHealth

    const insert = (row: ActivityInput) =>
      sql`INSERT INTO activity (ts, service_id, machine_id, type, detail, request_id)
        VALUES (${row.ts}, ${row.serviceId ?? null}, ${row.machineId ?? null}, ${row.type},
          ${JSON.stringify(row.detail ?? {})}, ${row.requestId ?? null})`

    // Subscribed now, before the registry exists, so its first events (restart adoption) are not missed.
    yield* eventWriter((batch) => {
      const rows = batch.filter((event) => !NOT_IN_TIMELINE.has(event.type)).map(toInput)
      if (rows.length === 0) return Effect.void
      return health.bestEffort("activity", sql.withTransaction(Effect.forEach(rows, insert, { discard: true })), {
        lost: rows.length
      })
    })

    const append = Effect.fn("ActivityLog.append")(function* (row: ActivityInput) {
      yield* health.bestEffort("activity", insert(row), { lost: 1, type: row.type })
    })

    /** Newest first, one bounded page. */
    const activity = Effect.fn("ActivityLog.activity")(function* (query: ActivityQuery) {
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
          detail: parseDetail(row.detail),
          requestId: row.request_id
        })
      )
    })

    return { append: inTraceOnly(append), activity: inTraceOnly(activity) }
  }).pipe(Effect.withTracerEnabled(false)),
  dependencies: [Database, StoreHealth.Default, LifecycleEvents.Default]
}) {}
