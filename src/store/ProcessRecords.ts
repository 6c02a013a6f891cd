import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { Database, inTraceOnly } from "./Database.ts"
import { StoreHealth } from "./StoreHealth.ts"

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

/**
 * The `processes` table, what restart safety needs: a gateway killed with SIGKILL finds there what it left running.
 * Recording and forgetting are best effort: a start or a stop never fails because the database does.
 */
export class ProcessRecords extends Effect.Service<ProcessRecords>()("hestia/ProcessRecords", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const health = yield* StoreHealth

    const recordProcess = Effect.fn("ProcessRecords.recordProcess")(function* (record: ProcessRecord) {
      yield* health.bestEffort(
        "process_record",
        sql`INSERT OR REPLACE INTO processes
          (service_id, machine_id, pid, pgid, identity, command, started_at, owner_pid, owner_identity)
          VALUES (${record.serviceId}, ${record.machineId}, ${record.pid}, ${record.pgid}, ${record.identity},
            ${record.command}, ${record.startedAt}, ${record.ownerPid}, ${record.ownerIdentity})`,
        { serviceId: record.serviceId, pid: record.pid }
      )
    })

    const forgetProcess = Effect.fn("ProcessRecords.forgetProcess")(function* (serviceId: string, pid: number) {
      yield* health.bestEffort(
        "process_record",
        sql`DELETE FROM processes WHERE service_id = ${serviceId} AND pid = ${pid}`,
        {
          serviceId,
          pid
        }
      )
    })

    const processes = Effect.fn("ProcessRecords.processes")(function* () {
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

    return {
      recordProcess: inTraceOnly(recordProcess),
      forgetProcess: inTraceOnly(forgetProcess),
      processes: inTraceOnly(processes)
    }
  }),
  dependencies: [Database, StoreHealth.Default]
}) {}
