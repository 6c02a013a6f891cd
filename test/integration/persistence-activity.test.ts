import * as Path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { HttpGateway } from "../../src/http/HttpGateway.ts"
import * as OrchestratorByKind from "../../src/orchestrators/OrchestratorByKind.ts"
import { ServiceRegistry } from "../../src/registry/ServiceRegistry.ts"
import { ActivityLog } from "../../src/store/ActivityLog.ts"
import { call, callJson, eventually, freePort, gatewayUrl, processService, tempDir } from "../fixtures/Gateway.ts"

const database = Path.join(tempDir("hestia-activity-"), "hestia.db")
const ports = { idle: await freePort(), dies: await freePort() }

const yaml = `server: { host: 127.0.0.1, port: 0 }
database: ${JSON.stringify(database)}
services:
${processService("idle", ports.idle, { settings: { idle_timeout_ms: 300 } })}${processService("dies", ports.dies, {
  extraArgs: ["--exit-code", "3"],
  settings: { retry_count: 1, retry_delay_ms: 10 }
})}  filler: { base_url: "http://127.0.0.1:1" }
`

/** The real gateway with its ActivityLog in the context too (one ActivityLog: layers are shared within a build). */
const gateway = Layer.mergeAll(HttpGateway.Default, ServiceRegistry.Default, ActivityLog.Default).pipe(
  Layer.provide(OrchestratorByKind.layer),
  Layer.provide(HestiaConfig.layerYaml(yaml)),
  Layer.provide(NodeContext.layer),
  Layer.provide(Logger.minimumLogLevel(LogLevel.None)),
  Layer.orDie
)

const activity = (base: string, query: string) => callJson(`${base}/v1/activity${query}`)

layer(gateway, { excludeTestServices: true, timeout: "30 seconds" })("the persisted timeline over HTTP", (it) => {
  it.effect("a cold start and an idle stop: every step in order, newest first, with machine and request id", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const response = yield* call(`${base}/services/idle/x`, { headers: { "x-request-id": "timeline-1" } })
      assert.strictEqual(response.status, 200)
      const rows: Array<any> = yield* eventually(
        Effect.map(activity(base, "?serviceId=idle"), (r) => r.json.activity),
        (rows: Array<any>) => rows[0]?.type === "stopped"
      )
      assert.deepStrictEqual(
        rows.map((r) => [r.type, r.serviceId, r.machineId]),
        [
          ["stopped", "idle", "local"],
          ["idle_stop", "idle", "local"],
          ["ready", "idle", "local"],
          ["attempt_started", "idle", "local"],
          ["start_requested", "idle", null]
        ]
      )
      const byType = Object.fromEntries(rows.map((r) => [r.type, r]))
      assert.strictEqual(byType.start_requested.requestId, "timeline-1")
      assert.deepStrictEqual(byType.start_requested.detail, { trigger: "request", machines: ["local"] })
      assert.deepStrictEqual(byType.attempt_started.detail, { attempt: 1 })
      assert.strictEqual(byType.ready.detail.released, 1)
      assert.isNumber(byType.ready.detail.durationMs)
      assert.deepStrictEqual(byType.idle_stop.detail, { idleMs: 300 })
      assert.deepStrictEqual(byType.stopped.detail, { reason: "idle" })
      const ids = rows.map((r) => r.id)
      assert.deepStrictEqual(
        ids,
        [...ids].sort((a, b) => b - a)
      )
      const times = rows.map((r) => Date.parse(r.ts))
      assert.deepStrictEqual(
        times,
        [...times].sort((a, b) => b - a)
      )
    })
  )

  it.effect("a failed start: each attempt and its error, then start_failed with every attempt", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      assert.strictEqual((yield* call(`${base}/services/dies/x`)).status, 503)
      const rows: Array<any> = yield* eventually(
        Effect.map(activity(base, "?serviceId=dies"), (r) => r.json.activity),
        (rows: Array<any>) => rows[0]?.type === "start_failed"
      )
      assert.deepStrictEqual(
        rows.map((r) => [r.type, r.detail.attempt ?? null, r.detail.error ?? null]),
        [
          ["start_failed", null, null],
          ["attempt_failed", 2, "ProcessExited"],
          ["attempt_started", 2, null],
          ["attempt_failed", 1, "ProcessExited"],
          ["attempt_started", 1, null],
          ["start_requested", null, null]
        ]
      )
      assert.deepStrictEqual(
        rows[0].detail.attempts.map((a: any) => [a.machine, a.attempt, a.error]),
        [
          ["local", 1, "ProcessExited"],
          ["local", 2, "ProcessExited"]
        ]
      )
      assert.strictEqual(rows[0].detail.rejected, 1)
    })
  )

  it.effect("pages: limit, the nextBefore cursor, a time; default 100, at most 1000", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const store = yield* ActivityLog
      for (let i = 0; i < 1_100; i++) {
        yield* store.append({ ts: 1_000_000 + i, type: "note", serviceId: "filler", detail: { i } })
      }
      const page1 = (yield* activity(base, "?serviceId=filler&limit=3")).json
      assert.deepStrictEqual(
        page1.activity.map((r: any) => r.detail.i),
        [1099, 1098, 1097]
      )
      assert.strictEqual(page1.nextBefore, page1.activity[2].id)
      const page2 = (yield* activity(base, `?serviceId=filler&limit=3&before=${page1.nextBefore}`)).json
      assert.deepStrictEqual(
        page2.activity.map((r: any) => r.detail.i),
        [1096, 1095, 1094]
      )
      const before = new Date(1_000_000 + 2).toISOString()
      const old = (yield* activity(base, `?serviceId=filler&before=${before}`)).json
      assert.deepStrictEqual(
        old.activity.map((r: any) => r.detail.i),
        [1, 0]
      )
      assert.isNull(old.nextBefore)
      assert.strictEqual((yield* activity(base, "?serviceId=filler")).json.activity.length, 100)
      assert.strictEqual((yield* activity(base, "?serviceId=filler&limit=1000")).json.activity.length, 1000)
      // Unfiltered, every service's rows.
      const all = (yield* activity(base, "?limit=1000")).json.activity
      assert.strictEqual(all.length, 1000)
    })
  )

  it.effect("bad parameters are 400 saying what was wrong; an unknown service is 404", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      for (const query of [
        "?limit=0",
        "?limit=1001",
        "?limit=ten",
        "?limit=1.5",
        "?limit=1&limit=2",
        "?before=yesterday",
        "?before=-4",
        "?serviceId=",
        "?service=idle"
      ]) {
        const response = yield* activity(base, query)
        assert.strictEqual(response.status, 400, query)
        assert.strictEqual(response.json.error, "BadRequest", query)
      }
      assert.match((yield* activity(base, "?limit=5000")).json.message, /limit must be a whole number from 1 to 1000/)
      assert.match((yield* activity(base, "?before=soon")).json.message, /before must be an activity id or an ISO-8601/)
      assert.strictEqual((yield* activity(base, "?service=idle")).json.message, 'unknown parameter "service"')
      const unknown = yield* activity(base, "?serviceId=nope")
      assert.strictEqual(unknown.status, 404)
      assert.strictEqual(unknown.json.error, "UnknownService")
    })
  )
})
