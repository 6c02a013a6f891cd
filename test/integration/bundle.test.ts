import { execFileSync } from "node:child_process"
import { writeFileSync } from "node:fs"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import {
  callJson,
  eventually,
  freePort,
  gatewayYaml,
  isAlive,
  processService,
  repoRoot,
  tempDir
} from "../fixtures/Gateway.ts"
import { startGateway, stopGracefully } from "../fixtures/GatewayProcess.ts"

interface OtlpSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly attributes: ReadonlyArray<{ readonly key: string; readonly value: Record<string, unknown> }>
}

/** An OTLP/HTTP (JSON) traces receiver on 127.0.0.1: every span it was sent. */
const otlpReceiver = Effect.acquireRelease(
  Effect.async<{ url: string; spans: Array<OtlpSpan>; server: Http.Server }>((resume) => {
    const spans: Array<OtlpSpan> = []
    const server = Http.createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (chunk) => chunks.push(chunk))
      req.on("end", () => {
        if (req.url === "/v1/traces") {
          const body = JSON.parse(Buffer.concat(chunks).toString("utf8"))
          for (const resource of body.resourceSpans ?? [])
            for (const scope of resource.scopeSpans ?? []) spans.push(...(scope.spans ?? []))
        }
        res.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, server }))
    )
  }),
  ({ server }) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
)

// `npm start` runs the esbuild bundle, not the sources: this checks that artifact end to end.
describe("the bundle npm start runs (dist/main.mjs)", () => {
  it.live(
    "builds, serves a cold start through a real process, and stops it on SIGTERM",
    () =>
      Effect.gen(function* () {
        execFileSync(process.execPath, ["scripts/build.mjs"], { cwd: repoRoot, stdio: "pipe" })
        const dir = tempDir("hestia-bundle-")
        const port = yield* Effect.promise(freePort)
        const config = Path.join(dir, "hestia.yml")
        writeFileSync(config, gatewayYaml(processService("echo", port, { settings: { idle_timeout_ms: 0 } })))
        const gateway = yield* startGateway(config, { HESTIA_DATABASE: Path.join(dir, "hestia.db") }, ["dist/main.mjs"])

        const health = yield* callJson(`${gateway.url}/healthz`)
        assert.strictEqual(health.json.status, "ok")
        const response = yield* callJson(`${gateway.url}/services/echo/from/bundle?x=1`)
        assert.strictEqual(response.status, 200)
        assert.strictEqual(response.json.url, "/from/bundle?x=1")
        const pid: number = response.json.pid
        assert.isTrue(isAlive(pid))

        assert.strictEqual(yield* stopGracefully(gateway), 0)
        yield* eventually(
          Effect.sync(() => isAlive(pid)),
          (alive) => !alive
        )
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "with OTEL_EXPORTER_OTLP_ENDPOINT set, the bundle starts and its cold-start trace reaches the receiver",
    () =>
      Effect.gen(function* () {
        execFileSync(process.execPath, ["scripts/build.mjs"], { cwd: repoRoot, stdio: "pipe" })
        const receiver = yield* otlpReceiver
        const dir = tempDir("hestia-bundle-otlp-")
        const port = yield* Effect.promise(freePort)
        const config = Path.join(dir, "hestia.yml")
        writeFileSync(config, gatewayYaml(processService("traced", port, { settings: { idle_timeout_ms: 0 } })))
        const gateway = yield* startGateway(
          config,
          {
            HESTIA_DATABASE: Path.join(dir, "hestia.db"),
            OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
            OTEL_BSP_SCHEDULE_DELAY: "100"
          },
          ["dist/main.mjs"]
        )
        const response = yield* callJson(`${gateway.url}/services/traced/hello`)
        assert.strictEqual(response.status, 200)
        // A clean stop flushes whatever the batch processor still holds.
        assert.strictEqual(yield* stopGracefully(gateway), 0)
        const byName = (name: string) => receiver.spans.filter((span) => span.name === name)
        const [coldStart] = yield* eventually(
          Effect.sync(() => byName("ServiceRegistry.coldStart")),
          (found) => found.length === 1
        )
        assert.isUndefined(coldStart!.parentSpanId || undefined, "a cold start is the root of its trace")
        const inTrace = receiver.spans.filter((span) => span.traceId === coldStart!.traceId)
        const parentOf = (span: OtlpSpan) => inTrace.find((other) => other.spanId === span.parentSpanId)?.name
        const names = (name: string) => inTrace.filter((span) => span.name === name)
        assert.deepStrictEqual(names("ServiceRegistry.machine").map(parentOf), ["ServiceRegistry.coldStart"])
        assert.deepStrictEqual(names("ServiceRegistry.attempt").map(parentOf), ["ServiceRegistry.machine"])
        assert.deepStrictEqual(names("Orchestrator.start").map(parentOf), ["ServiceRegistry.attempt"])
        assert.deepStrictEqual(names("Readiness.wait").map(parentOf), ["ServiceRegistry.attempt"])
        const attribute = (span: OtlpSpan, key: string) => span.attributes.find((a) => a.key === key)?.value
        assert.deepStrictEqual(attribute(coldStart!, "hestia.service.id"), { stringValue: "traced" })
        assert.deepStrictEqual(attribute(coldStart!, "hestia.outcome"), { stringValue: "ready" })
        // The proxied request has its own trace, linked to the cold start it waited for.
        assert.isAtLeast(byName("ServiceProxy.request").length, 1)
      }).pipe(Effect.scoped),
    60_000
  )
})
