import { spawn } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { ensureBundle } from "../fixtures/Bundle.ts"
import {
  call,
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
        const entry = ensureBundle()
        const dir = tempDir("hestia-bundle-")
        const port = yield* Effect.promise(freePort)
        const config = Path.join(dir, "hestia.yml")
        writeFileSync(config, gatewayYaml(processService("echo", port, { settings: { idle_timeout_ms: 0 } })))
        const gateway = yield* startGateway(config, { HESTIA_DATABASE: Path.join(dir, "hestia.db") }, entry)

        const health = yield* callJson(`${gateway.url}/healthz`)
        assert.strictEqual(health.json.status, "ok")
        // The dashboard's files are part of dist/ (copied next to the chunks), served as they are in the sources.
        const page = yield* call(`${gateway.url}/`)
        assert.strictEqual(page.status, 200)
        assert.include(page.text, '<script type="module" src="/dashboard/dashboard.js">')
        assert.include(page.text, '"serviceId":"echo"')
        for (const [name, type] of [
          ["dashboard.js", "text/javascript"],
          ["dashboard.css", "text/css"]
        ] as const) {
          const asset = yield* call(`${gateway.url}/dashboard/${name}`)
          assert.strictEqual(asset.status, 200, name)
          assert.match(String(asset.headers["content-type"]), new RegExp(`^${type}`))
          assert.strictEqual(asset.text, readFileSync(Path.join(repoRoot, "src/http/dashboard", name), "utf8"))
        }
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
        const [entry] = ensureBundle()
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
          [entry!]
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

  it.live(
    "`node dist/main.mjs | head -1`: the reader goes away, the gateway keeps running and answering",
    () =>
      Effect.gen(function* () {
        const [entry] = ensureBundle()
        const dir = tempDir("hestia-epipe-")
        const [port, upstreamPort] = yield* Effect.promise(() => Promise.all([freePort(), freePort()]))
        const config = Path.join(dir, "hestia.yml")
        writeFileSync(config, gatewayYaml(processService("echo", upstreamPort, { settings: { idle_timeout_ms: 0 } })))
        // The shell's pipeline, as a user types it; its own process group, so the test can end all of it.
        const shell = yield* Effect.acquireRelease(
          Effect.sync(() =>
            spawn("/bin/sh", ["-c", `"${process.execPath}" ${entry} | head -1`], {
              cwd: repoRoot,
              env: {
                ...process.env,
                HESTIA_CONFIG: config,
                HESTIA_PORT: String(port),
                HESTIA_DATABASE: Path.join(dir, "hestia.db")
              },
              detached: true,
              stdio: ["ignore", "pipe", "pipe"]
            })
          ),
          (child) =>
            Effect.promise(() => {
              if (child.exitCode !== null) return Promise.resolve()
              const exited = new Promise((resolve) => child.once("exit", resolve))
              process.kill(-child.pid!, "SIGTERM")
              return exited
            })
        )
        let out = ""
        let err = ""
        shell.stdout!.on("data", (chunk) => {
          out += chunk
        })
        shell.stderr!.on("data", (chunk) => {
          err += chunk
        })
        const base = `http://127.0.0.1:${port}`
        const health = yield* eventually(
          Effect.promise(() =>
            callJson(`${base}/healthz`)
              .pipe(Effect.runPromise)
              .catch(() => ({ status: 0 }))
          ),
          (response) => response.status === 200
        )
        assert.strictEqual(health.status, 200)
        // head printed one JSON line and left; a cold start then logs a dozen lines into the closed pipe.
        assert.strictEqual(JSON.parse(out.trim()).event, "config_loaded")
        const response = yield* callJson(`${base}/services/echo/after/head`)
        assert.strictEqual(response.status, 200)
        assert.strictEqual(response.json.url, "/after/head")
        yield* eventually(
          Effect.sync(() => err),
          (text) => text.includes("hestia: stdout closed (EPIPE)")
        )
        const again = yield* callJson(`${base}/services/echo/still`)
        assert.strictEqual(again.status, 200)
        assert.strictEqual((yield* callJson(`${base}/healthz`)).status, 200)
        assert.strictEqual(shell.exitCode, null, `the gateway is still running; stderr:\n${err}`)
        assert.notInclude(err, "Unhandled")
      }).pipe(Effect.scoped),
    60_000
  )
})
