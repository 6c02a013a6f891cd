import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Containers the gateway started and has not yet seen stopped, like `processes`: after a gateway killed with SIGKILL,
 * the next run adopts or stops them. `created` says Hestia created the container (so `remove_on_stop` may remove it).
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE containers (
    service_id TEXT PRIMARY KEY,
    machine_id TEXT NOT NULL,
    engine TEXT NOT NULL,
    container_id TEXT NOT NULL,
    name TEXT NOT NULL,
    image TEXT NOT NULL,
    created INTEGER NOT NULL,
    started_at INTEGER NOT NULL
  )`
})
