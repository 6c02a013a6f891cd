import { Migrator } from "@effect/sql"
import initial from "./0001_initial.ts"
import processOwner from "./0002_process_owner.ts"
import containers from "./0003_containers.ts"

/** Every migration, by `<id>_<name>`; the Migrator runs the ones a database has not seen, in id order. */
export const loader = Migrator.fromRecord({
  "0001_initial": initial,
  "0002_process_owner": processOwner,
  "0003_containers": containers
})
