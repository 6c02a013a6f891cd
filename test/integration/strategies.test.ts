import { execFileSync, spawnSync } from "node:child_process"
import { rmSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { beforeAll } from "vitest"
import { call, callJson, eventually, gatewayYaml, repoRoot, tempDir } from "../fixtures/Gateway.ts"
import { startGateway } from "../fixtures/GatewayProcess.ts"
import { remove, write } from "../fixtures/Strategies.ts"

// The strategy plugins as users run them: the bundle (dist/main.mjs, built here into its own folder so that no other
// test's build races it), a real folder edited while the gateway runs, `GET /v1/strategies` over real HTTP.

const outdir = ".test-dist/strategies"
const entry = [Path.join(outdir, "main.mjs")]
const KEY = "hk_strategies_test_key_0123456789"
const auth = { authorization: `Bearer ${KEY}` }

beforeAll(() => {
  execFileSync(process.execPath, ["scripts/build.mjs", outdir], { cwd: repoRoot, stdio: "pipe" })
  return () => rmSync(Path.join(repoRoot, outdir), { recursive: true, force: true })
}, 60_000)

const configFile = (dir: string, services: string) => {
  const file = Path.join(dir, "hestia.yml")
  writeFileSync(file, `${gatewayYaml(services)}auth: { api_keys: [${KEY}] }\ndatabase: ":memory:"\n`)
  return file
}

interface Listed {
  readonly strategies: ReadonlyArray<{
    name: string | null
    kind: string | null
    file: string | null
    usedBy: ReadonlyArray<string>
    loadedAt: string | null
    running: boolean
    error?: string
  }>
}

describe("strategy plugins in the bundle npm start runs", () => {
  it.live(
    "a file added, changed, broken and removed while the gateway runs: GET /v1/strategies shows each step",
    () =>
      Effect.gen(function* () {
        const dir = tempDir("hestia-strategies-it-")
        const strategies = Path.join(dir, "strategies")
        // TypeScript, with a type import from the plugin API: esbuild (a dependency now) bundles it at run time.
        write(
          strategies,
          "router.ts",
          `import type { RoutingStrategy } from "../../src/strategies/StrategyApi.ts"
const router: RoutingStrategy = { name: "by-header", kind: "routing", route: (r) => r.headers["x-hestia-service"] }
export default router
`
        )
        const config = configFile(dir, `  a: { base_url: "http://127.0.0.1:1", strategy: by-header }\n`)
        const gateway = yield* startGateway(config, { HESTIA_STRATEGIES_DIR: strategies }, entry)
        const url = `${gateway.url}/v1/strategies`
        const list = Effect.map(callJson(url, { headers: auth }), (response) => response.json as Listed)
        const find = (view: Listed, file: string) => view.strategies.find((s) => s.file?.endsWith(`/${file}`))
        const until = (check: (view: Listed) => boolean) => eventually(list, check, 300)

        // Behind auth like every /v1 route.
        assert.strictEqual((yield* call(url)).status, 401)
        const start = yield* callJson(url, { headers: auth })
        assert.strictEqual(start.status, 200)
        assert.strictEqual(start.json.dir, strategies)
        assert.strictEqual(start.json.timeoutMs, 50)
        assert.deepStrictEqual(
          (start.json as Listed).strategies.map((s) => [s.name, s.kind, s.file, s.usedBy, s.running, s.error]),
          [["by-header", "routing", Path.join(strategies, "router.ts"), ["a"], true, undefined]]
        )

        // Added.
        write(
          strategies,
          "spread.ts",
          `export default { name: "spread", kind: "placement", place: (_s: unknown, machines: Array<{ id: string }>) => machines.map((m) => m.id) }\n`
        )
        const added = find(yield* until((view) => find(view, "spread.ts") !== undefined), "spread.ts")!
        assert.deepStrictEqual(
          [added.name, added.kind, added.usedBy, added.running, added.error],
          ["spread", "placement", [], false, undefined]
        )

        // Changed: a new version, a new load time.
        write(
          strategies,
          "spread.ts",
          `export default { name: "spread", kind: "placement", place: (_s: unknown, machines: Array<{ id: string }>) => machines.map((m) => m.id).reverse() }\n`
        )
        const changed = find(yield* until((view) => find(view, "spread.ts")?.loadedAt !== added.loadedAt), "spread.ts")!
        assert.isUndefined(changed.error)
        assert.isAbove(Date.parse(changed.loadedAt!), Date.parse(added.loadedAt!))

        // Broken: the error is shown, the version loaded before stays, and the gateway logged it.
        write(strategies, "spread.ts", `export default { name: "spread", kind: "placement", place( }\n`)
        const broken = find(yield* until((view) => find(view, "spread.ts")?.error !== undefined), "spread.ts")!
        assert.match(broken.error!, /does not compile: line 1, column \d+/)
        assert.strictEqual(broken.name, "spread")
        assert.strictEqual(broken.loadedAt, changed.loadedAt)
        const failedLine = gateway.lines.find((line) => line.includes('"event":"strategy_load_failed"'))
        assert.isDefined(failedLine)
        assert.strictEqual(JSON.parse(failedLine!).kept, "spread")

        // Removed.
        remove(strategies, "spread.ts")
        const removed = yield* until((view) => find(view, "spread.ts") === undefined)
        assert.deepStrictEqual(
          removed.strategies.map((s) => s.name),
          ["by-header"]
        )
        assert.isDefined(gateway.lines.find((line) => line.includes('"event":"strategy_removed"')))
      }).pipe(Effect.scoped),
    90_000
  )

  it.live("at start, a strategy file that fails to load stops the bundle with exit code 2 and one line naming it", () =>
    Effect.sync(() => {
      const dir = tempDir("hestia-strategies-it-")
      const strategies = Path.join(dir, "strategies")
      write(strategies, "broken.ts", "export default { name: 'x', kind: 'routing', route() { return ( } }\n")
      const result = spawnSync(process.execPath, entry, {
        cwd: repoRoot,
        env: {
          ...process.env,
          HESTIA_CONFIG: configFile(dir, ""),
          HESTIA_STRATEGIES_DIR: strategies,
          HESTIA_PORT: "0"
        },
        encoding: "utf8",
        timeout: 30_000
      })
      assert.strictEqual(result.status, 2)
      assert.match(
        result.stderr,
        new RegExp(`^hestia: configuration error: ${Path.join(strategies, "broken.ts")}: does not compile: [^\\n]+\\n$`)
      )
    })
  )
})
