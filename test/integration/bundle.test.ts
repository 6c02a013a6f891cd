import { spawn } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
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
