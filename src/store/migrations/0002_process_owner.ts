import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Which gateway spawned each process: a second gateway started on the same database (by mistake) must not take over
 * or kill the processes of one that is still running.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE processes ADD COLUMN owner_pid INTEGER`
  yield* sql`ALTER TABLE processes ADD COLUMN owner_identity TEXT`
})
