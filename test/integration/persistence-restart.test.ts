import { readFileSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { callJson, eventually, freePort, processService, tempDir } from "../fixtures/Gateway.ts"
import { isRunning, killAll, killHard, startGateway, stopGracefully } from "../fixtures/GatewayProcess.ts"

// Upstreams a killed gateway leaves behind are killed at the end whatever happens.
const upstreams = new Set<number>()
afterAll(() => killAll(upstreams))

/** Read the gateway's database the way an operator would, read-only, while a gateway may be writing it. */
const inDatabase = <A>(file: string, query: (sql: SqlClient.SqlClient) => Effect.Effect<A, unknown>) =>
  Effect.flatMap(SqlClient.SqlClient, query).pipe(
    Effect.provide(SqliteClient.layer({ filename: file, readonly: true, disableWAL: true })),
    Effect.orDie
  )

const servicesRow = (file: string, id: string) =>
  inDatabase(file, (sql) =>
    Effect.map(
      sql<{ state: string; last_activity: number | null }>`SELECT state, last_activity FROM services WHERE id = ${id}`,
      (rows) => rows[0]
    )
  )

const processRows = (file: string) =>
  inDatabase(file, (sql) => sql<{ service_id: string; pid: number }>`SELECT service_id, pid FROM processes`)

const setup = (service: (port: number, record: string) => string) =>
  Effect.gen(function* () {
    const dir = tempDir("hestia-restart-")
    const database = Path.join(dir, "data", "hestia.db")
    const record = Path.join(dir, "starts.log")
    writeFileSync(record, "")
    const port = yield* Effect.promise(freePort)
    const configFile = Path.join(dir, "hestia.yml")
    writeFileSync(
      configFile,
      `server: { host: 127.0.0.1, port: 0 }\ndatabase: ${JSON.stringify(database)}\nservices:\n${service(port, record)}`
    )
    return { configFile, database, record }
  })

const starts = (record: string) =>
  readFileSync(record, "utf8")
    .split("\n")
    .filter((line) => line.startsWith("start "))
    .map((line) => Number(line.slice("start ".length)))

const timeline = (url: string, serviceId: string) =>
  Effect.map(callJson(`${url}/v1/activity?serviceId=${serviceId}`), (r) => r.json.activity as Array<any>)

const types = (rows: Array<any>) => rows.map((row) => row.type)

describe("restart safety: the gateway process stopped for real (SIGKILL, SIGTERM) and started again on one database", () => {
  it.scopedLive(
    "the still-running upstream is adopted hot, then stopped after its remaining idle time",
    () =>
      Effect.gen(function* () {
        // Long enough for the second gateway to come up (tsx compiles on start) before the idle time is over.
        const idleMs = 20_000
        const { configFile, database, record } = yield* setup((port, record) =>
          processService("up", port, { extraArgs: ["--record", record], settings: { idle_timeout_ms: idleMs } })
        )
        const first = yield* startGateway(configFile)
        const hello = yield* callJson(`${first.url}/services/up/hello`)
        assert.strictEqual(hello.status, 200)
        const pid: number = hello.json.pid
        upstreams.add(pid)
        const persisted = yield* eventually(
          servicesRow(database, "up"),
          (row) => row?.state === "hot" && row.last_activity !== null
        )

        yield* killHard(first)
        assert.isTrue(isRunning(pid), "a gateway killed with SIGKILL cannot stop its upstream")

        const second = yield* startGateway(configFile)
        const status = yield* callJson(`${second.url}/v1/services/up/status`)
        assert.strictEqual(status.json.state, "hot")
        assert.strictEqual(status.json.machineId, "local")
        const adopted = yield* timeline(second.url, "up")
        assert.deepStrictEqual(types(adopted), ["adopted", "ready", "attempt_started", "start_requested"])
        // The idle timer goes on from the last activity the first gateway recorded, not from the restart.
        assert.isAtLeast(adopted[0].detail.lastActivity, persisted!.last_activity!)

        yield* eventually(
          Effect.map(callJson(`${second.url}/v1/services/up/status`), (r) => r.json.state),
          (state) => state === "cold",
          600
        )
        yield* eventually(
          Effect.sync(() => isRunning(pid)),
          (running) => !running
        )
        const after = yield* eventually(timeline(second.url, "up"), (rows) => rows[0]?.type === "stopped")
        assert.deepStrictEqual(types(after), [
          "stopped",
          "idle_stop",
          "adopted",
          "ready",
          "attempt_started",
          "start_requested"
        ])
        const idleStop = after[1]
        assert.strictEqual(idleStop.machineId, "local")
        assert.isAtLeast(Date.parse(idleStop.ts) - adopted[0].detail.lastActivity, idleMs)
        assert.deepStrictEqual(starts(record), [pid], "nothing was started again")
        assert.deepStrictEqual(yield* processRows(database), [])
        assert.strictEqual(yield* stopGracefully(second), 0)
      }),
    60_000
  )

  it.scopedLive(
    "a clean stop (SIGTERM) stops the upstream; the next start finds the service cold, with nothing to clean up",
    () =>
      Effect.gen(function* () {
        const { configFile, database } = yield* setup((port, record) =>
          processService("up", port, { extraArgs: ["--record", record], settings: { idle_timeout_ms: 60_000 } })
        )
        const first = yield* startGateway(configFile)
        const hello = yield* callJson(`${first.url}/services/up/hello`)
        const pid: number = hello.json.pid
        upstreams.add(pid)
        yield* eventually(servicesRow(database, "up"), (row) => row?.state === "hot")
        assert.strictEqual(yield* stopGracefully(first), 0)
        assert.isFalse(isRunning(pid))
        assert.deepStrictEqual(yield* processRows(database), [])

        const second = yield* startGateway(configFile)
        assert.strictEqual((yield* callJson(`${second.url}/v1/services/up/status`)).json.state, "cold")
        assert.isFalse(second.lines.some((line) => line.includes('"event":"process_reclaimed"')))
        const rows = yield* timeline(second.url, "up")
        assert.deepStrictEqual(types(rows), ["ready", "attempt_started", "start_requested"])
        assert.strictEqual((yield* servicesRow(database, "up"))?.state, "cold")
        assert.strictEqual(yield* stopGracefully(second), 0)
      }),
    60_000
  )

  it.scopedLive(
    "a second gateway started on the same database by mistake leaves the first one's processes alone",
    () =>
      Effect.gen(function* () {
        const { configFile, database, record } = yield* setup((port, record) =>
          processService("up", port, { extraArgs: ["--record", record], settings: { idle_timeout_ms: 60_000 } })
        )
        const first = yield* startGateway(configFile)
        const pid: number = (yield* callJson(`${first.url}/services/up/hello`)).json.pid
        upstreams.add(pid)
        yield* eventually(servicesRow(database, "up"), (row) => row?.state === "hot")

        const second = yield* startGateway(configFile)
        assert.isTrue(second.lines.some((line) => line.includes('"event":"process_owned_elsewhere"')))
        assert.isTrue(isRunning(pid))
        const again = yield* callJson(`${first.url}/services/up/again`)
        assert.strictEqual(again.json.pid, pid)
        assert.deepStrictEqual(starts(record), [pid])
        assert.strictEqual(yield* stopGracefully(second), 0)
        assert.strictEqual(yield* stopGracefully(first), 0)
        assert.isFalse(isRunning(pid))
      }),
    60_000
  )

  it.scopedLive(
    "killed mid-start: no service stays starting, and the half-started process is not left running",
    () =>
      Effect.gen(function* () {
        const { configFile, database, record } = yield* setup((port, record) =>
          processService("slow", port, {
            extraArgs: ["--record", record, "--boot-ms", "30000"],
            settings: { idle_timeout_ms: 60_000, request_timeout_seconds: 60 }
          })
        )
        const first = yield* startGateway(configFile)
        // The request waits for a start that will not finish before the gateway dies.
        yield* Effect.forkScoped(Effect.exit(callJson(`${first.url}/services/slow/x`)))
        const [row] = yield* eventually(processRows(database), (rows) => rows.length === 1)
        upstreams.add(row!.pid)
        assert.strictEqual(row!.service_id, "slow")
        assert.strictEqual((yield* callJson(`${first.url}/v1/services/slow/status`)).json.state, "starting")

        yield* killHard(first)
        assert.isTrue(isRunning(row!.pid))

        const second = yield* startGateway(configFile)
        // Settled before the gateway listens: never seen `starting`.
        const status = (yield* callJson(`${second.url}/v1/services/slow/status`)).json
        assert.strictEqual(status.state, "cold")
        assert.deepStrictEqual(
          status.lastError.attempts.map((a: any) => [a.machine, a.error]),
          [["local", "GatewayRestarted"]]
        )
        yield* eventually(
          Effect.sync(() => isRunning(row!.pid)),
          (running) => !running
        )
        assert.deepStrictEqual(yield* processRows(database), [])
        assert.isTrue(second.lines.some((line) => line.includes('"event":"process_reclaimed"')))
        const rows = yield* eventually(timeline(second.url, "slow"), (rows) => rows[0]?.type === "start_failed")
        assert.deepStrictEqual(types(rows), ["start_failed", "attempt_started", "start_requested"])
        assert.deepStrictEqual(starts(record), [row!.pid])
        assert.strictEqual(yield* stopGracefully(second), 0)
      }),
    60_000
  )
})
