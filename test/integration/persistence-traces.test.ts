import * as Path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-base"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { newKey } from "../../src/auth/Auth.ts"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { HttpGateway } from "../../src/http/HttpGateway.ts"
import * as Telemetry from "../../src/observability/Telemetry.ts"
import * as OrchestratorByKind from "../../src/orchestrators/OrchestratorByKind.ts"
import { ServiceRegistry } from "../../src/registry/ServiceRegistry.ts"
import { call, callJson, eventually, freePort, processService, tempDir } from "../fixtures/Gateway.ts"
import { traceId } from "../fixtures/Observability.ts"

const KEY = newKey()

/** Names the store's housekeeping gives (or gave) its spans: none may be the root of a trace of its own. */
const HOUSEKEEPING =
  /^(sql\.|Store\.|Database\.|ActivityLog\.|ServiceRows\.|ProcessRecords\.|AuthKeys\.|StoreHealth\.|Auth\.)/

const isRoot = (span: ReadableSpan) => span.parentSpanContext === undefined

describe("traces of a persisted gateway: the store's writes make no traces of their own", () => {
  it.live(
    "a cold start, hot requests, a denied request, an idle stop and a shutdown: only cold-start and request traces",
    () =>
      Effect.gen(function* () {
        const port = yield* Effect.promise(freePort)
        const yaml = `server: { host: 127.0.0.1, port: 0 }
database: ${JSON.stringify(Path.join(tempDir("hestia-traces-"), "hestia.db"))}
auth:
  api_keys: [${JSON.stringify(KEY)}]
services:
${processService("svc", port, { settings: { idle_timeout_ms: 1_500 } })}`
        const gateway = Layer.mergeAll(HttpGateway.Default, ServiceRegistry.Default).pipe(
          Layer.provide(OrchestratorByKind.layer),
          Layer.provide(HestiaConfig.layerYaml(yaml)),
          Layer.provide(NodeContext.layer),
          Layer.provide(Logger.minimumLogLevel(LogLevel.None)),
          Layer.orDie
        )
        const headers = { "x-api-key": KEY }
        const life = Effect.gen(function* () {
          const url = (yield* HttpGateway).url
          assert.strictEqual((yield* call(`${url}/services/svc/cold`, { headers })).status, 200)
          for (let i = 0; i < 3; i++) {
            assert.strictEqual((yield* call(`${url}/services/svc/hot/${i}`, { headers })).status, 200)
          }
          assert.strictEqual((yield* call(`${url}/services/svc/denied`)).status, 401)
          assert.strictEqual((yield* callJson(`${url}/v1/activity`, { headers })).status, 200)
          // The idle stop forgets the process record; last activity is flushed on the way.
          yield* eventually(
            Effect.map(callJson(`${url}/v1/services/svc/status`, { headers }), (r) => r.json.state),
            (state) => state === "cold",
            400
          )
        })

        const exporter = new InMemorySpanExporter()
        // The gateway's whole life, start to shutdown, inside the exporter's (which forgets everything at its own).
        const spans = yield* Effect.provide(life, gateway).pipe(
          Effect.zipRight(Effect.sync(() => exporter.getFinishedSpans())),
          Effect.provide(Telemetry.layerExporter(exporter))
        )

        const coldStarts = spans.filter((span) => span.name === "ServiceRegistry.coldStart")
        assert.strictEqual(coldStarts.length, 1, "one cold start")
        const requestTraces = new Set(
          spans.filter((span) => span.name === "ServiceProxy.request" && isRoot(span)).map(traceId)
        )
        assert.isAtLeast(requestTraces.size, 4, "the proxied requests are traced")
        const roots = spans.filter(isRoot)
        if (process.env.HESTIA_PRINT_TRACE) console.log(roots.map((span) => span.name))
        const housekeepingRoots = roots.filter((span) => HOUSEKEEPING.test(span.name)).map((span) => span.name)
        assert.deepStrictEqual(housekeepingRoots, [], "no housekeeping span is the root of a trace")
        // Control requests (status, activity) may be request traces of their own; nothing else is.
        const controlTraces = new Set(roots.filter((span) => span.name.startsWith("http.")).map(traceId))
        const allowed = new Set([traceId(coldStarts[0]!), ...requestTraces, ...controlTraces])
        const strays = spans.filter((span) => !allowed.has(traceId(span))).map((span) => span.name)
        assert.deepStrictEqual(strays, [], "every span belongs to the cold start's trace or to a request's")
      }),
    60_000
  )
})
