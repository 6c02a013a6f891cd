import { execFileSync } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { call, callJson, eventually, freePort, processService, tempDir } from "../fixtures/Gateway.ts"
import { killAll, startGateway, stopGracefully } from "../fixtures/GatewayProcess.ts"
import { parsePrometheus, sampleValue } from "../fixtures/Observability.ts"

const upstreams = new Set<number>()
afterAll(() => killAll(upstreams))

/**
 * `chattr +i`: not even root may write the file any more, whatever is open — what a read-only mount or a full disk do
 * to SQLite's writes. Needs root and a filesystem with the immutable flag (ext4, xfs, btrfs); false when it cannot.
 */
const setImmutable = (files: ReadonlyArray<string>, on: boolean) => {
  try {
    execFileSync("chattr", [on ? "+i" : "-i", ...files], { stdio: "pipe" })
    return true
  } catch (error) {
    if (on) {
      console.warn(
        `persistence-unwritable: COULD NOT RUN, chattr +i failed (needs root on ext4/xfs/btrfs): ${String(error)}`
      )
    }
    return false
  }
}

const logEntries = (lines: ReadonlyArray<string>) =>
  lines.flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, unknown>]
    } catch {
      return []
    }
  })

describe("a database that becomes unwritable while the gateway runs (chattr +i on hestia.db and its WAL)", () => {
  it.scopedLive(
    "a cold start of a command service still succeeds; the log names SQLite's reason; /healthz says degraded, then ok",
    () =>
      Effect.gen(function* () {
        const dir = tempDir("hestia-unwritable-")
        const database = Path.join(dir, "hestia.db")
        const record = Path.join(dir, "starts.log")
        writeFileSync(record, "")
        const port = yield* Effect.promise(freePort)
        const configFile = Path.join(dir, "hestia.yml")
        writeFileSync(
          configFile,
          `server: { host: 127.0.0.1, port: 0 }\ndatabase: ${JSON.stringify(database)}\nservices:\n${processService(
            "up",
            port,
            { extraArgs: ["--record", record], settings: { idle_timeout_ms: 60_000 } }
          )}`
        )
        const gateway = yield* startGateway(configFile)
        const files = [database, `${database}-wal`]
        // Whatever happens next, the files are writable (and deletable) again afterwards.
        const frozen = yield* Effect.acquireRelease(
          Effect.sync(() => setImmutable(files, true)),
          (done) => Effect.sync(() => done && setImmutable(files, false))
        )
        if (!frozen) return

        const cold = yield* callJson(`${gateway.url}/services/up/cold`)
        assert.strictEqual(cold.status, 200, cold.text)
        const pid: number = cold.json.pid
        upstreams.add(pid)
        for (let i = 0; i < 3; i++) assert.strictEqual((yield* call(`${gateway.url}/services/up/hot/${i}`)).status, 200)
        const status = yield* callJson(`${gateway.url}/v1/services/up/status`)
        assert.strictEqual(status.json.state, "hot")
        assert.isNull(status.json.lastError)

        // The last-activity flush (within a second) fails too; the health check says so and still answers 200.
        yield* eventually(
          Effect.sync(() => logEntries(gateway.lines)),
          (entries) => entries.some((entry) => entry.operation === "last_activity")
        )
        const health = yield* callJson(`${gateway.url}/healthz`)
        assert.strictEqual(health.status, 200)
        assert.strictEqual(health.json.status, "degraded")
        assert.strictEqual(health.json.store.writes, "failing")
        const reason: string = health.json.store.lastError.message
        assert.match(reason, /^SQLITE_\w+: /, "SQLite's own code and message")

        const failures = logEntries(gateway.lines).filter((entry) => entry.event === "store_write_failed")
        const operations = new Set(failures.map((entry) => entry.operation))
        for (const operation of ["process_record", "activity", "service_state", "last_activity"]) {
          assert.isTrue(operations.has(operation), `a failed ${operation} write is logged`)
        }
        for (const entry of failures) {
          assert.strictEqual(entry.level, "error")
          assert.match(String(entry.error), /^SQLITE_\w+: /)
          assert.include(String(entry.msg), String(entry.error))
        }
        const metrics = parsePrometheus((yield* call(`${gateway.url}/metrics`)).text)
        assert.isAtLeast(sampleValue(metrics, "hestia_store_write_failures_total", { operation: "process_record" }), 1)

        // The files writable again: the next write succeeds and the gateway is healthy again.
        assert.isTrue(setImmutable(files, false))
        yield* call(`${gateway.url}/services/up/after`)
        const healthy = yield* eventually(callJson(`${gateway.url}/healthz`), (r) => r.json.status === "ok")
        assert.strictEqual(healthy.json.store.writes, "ok")
        assert.isAtLeast(healthy.json.store.writeFailures, 3)
        assert.isTrue(logEntries(gateway.lines).some((entry) => entry.event === "store_write_recovered"))

        // One process, started once and never killed by the failed bookkeeping; a clean stop still works.
        assert.deepStrictEqual(
          readFileSync(record, "utf8")
            .split("\n")
            .filter((line) => line.startsWith("start ")),
          [`start ${pid}`]
        )
        assert.strictEqual(yield* stopGracefully(gateway), 0)
      }),
    60_000
  )
})
