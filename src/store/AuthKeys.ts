import { SqlClient } from "@effect/sql"
import { Clock, Data, Effect } from "effect"
import { Database, inTraceOnly } from "./Database.ts"
import { StoreHealth } from "./StoreHealth.ts"

export interface AuthKeyRow {
  readonly label: string
  /** SHA-256 of the key, hex. The key itself is never stored. */
  readonly hash: string
  readonly source: "config" | "cli"
  readonly createdAt: number
  readonly lastUsedAt: number | null
  readonly disabledAt: number | null
}

export class KeyLabelTaken extends Data.TaggedError("KeyLabelTaken")<{ readonly label: string }> {
  override get message() {
    return `a key labelled "${this.label}" already exists`
  }
}

/**
 * The `auth_keys` table: hashes only. The gateway syncs the config's keys and writes last use (both best effort: Auth
 * also keeps the config's hashes in memory); `hestia keys` adds, disables, enables and removes keys (those writes fail loudly).
 */
export class AuthKeys extends Effect.Service<AuthKeys>()("hestia/AuthKeys", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const health = yield* StoreHealth

    const authKeys = Effect.fn("AuthKeys.authKeys")(function* () {
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
    const syncConfigKeys = Effect.fn("AuthKeys.syncConfigKeys")(function* (hashes: ReadonlyArray<string>) {
      const at = yield* Clock.currentTimeMillis
      const sync = Effect.gen(function* () {
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
      yield* health.bestEffort("key_sync", sql.withTransaction(sync))
    })

    const addKey = Effect.fn("AuthKeys.addKey")(function* (label: string, hash: string) {
      const at = yield* Clock.currentTimeMillis
      const taken = yield* sql`SELECT 1 FROM auth_keys WHERE label = ${label}`.pipe(Effect.orDie)
      if (taken.length > 0) return yield* new KeyLabelTaken({ label })
      yield* sql`INSERT INTO auth_keys (label, hash, source, created_at) VALUES (${label}, ${hash}, 'cli', ${at})`.pipe(
        Effect.orDie
      )
    })

    /** Disable the key with this label; false when there is none. */
    const disableKey = Effect.fn("AuthKeys.disableKey")(function* (label: string) {
      const at = yield* Clock.currentTimeMillis
      const rows = yield* sql`UPDATE auth_keys SET disabled_at = COALESCE(disabled_at, ${at}) WHERE label = ${label}
        RETURNING label`.pipe(Effect.orDie)
      return rows.length > 0
    })

    /** Enable the key with this label again; false when there is none. */
    const enableKey = Effect.fn("AuthKeys.enableKey")(function* (label: string) {
      const rows = yield* sql`UPDATE auth_keys SET disabled_at = NULL WHERE label = ${label} RETURNING label`.pipe(
        Effect.orDie
      )
      return rows.length > 0
    })

    /**
     * Delete a CLI key; "missing" when there is none. A config key is refused ("config"): the next start would add
     * it back from the config, which is where it goes away.
     */
    const removeKey = Effect.fn("AuthKeys.removeKey")(function* (label: string) {
      const rows = yield* sql<{ source: string }>`SELECT source FROM auth_keys WHERE label = ${label}`.pipe(
        Effect.orDie
      )
      if (rows.length === 0) return "missing" as const
      if (rows[0]!.source === "config") return "config" as const
      yield* sql`DELETE FROM auth_keys WHERE label = ${label}`.pipe(Effect.orDie)
      return "removed" as const
    })

    /** Last use of each key, in one transaction (Auth batches them: never a write per request). Never fails. */
    const touchKeys = Effect.fn("AuthKeys.touchKeys")(function* (used: ReadonlyArray<readonly [string, number]>) {
      if (used.length === 0) return
      yield* health.bestEffort(
        "key_last_use",
        sql.withTransaction(
          Effect.forEach(used, ([hash, at]) => sql`UPDATE auth_keys SET last_used_at = ${at} WHERE hash = ${hash}`, {
            discard: true
          })
        ),
        { lost: used.length }
      )
    })

    return {
      authKeys: inTraceOnly(authKeys),
      syncConfigKeys: inTraceOnly(syncConfigKeys),
      addKey: inTraceOnly(addKey),
      disableKey: inTraceOnly(disableKey),
      enableKey: inTraceOnly(enableKey),
      removeKey: inTraceOnly(removeKey),
      touchKeys: inTraceOnly(touchKeys)
    }
  }),
  dependencies: [Database, StoreHealth.Default]
}) {}
