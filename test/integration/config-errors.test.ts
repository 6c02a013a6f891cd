import { spawn } from "node:child_process"
import { writeFileSync } from "node:fs"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { repoRoot, tempDir } from "../fixtures/Gateway.ts"

const dir = tempDir("hestia-config-")

/** Runs the real entry point on a config file; returns its exit code and output. */
const runGateway = (yaml: string | undefined, env: Record<string, string> = {}) =>
  Effect.promise(
    () =>
      new Promise<{ code: number | null; stderr: string; stdout: string }>((resolve) => {
        const file = Path.join(dir, `config-${Math.random().toString(36).slice(2)}.yml`)
        if (yaml !== undefined) writeFileSync(file, yaml)
        const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
          cwd: repoRoot,
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
})
