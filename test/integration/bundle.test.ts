import { execFileSync } from "node:child_process"
import { writeFileSync } from "node:fs"
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
})
