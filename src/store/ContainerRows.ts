import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { Database, inTraceOnly } from "./Database.ts"
import { StoreHealth } from "./StoreHealth.ts"

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

/**
 * The `containers` table: what a gateway killed with SIGKILL left running, for the next run to adopt or stop. As for
 * processes, recording and forgetting are best effort: a start or a stop never fails because the database does.
 */
export class ContainerRows extends Effect.Service<ContainerRows>()("hestia/ContainerRows", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const health = yield* StoreHealth

    const recordContainer = Effect.fn("ContainerRows.recordContainer")(function* (record: ContainerRecord) {
      yield* health.bestEffort(
        "container_record",
        sql`INSERT OR REPLACE INTO containers
          (service_id, machine_id, engine, container_id, name, image, created, started_at)
          VALUES (${record.serviceId}, ${record.machineId}, ${record.engine}, ${record.containerId}, ${record.name},
            ${record.image}, ${record.created ? 1 : 0}, ${record.startedAt})`,
        { serviceId: record.serviceId, containerId: record.containerId }
      )
    })

    const forgetContainer = Effect.fn("ContainerRows.forgetContainer")(function* (
      serviceId: string,
      containerId: string
    ) {
      yield* health.bestEffort(
        "container_record",
        sql`DELETE FROM containers WHERE service_id = ${serviceId} AND container_id = ${containerId}`,
        { serviceId, containerId }
      )
    })

    const containers = Effect.fn("ContainerRows.containers")(function* () {
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

    return {
      recordContainer: inTraceOnly(recordContainer),
      forgetContainer: inTraceOnly(forgetContainer),
      containers: inTraceOnly(containers)
    }
  }),
  dependencies: [Database, StoreHealth.Default]
}) {}
