import { copyFileSync, mkdirSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { ensureBundle } from "../fixtures/Bundle.ts"
import { callJson, eventually, freePort, repoRoot, tempDir, upstreamScript } from "../fixtures/Gateway.ts"
import { startGateway } from "../fixtures/GatewayProcess.ts"

describe("a placement strategy orders the machines of each start (the bundle, strategies/lru-placement.ts)", () => {
  it.live("least recently used first: consecutive starts go to one machine, then the other", () =>
    Effect.gen(function* () {
      const [entry] = ensureBundle()
      const dir = tempDir("hestia-placement-")
      const strategies = Path.join(dir, "strategies")
      mkdirSync(strategies)
      copyFileSync(Path.join(repoRoot, "strategies/lru-placement.ts"), Path.join(strategies, "lru-placement.ts"))
      const port = yield* Effect.promise(freePort)
      const file = Path.join(dir, "hestia.yml")
      // Two machines on this host (127.0.0.1 and localhost): the same port, one at a time.
      writeFileSync(
        file,
        `server: { host: 127.0.0.1, port: 0 }
strategies_dir: ${JSON.stringify(strategies)}
strategy_timeout_ms: 2000
machines:
  one: { host: 127.0.0.1 }
  two: { host: localhost }
services:
  svc:
    base_url: "http://{host}:${port}"
    health_url: "http://{host}:${port}/health"
    command: ${JSON.stringify([process.execPath, upstreamScript, "--port", String(port)])}
    machines: [one, two]
    strategy: lru-placement
    retry_count: 0
    idle_timeout_ms: 0
`
      )
      // The strategy is bundled from TypeScript by esbuild from the repository's node_modules.
      const gateway = yield* startGateway(file, { HESTIA_DATABASE: Path.join(dir, "hestia.db") }, [entry!])
      const machines: Array<string> = []
      for (let i = 0; i < 3; i++) {
        const started = yield* callJson(`${gateway.url}/v1/services/svc/start?wait=true`, { method: "POST" })
        assert.strictEqual(started.status, 200)
        machines.push(started.json.machineId)
        yield* callJson(`${gateway.url}/v1/services/svc/stop`, { method: "POST" })
        yield* eventually(
          Effect.map(callJson(`${gateway.url}/v1/services/svc/status`), (r) => r.json.state),
          (state) => state === "cold"
        )
      }
      assert.deepStrictEqual(machines, ["one", "two", "one"])
      const listed = yield* callJson(`${gateway.url}/v1/strategies`)
      const lru = listed.json.strategies.find((s: { name: string }) => s.name === "lru-placement")
      assert.deepStrictEqual(lru.usedBy, ["svc"])
    }).pipe(Effect.scoped)
  )
})
