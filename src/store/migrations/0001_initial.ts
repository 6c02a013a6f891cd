import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The first schema. Times are Clock milliseconds (INTEGER); JSON columns hold TEXT.
 * `processes` is what restart safety needs: every process group the gateway spawned and has not yet seen stopped.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE services (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    config TEXT NOT NULL,
    in_config INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL DEFAULT 'cold',
    state_since INTEGER,
    machine_id TEXT,
    last_activity INTEGER,
    last_error TEXT,
    updated_at INTEGER NOT NULL
  )`
  yield* sql`CREATE TABLE machines (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    semaphore_machine_id TEXT,
    labels TEXT NOT NULL DEFAULT '{}',
    in_config INTEGER NOT NULL DEFAULT 1,
    updated_at INTEGER NOT NULL
  )`
  yield* sql`CREATE TABLE routing_rules (
    position INTEGER PRIMARY KEY,
    services TEXT,
    prefer TEXT NOT NULL,
    updated_at INTEGER NOT NULL
  )`
  yield* sql`CREATE TABLE activity (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    service_id TEXT,
    machine_id TEXT,
    type TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    request_id TEXT
  )`
  yield* sql`CREATE INDEX activity_by_service ON activity (service_id, id)`
  yield* sql`CREATE TABLE auth_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    label TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    disabled_at INTEGER
  )`
  yield* sql`CREATE TABLE processes (
    service_id TEXT PRIMARY KEY,
    machine_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pgid INTEGER NOT NULL,
    identity TEXT,
    command TEXT NOT NULL,
    started_at INTEGER NOT NULL
  )`
})
