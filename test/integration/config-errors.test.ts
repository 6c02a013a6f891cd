import { spawn } from "node:child_process"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { type AddressInfo, createServer } from "node:net"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { ListenError } from "../../src/domain/Errors.ts"
import { repoRoot, tempDir } from "../fixtures/Gateway.ts"

const dir = tempDir("hestia-config-")

/** tsx by absolute URL: `--import tsx` would be looked up from the child's working directory. */
const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href

/**
 * Runs the real entry point on a config file (`HESTIA_CONFIG`, unless `env` says otherwise); returns its exit code
 * and output. `cwd` (default the repository) is where `./hestia_config.yml` is looked for.
 */
const runGateway = (yaml: string | undefined, env: Record<string, string> = {}, cwd: string = repoRoot) =>
  Effect.promise(
    () =>
      new Promise<{ code: number | null; stderr: string; stdout: string }>((resolve) => {
        const file = Path.join(dir, `config-${Math.random().toString(36).slice(2)}.yml`)
        if (yaml !== undefined) writeFileSync(file, yaml)
        const child = spawn(process.execPath, ["--import", tsxLoader, Path.join(repoRoot, "src/main.ts")], {
          cwd,
          // A config that loads opens its database: a temp one, never ./data in the repository.
          env: {
            ...process.env,
            HESTIA_CONFIG: file,
            HESTIA_PORT: "0",
            HESTIA_DATABASE: Path.join(dir, "hestia.db"),
            ...env
          },
          stdio: ["ignore", "pipe", "pipe"]
        })
        let stderr = ""
        let stdout = ""
        child.stderr.on("data", (data) => {
          stderr += data
        })
        child.stdout.on("data", (data) => {
          stdout += data
          // A config that loads makes the gateway listen: that is success here; stop it.
          if (stdout.includes('"event":"listening"')) child.kill("SIGTERM")
        })
        child.on("exit", (code) => resolve({ code, stderr, stdout }))
      })
  )

/** The JSON log lines of one event. */
const events = (stdout: string, event: string) =>
  stdout
    .split("\n")
    .filter((line) => line.includes(`"event":"${event}"`))
    .map((line) => JSON.parse(line) as Record<string, unknown>)

describe("a broken config file stops the gateway with exit code 2 and one clear message", () => {
  const cases: ReadonlyArray<[string, string, RegExp]> = [
    ["YAML syntax", "services:\n  a: { base_url: 'http://h:1'\n", /: line \d+, column \d+: invalid YAML/],
    ["wrong type", "services:\n  a: { base_url: 'http://h:1', queue_size: lots }\n", /: services\.a\.queue_size: /],
    [
      "negative timeout",
      "services:\n  a: { base_url: 'http://h:1', idle_timeout_ms: -1 }\n",
      /: services\.a\.idle_timeout_ms: /
    ],
    ["unknown key", "services:\n  a: { base_url: 'http://h:1', colour: red }\n", /: services\.a\.colour: unknown key$/]
  ]
  for (const [name, yaml, expected] of cases) {
    it.live(name, () =>
      Effect.gen(function* () {
        const result = yield* runGateway(yaml)
        assert.strictEqual(result.code, 2)
        const lines = result.stderr.trim().split("\n")
        assert.strictEqual(lines.length, 1, result.stderr)
        assert.match(lines[0]!, /^hestia: configuration error: \/.*config-.*\.yml/)
        assert.match(lines[0]!, expected)
        assert.notInclude(result.stdout, '"event":"listening"')
      })
    )
  }

  it.live("a missing file named by HESTIA_CONFIG is an error too", () =>
    Effect.gen(function* () {
      const result = yield* runGateway(undefined)
      assert.strictEqual(result.code, 2)
      assert.match(result.stderr, /file not found/)
    })
  )

  it.live("a valid file starts the gateway", () =>
    Effect.gen(function* () {
      const result = yield* runGateway("services:\n  a: { base_url: 'http://127.0.0.1:1' }\n")
      assert.include(result.stdout, '"event":"listening"')
      assert.include(result.stdout, '"event":"config_loaded"')
    })
  )

  it.live("a directory at the config path is exit 2 naming it, not the embedded default", () =>
    Effect.gen(function* () {
      const folder = Path.join(dir, `folder-${Math.random().toString(36).slice(2)}`)
      mkdirSync(folder)
      const result = yield* runGateway(undefined, { HESTIA_CONFIG: folder })
      assert.strictEqual(result.code, 2)
      assert.strictEqual(
        result.stderr,
        `hestia: configuration error: ${folder}: cannot read: it is a directory, not a file\n`
      )
      // The same at the default path, ./hestia_config.yml, which no variable names.
      const cwd = tempDir("hestia-cwd-")
      mkdirSync(Path.join(cwd, "hestia_config.yml"))
      const atDefault = yield* runGateway(undefined, { HESTIA_CONFIG: "" }, cwd)
      assert.strictEqual(atDefault.code, 2)
      assert.strictEqual(
        atDefault.stderr,
        "hestia: configuration error: ./hestia_config.yml: cannot read: it is a directory, not a file\n"
      )
      assert.notInclude(atDefault.stdout, '"event":"listening"')
    })
  )

  it.live("no file at the default path (and no variable) runs the embedded default", () =>
    Effect.gen(function* () {
      const result = yield* runGateway(undefined, { HESTIA_CONFIG: "" }, tempDir("hestia-cwd-"))
      assert.include(result.stdout, '"event":"listening"')
      assert.deepStrictEqual(
        events(result.stdout, "config_loaded").map((line) => line.source),
        ["embedded default config"]
      )
    })
  )

  it.live("an unreadable file (an I/O error) is exit 2 naming it", () =>
    Effect.gen(function* () {
      const result = yield* runGateway(undefined, { HESTIA_CONFIG: "/proc/self/mem" })
      assert.strictEqual(result.code, 2)
      assert.match(result.stderr, /^hestia: configuration error: \/proc\/self\/mem: cannot read: .*EIO.*\n$/)
    })
  )

  it.live("two local processes on one host and port are exit 2 naming both services", () =>
    Effect.gen(function* () {
      const result = yield* runGateway(
        "services:\n" +
          "  first: { base_url: 'http://127.0.0.1:9901', command: [node, a.js] }\n" +
          "  second: { base_url: 'http://localhost:9901', command: [node, b.js] }\n"
      )
      assert.strictEqual(result.code, 2)
      const lines = result.stderr.trim().split("\n")
      assert.strictEqual(lines.length, 1, result.stderr)
      assert.match(
        lines[0]!,
        /: services\.second\.base_url: http:\/\/localhost:9901 is the address of service "first" too/
      )
    })
  )

  it.live("HESTIA_CONFIG_PATH (the first Hestia's name) finds the file too", () =>
    Effect.gen(function* () {
      const file = Path.join(dir, "by-alias.yml")
      writeFileSync(file, "services:\n  a: { base_url: 'http://127.0.0.1:1' }\n")
      const result = yield* runGateway(undefined, { HESTIA_CONFIG: "", HESTIA_CONFIG_PATH: file })
      assert.include(result.stdout, '"event":"listening"')
      assert.deepStrictEqual(
        events(result.stdout, "config_loaded").map((line) => line.source),
        [file]
      )
    })
  )
})

describe("a listening socket that cannot be opened stops the gateway with exit code 1 and one clear line", () => {
  const config = "services:\n  a: { base_url: 'http://127.0.0.1:1' }\n"

  it.live("a port in use", () =>
    Effect.gen(function* () {
      const holder = createServer()
      const port = yield* Effect.promise(
        () =>
          new Promise<number>((resolve) =>
            holder.listen(0, "127.0.0.1", () => resolve((holder.address() as AddressInfo).port))
          )
      )
      try {
        const result = yield* runGateway(config, { HESTIA_HOST: "127.0.0.1", HESTIA_PORT: String(port) })
        assert.strictEqual(result.code, 1)
        assert.strictEqual(result.stderr, `hestia: cannot listen on 127.0.0.1:${port}: address in use\n`)
        // No defect: nothing on stdout names a stack.
        assert.notInclude(result.stdout, "EADDRINUSE")
        assert.notInclude(result.stdout, '"event":"listening"')
      } finally {
        holder.close()
      }
    })
  )

  it.live("an address this machine does not have", () =>
    Effect.gen(function* () {
      // TEST-NET-1 (RFC 5737): assigned to no machine.
      const result = yield* runGateway(config, { HESTIA_HOST: "192.0.2.123", HESTIA_PORT: "18549" })
      assert.strictEqual(result.code, 1)
      assert.strictEqual(result.stderr, "hestia: cannot listen on 192.0.2.123:18549: address not available\n")
    })
  )

  it("names the other reasons in words (a privileged port), and anything else as the system said it", () => {
    assert.strictEqual(
      new ListenError({
        host: "0.0.0.0",
        port: 80,
        code: "EACCES",
        detail: "listen EACCES: permission denied 0.0.0.0:80"
      }).message,
      "cannot listen on 0.0.0.0:80: permission denied"
    )
    assert.strictEqual(
      new ListenError({ host: "h", port: 1, code: "EWHATEVER", detail: "listen EWHATEVER h:1" }).message,
      "cannot listen on h:1: listen EWHATEVER h:1"
    )
  })
})

describe("configs of the first (Python) Hestia through the real entry point", () => {
  const python = readFileSync(Path.join(repoRoot, "test/fixtures/reference/python-hestia-config.yml"), "utf8")
  // The suite must not depend on the caller's Semaphore settings.
  const clean = { SEMAPHORE_API_KEY: "", SEMAPHORE_USERNAME: "", SEMAPHORE_PASSWORD: "" }

  it.live("its example config starts the gateway with exactly one warning, for the missing Semaphore token", () =>
    Effect.gen(function* () {
      const result = yield* runGateway(python, clean)
      assert.include(result.stdout, '"event":"listening"')
      assert.strictEqual(events(result.stdout, "config_loaded").length, 1)
      const warnings = events(result.stdout, "config_warning")
      assert.deepStrictEqual(
        warnings.map((line) => [line.key, line.level]),
        [["semaphore_api_key", "warn"]]
      )
      assert.include(String(warnings[0]!.msg), "cloud-ollama, gpu-stable-diffusion, dev-workspace, global-api")
      assert.deepStrictEqual(events(result.stdout, "config_deprecated"), [])
    })
  )

  it.live(
    "with the strategies keys of its comments uncommented: its strategy must exist; its instances (labels and all) load",
    () =>
      Effect.gen(function* () {
        const uncommented = python
          .replace('# strategy: "model_router"', 'strategy: "model_router"')
          .replace("# instances:", "instances:")
          .replace(
            '#   - { url: "http://ollama-a:11434", region: "us-east" }',
            '  - { url: "http://ollama-a:11434", region: "us-east" }'
          )
          .replace(
            '#   - { url: "http://ollama-b:11434", region: "us-west" }',
            '  - { url: "http://ollama-b:11434", region: "us-west" }'
          )
        assert.notStrictEqual(uncommented, python)
        const env = { ...clean, SEMAPHORE_API_KEY: "token" }
        // The repository's strategies/ has no model_router: refused, naming the key and what is there.
        const refused = yield* runGateway(uncommented, env)
        assert.strictEqual(refused.code, 2)
        assert.match(
          refused.stderr,
          /^hestia: configuration error: .*: services\.ollama\.strategy: no strategy named "model_router" in strategies_dir \.\/strategies \(loaded: header-router, lru-placement, round-robin\)\n$/
        )
        // With a strategy of that name, it starts, and nothing is deprecated any more (routing: stays commented).
        const strategies = Path.join(dir, "python-strategies")
        mkdirSync(strategies, { recursive: true })
        writeFileSync(
          Path.join(strategies, "model_router.mjs"),
          "export default { name: 'model_router', kind: 'routing', route: () => undefined }\n"
        )
        const result = yield* runGateway(uncommented, { ...env, HESTIA_STRATEGIES_DIR: strategies })
        assert.include(result.stdout, '"event":"listening"')
        assert.deepStrictEqual(events(result.stdout, "config_deprecated"), [])
        assert.deepStrictEqual(events(result.stdout, "config_warning"), [])
        assert.strictEqual(events(result.stdout, "strategy_loaded")[0]!.strategy, "model_router")
        // Its load_balancer is the shipped round-robin: a balance strategy over those instances.
        const balanced = yield* runGateway(
          uncommented.replace('strategy: "model_router"', 'strategy: "round-robin"'),
          env
        )
        assert.include(balanced.stdout, '"event":"listening"')
      })
  )
})
