import { mkdirSync } from "node:fs"
import * as Path from "node:path"
import { Migrator, SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Layer, Option } from "effect"
import { HestiaConfig } from "../config/HestiaConfig.ts"
import { loader } from "./migrations/index.ts"

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
  }).pipe(Effect.withTracerEnabled(false))
)

/**
 * SqlClient on the `database:` file (folder created, WAL), with every migration applied. Failing to open or migrate
 * is fatal: without its schema the gateway cannot even read what the previous run left.
 */
export const Database = migrationsLayer.pipe(Layer.provideMerge(clientLayer), Layer.orDie)

/**
 * A store operation is traced only inside a trace something else started (a cold start, a request): there it is a
 * child span with its `sql.*` children; on its own (start-up reads, background writers) it makes no span at all, so
 * the store's housekeeping never shows up as traces of its own.
 */
export const inTraceOnly =
  <Args extends ReadonlyArray<unknown>, A, E, R>(operation: (...args: Args) => Effect.Effect<A, E, R>) =>
  (...args: Args): Effect.Effect<A, E, R> =>
    Effect.flatMap(Effect.option(Effect.currentParentSpan), (parent) =>
      Option.isSome(parent) ? operation(...args) : Effect.withTracerEnabled(operation(...args), false)
    )
