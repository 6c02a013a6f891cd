import { execFile, spawn } from "node:child_process"
import { statSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import * as readline from "node:readline"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { newKey } from "../../src/auth/Auth.ts"
import { openApiDocument } from "../../src/http/DocsRoutes.ts"
import { ensureBundle } from "../fixtures/Bundle.ts"
import { call, freePort, gatewayYaml, processService, repoRoot, tempDir } from "../fixtures/Gateway.ts"
import { startGateway, stopGracefully } from "../fixtures/GatewayProcess.ts"

// The real `hestia` binary (dist/cli/hestia.mjs, as the package's bin and the Docker image run it) against the real
// gateway bundle, in both formats, with every exit code: 0 ok, 1 gateway error, 2 usage/config error, 3 unreachable.

const HESTIA = Path.join(repoRoot, "dist/cli/hestia.mjs")
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[`)

interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** One run of the CLI, its stdout and stderr pipes (not terminals), without the test's own HESTIA_* variables. */
const hestia = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.promise(
    () =>
      new Promise<Run>((resolve) => {
        const clean = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("HESTIA_")))
        execFile(
          HESTIA,
          args,
          { cwd: repoRoot, env: { ...clean, ...env }, timeout: 60_000 },
          (error, stdout, stderr) => {
            const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1
            assert.notMatch(stdout, ANSI, `ANSI codes in stdout of hestia ${args.join(" ")}`)
            assert.notMatch(stderr, ANSI, `ANSI codes in stderr of hestia ${args.join(" ")}`)
            resolve({ code, stdout, stderr })
          }
        )
      })
  )

/** A following command (logs -f, events): its stdout lines as they come, ended by the scope. */
const follow = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(HESTIA, args, { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] })
      const lines: Array<string> = []
      const errors: Array<string> = []
      readline.createInterface({ input: child.stdout! }).on("line", (line) => lines.push(line))
      readline.createInterface({ input: child.stderr! }).on("line", (line) => errors.push(line))
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      return { child, lines, errors, exited }
    }),
    ({ child }) =>
      Effect.promise(
        () =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null) return resolve()
            child.once("exit", () => resolve())
            child.kill("SIGINT")
          })
      )
  )

const until = (lines: ReadonlyArray<string>, check: (line: string) => boolean, what: string) =>
  Effect.promise(async () => {
    for (let i = 0; i < 400; i++) {
      if (lines.some(check)) return
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error(`never saw ${what}; got:\n${lines.join("\n")}`)
  })

const oneLine = (text: string) => {
  const lines = text.trim().split("\n")
  assert.lengthOf(lines, 1, text)
  return lines[0]!
}

describe("the hestia CLI (dist/cli/hestia.mjs) against the gateway bundle", () => {
  it.live(
    "status, start, stop, logs, events, activity: text tables and json documents; exit 0, 1, 2 and 3",
    () =>
      Effect.gen(function* () {
        const entry = ensureBundle()
        assert.isTrue((statSync(HESTIA).mode & 0o111) !== 0, "the bin is executable")
        const dir = tempDir("hestia-cli-")
        const [ok, dies] = [yield* Effect.promise(freePort), yield* Effect.promise(freePort)]
        const config = Path.join(dir, "hestia.yml")
        writeFileSync(
          config,
          gatewayYaml(
            processService("web", ok, { settings: { idle_timeout_ms: 0 } }) +
              processService("broken", dies, { extraArgs: ["--exit-code", "3"] })
          )
        )
        const gateway = yield* startGateway(config, { HESTIA_DATABASE: Path.join(dir, "hestia.db") }, entry)
        const url = ["--url", gateway.url]
        // The bundle serves the document the declaration gives (names survive minification), and its page.
        const served = yield* call(`${gateway.url}/openapi.json`)
        assert.deepStrictEqual(JSON.parse(served.text), JSON.parse(JSON.stringify(openApiDocument())))
        assert.strictEqual((yield* call(`${gateway.url}/docs`)).status, 200)

        // status: a table a person reads, one document for scripts.
        const table = yield* hestia(["status", ...url])
        assert.strictEqual(table.code, 0, table.stderr)
        const [header, ...rows] = table.stdout.trimEnd().split("\n")
        assert.match(header!, /^SERVICE\s+STATE\s+MACHINE\s+QUEUE\s+IN FLIGHT\s+LAST ACTIVITY\s+LAST ERROR$/)
        assert.deepStrictEqual(
          rows.map((row) => row.split(/\s+/).slice(0, 2)),
          [
            ["web", "cold"],
            ["broken", "cold"]
          ]
        )
        // Columns are aligned: every row's STATE starts where the header's does.
        for (const row of rows) assert.strictEqual(row.indexOf(row.split(/\s+/)[1]!), header!.indexOf("STATE"))
        const json = yield* hestia(["status", "--format", "json", ...url])
        assert.strictEqual(json.code, 0)
        assert.deepStrictEqual(
          JSON.parse(json.stdout).services.map((s: { serviceId: string }) => s.serviceId),
          ["web", "broken"]
        )

        // HESTIA_URL instead of --url.
        const fromEnv = yield* hestia(["start", "web", "--wait"], { HESTIA_URL: gateway.url })
        assert.strictEqual(fromEnv.code, 0, fromEnv.stderr)
        assert.strictEqual(fromEnv.stdout.trim(), "web: hot (started)")
        const again = yield* hestia(["start", "web", "--format", "json", ...url])
        assert.strictEqual(again.code, 0)
        assert.include(JSON.parse(again.stdout), { serviceId: "web", state: "hot", started: false })

        const one = yield* hestia(["status", "web", ...url])
        assert.strictEqual(one.code, 0)
        assert.match(one.stdout, /^web\n {2}state\s+hot on local \(ready\)\n/)
        const oneJson = JSON.parse((yield* hestia(["status", "web", "--format", "json", ...url])).stdout)
        assert.include(oneJson, { serviceId: "web", state: "hot", machineId: "local" })

        // logs: the upstream's own line; logs -f: then a line printed while following.
        const logs = yield* hestia(["logs", "web", ...url])
        assert.strictEqual(logs.code, 0)
        assert.match(logs.stdout, /^\d\d:\d\d:\d\d out upstream listening on 127\.0\.0\.1:\d+ pid \d+$/m)
        const logsJson = JSON.parse((yield* hestia(["logs", "web", "--tail", "1", "--format", "json", ...url])).stdout)
        assert.strictEqual(logsJson.serviceId, "web")
        assert.lengthOf(logsJson.lines, 1)
        yield* Effect.scoped(
          Effect.gen(function* () {
            const followed = yield* follow(["logs", "web", "--follow", "--format", "json", ...url])
            yield* until(followed.lines, (line) => line.includes("upstream listening"), "the backlog")
            yield* call(`${gateway.url}/services/web/print?text=followed-line&stream=stderr`)
            yield* until(followed.lines, (line) => line.includes("followed-line"), "the new line")
            const line = JSON.parse(followed.lines.find((l) => l.includes("followed-line"))!)
            assert.include(line, { stream: "stderr", line: "followed-line" })
          })
        )

        // events: the snapshot, then a stop's transitions as they happen (text and one JSON object per line).
        yield* Effect.scoped(
          Effect.gen(function* () {
            const text = yield* follow(["events", ...url])
            const ndjson = yield* follow(["events", "--format", "json", ...url])
            yield* until(text.lines, (line) => /web hot, broken cold/.test(line), "the text snapshot")
            yield* until(ndjson.lines, (line) => line.includes('"event":"snapshot"'), "the json snapshot")
            const stopped = yield* hestia(["stop", "web", ...url])
            assert.strictEqual(stopped.code, 0)
            assert.match(stopped.stdout, /^web: (stopping|cold) \(stop initiated\)$/m)
            yield* until(text.lines, (line) => /^\d\d:\d\d:\d\d web {2}hot → stopping$/.test(line), "hot → stopping")
            yield* until(ndjson.lines, (line) => line.includes('"to":"cold"'), "stopping → cold in json")
            for (const line of ndjson.lines) assert.isString(JSON.parse(line).event)
          })
        )

        // A start that fails: exit 1, one line on stderr and each attempt below it; json: the gateway's document.
        const failed = yield* hestia(["start", "broken", "--wait", ...url])
        assert.strictEqual(failed.code, 1)
        assert.strictEqual(failed.stdout, "")
        const [message, ...attempts] = failed.stderr.trimEnd().split("\n")
        assert.strictEqual(message, 'hestia: service "broken" failed to start after 1 attempt(s)')
        assert.match(attempts[0]!, /^ {2}attempt 1 on local: ProcessExited: process \d+ exited during start/)
        const failedJson = yield* hestia(["start", "broken", "--wait", "--format", "json", ...url])
        assert.strictEqual(failedJson.code, 1)
        assert.include(JSON.parse(failedJson.stdout), { error: "StartupFailed", serviceId: "broken" })

        const unknown = yield* hestia(["status", "nope", ...url])
        assert.strictEqual(unknown.code, 1)
        assert.strictEqual(oneLine(unknown.stderr), 'hestia: unknown service "nope"')

        // activity: newest first, filtered and bounded.
        const activity = yield* hestia(["activity", "--service", "broken", "--limit", "2", ...url])
        assert.strictEqual(activity.code, 0)
        const [activityHeader, ...activityRows] = activity.stdout.trimEnd().split("\n")
        assert.match(activityHeader!, /^TIME\s+SERVICE\s+MACHINE\s+EVENT\s+DETAIL$/)
        assert.lengthOf(activityRows, 2)
        for (const row of activityRows) assert.match(row, /^\S+ \S+\s+broken\s/)
        const page = JSON.parse((yield* hestia(["activity", "--limit", "3", "--format", "json", ...url])).stdout)
        assert.lengthOf(page.activity, 3)
        assert.isNumber(page.nextBefore)

        // Usage errors: exit 2.
        for (const args of [["frobnicate"], ["status", "--bogus", ...url], ["activity", "--limit", "many", ...url]]) {
          const usage = yield* hestia(args)
          assert.strictEqual(usage.code, 2, `hestia ${args.join(" ")}: ${usage.stdout}${usage.stderr}`)
        }
        const help = yield* hestia(["--help"])
        assert.strictEqual(help.code, 0)
        assert.include(help.stdout, "status")

        // No gateway there: exit 3 and one clear line (json: a document saying so).
        const nobody = `http://127.0.0.1:${yield* Effect.promise(freePort)}`
        const down = yield* hestia(["status", "--url", nobody])
        assert.strictEqual(down.code, 3)
        assert.strictEqual(
          oneLine(down.stderr),
          `hestia: no gateway answers at ${nobody} (ECONNREFUSED): is it running? (--url or HESTIA_URL)`
        )
        const downJson = yield* hestia(["events", "--format", "json", "--url", nobody])
        assert.strictEqual(downJson.code, 3)
        assert.include(JSON.parse(downJson.stdout), { error: "GatewayUnreachable", url: nobody })

        // A gateway that stops under a follower: exit 3, saying so.
        yield* Effect.scoped(
          Effect.gen(function* () {
            const watching = yield* follow(["events", ...url])
            yield* until(watching.lines, (line) => line.includes("web cold"), "the snapshot")
            yield* stopGracefully(gateway)
            assert.strictEqual(yield* Effect.promise(() => watching.exited), 3)
            assert.deepStrictEqual(watching.errors, [`hestia: the gateway at ${gateway.url} closed the stream`])
          })
        )
      }).pipe(Effect.scoped),
    120_000
  )

  it.live("with auth on: refused without a key (exit 1), answered with --api-key or HESTIA_API_KEY", () =>
    Effect.gen(function* () {
      const entry = ensureBundle()
      const dir = tempDir("hestia-cli-auth-")
      const key = newKey()
      const config = Path.join(dir, "hestia.yml")
      writeFileSync(
        config,
        `${gatewayYaml(processService("web", yield* Effect.promise(freePort)))}auth:\n  api_keys: [${JSON.stringify(key)}]\n`
      )
      const gateway = yield* startGateway(config, { HESTIA_DATABASE: Path.join(dir, "hestia.db") }, entry)
      const denied = yield* hestia(["status", "--url", gateway.url])
      assert.strictEqual(denied.code, 1)
      assert.strictEqual(oneLine(denied.stderr), "hestia: missing API key")
      const deniedJson = yield* hestia(["status", "--format", "json", "--url", gateway.url])
      assert.deepStrictEqual(JSON.parse(deniedJson.stdout), { error: "Unauthorized", message: "missing API key" })
      assert.strictEqual((yield* hestia(["status", "--url", gateway.url, "--api-key", key])).code, 0)
      const fromEnv = yield* hestia(["status", "web", "--format", "json"], {
        HESTIA_URL: gateway.url,
        HESTIA_API_KEY: key
      })
      assert.strictEqual(fromEnv.code, 0, fromEnv.stderr)
      assert.strictEqual(JSON.parse(fromEnv.stdout).serviceId, "web")
    }).pipe(Effect.scoped)
  )

  it.live("unload GROUP stops its members; config reload applies an edited file, refuses a broken one (exit 1)", () =>
    Effect.gen(function* () {
      const entry = ensureBundle()
      const dir = tempDir("hestia-cli-reload-")
      const [a, b, c] = [
        yield* Effect.promise(freePort),
        yield* Effect.promise(freePort),
        yield* Effect.promise(freePort)
      ]
      const config = Path.join(dir, "hestia.yml")
      const members =
        processService("a", a, { settings: { idle_timeout_ms: 0 } }) +
        processService("b", b, { settings: { idle_timeout_ms: 0 } })
      const groups = "groups:\n  pair: { members: [a, b] }\n"
      writeFileSync(config, gatewayYaml(members) + groups)
      const gateway = yield* startGateway(config, { HESTIA_DATABASE: Path.join(dir, "hestia.db") }, entry)
      const url = ["--url", gateway.url]
      assert.strictEqual((yield* call(`${gateway.url}/services/a/health`)).status, 200)
      assert.strictEqual((yield* call(`${gateway.url}/services/b/health`)).status, 200)

      const unloaded = yield* hestia(["unload", "pair", ...url])
      assert.strictEqual(unloaded.code, 0, unloaded.stderr)
      assert.deepStrictEqual(
        unloaded.stdout
          .trimEnd()
          .split("\n")
          .map((line) => line.split(":")[0]),
        ["a", "b"]
      )
      for (const id of ["a", "b"]) {
        const status = yield* hestia(["status", id, "--format", "json", ...url])
        assert.oneOf(JSON.parse(status.stdout).state, ["stopping", "cold"])
      }
      const unknownGroup = yield* hestia(["unload", "nope", ...url])
      assert.strictEqual(unknownGroup.code, 1)
      assert.match(oneLine(unknownGroup.stderr), /^hestia: .*"nope"/)

      // Edited: a service added; the gateway's answer says so.
      writeFileSync(config, gatewayYaml(members + processService("c", c)) + groups)
      // The gateway watches the file too: whichever reads the edit first applies it, the other finds nothing new.
      const reloaded = yield* hestia(["config", "reload", ...url])
      assert.strictEqual(reloaded.code, 0, reloaded.stderr)
      assert.match(oneLine(reloaded.stdout), /^reloaded .*hestia\.yml: (added c|no service changed)$/)
      const asJson = yield* hestia(["config", "reload", "--format", "json", ...url])
      assert.strictEqual(asJson.code, 0, asJson.stderr)
      assert.deepStrictEqual(JSON.parse(asJson.stdout).reloaded, {
        source: config,
        trigger: "api",
        added: [],
        removed: [],
        changed: [],
        restartNeeded: []
      })
      const reloads = gateway.lines.flatMap((line) =>
        line.includes('"event":"config_reloaded"') ? [JSON.parse(line)] : []
      )
      assert.deepStrictEqual(reloads.filter((entry) => entry.added.includes("c")).length, 1, "c added once")
      assert.strictEqual(
        /added c$/.test(reloaded.stdout.trim()),
        reloads.find((r) => r.added.includes("c"))?.trigger === "api"
      )
      // Broken: refused with the start's own problem, and the running configuration stays.
      writeFileSync(config, `${gatewayYaml(members)}services:\n  d: { base_url: 3 }\n`)
      const refused = yield* hestia(["config", "reload", ...url])
      assert.strictEqual(refused.code, 1)
      assert.match(oneLine(refused.stderr), /^hestia: configuration not reloaded: /)
      assert.strictEqual((yield* call(`${gateway.url}/services/c/health`)).status, 200)
      assert.strictEqual(yield* stopGracefully(gateway), 0)
    }).pipe(Effect.scoped)
  )

  it.live("config check: what a file defines (exit 0); a broken file: the start's own line, exit 2", () =>
    Effect.gen(function* () {
      const entry = ensureBundle()
      const dir = tempDir("hestia-cli-config-")
      const [web, api] = [yield* Effect.promise(freePort), yield* Effect.promise(freePort)]
      const good = Path.join(dir, "good.yml")
      writeFileSync(
        good,
        `${gatewayYaml(processService("web", web) + processService("api", api))}groups:\n  pair: { exclusive: true, members: [web, api] }\n`
      )
      const checked = yield* hestia(["config", "check", good])
      assert.strictEqual(checked.code, 0, checked.stderr)
      assert.match(checked.stdout, new RegExp(`^${good.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: ok\n`))
      assert.match(
        checked.stdout,
        new RegExp(`^web\\s+process\\s+http://127\\.0\\.0\\.1:${web}\\s+local\\s+300 s$`, "m")
      )
      assert.match(checked.stdout, /^groups\s+pair \(exclusive\): web, api$/m)
      const json = JSON.parse((yield* hestia(["config", "check", good, "--format", "json"])).stdout)
      assert.include(json, { ok: true, source: good })
      assert.deepStrictEqual(
        json.services.map((s: { id: string; kind: string }) => [s.id, s.kind]),
        [
          ["web", "process"],
          ["api", "process"]
        ]
      )
      // The Python Hestia's file still checks.
      const python = yield* hestia(["config", "check", "test/fixtures/reference/python-hestia-config.yml"])
      assert.strictEqual(python.code, 0, python.stderr)

      const bad = Path.join(dir, "bad.yml")
      writeFileSync(bad, `services:\n  web: { base_url: "http://127.0.0.1:${api}", idle_timout_ms: 5 }\n`)
      const refused = yield* hestia(["config", "check", bad])
      assert.strictEqual(refused.code, 2)
      const line = oneLine(refused.stderr)
      assert.strictEqual(line, `hestia: configuration error: ${bad}: services.web.idle_timout_ms: unknown key`)
      // The very line a start of the gateway on that file prints, with the same exit code.
      const started = yield* Effect.promise(
        () =>
          new Promise<{ code: number | null; stderr: string }>((resolve) => {
            const child = spawn(process.execPath, entry, {
              cwd: repoRoot,
              env: { ...process.env, HESTIA_CONFIG: bad },
              stdio: ["ignore", "ignore", "pipe"]
            })
            let stderr = ""
            child.stderr!.on("data", (chunk) => {
              stderr += chunk
            })
            child.once("exit", (code) => resolve({ code, stderr }))
          })
      )
      assert.strictEqual(started.code, 2)
      assert.strictEqual(started.stderr.trim(), line)
      const refusedJson = yield* hestia(["config", "check", bad, "--format", "json"])
      assert.strictEqual(refusedJson.code, 2)
      assert.include(JSON.parse(refusedJson.stdout), { error: "UsageError" })
      const missing = yield* hestia(["config", "check", Path.join(dir, "absent.yml")])
      assert.strictEqual(missing.code, 2)
    })
  )

  it.live("keys add, list, disable, enable, remove on the database; a running gateway takes the added key", () =>
    Effect.gen(function* () {
      const entry = ensureBundle()
      const dir = tempDir("hestia-cli-keys-")
      const config = Path.join(dir, "hestia.yml")
      writeFileSync(config, gatewayYaml(processService("web", yield* Effect.promise(freePort))))
      const env = { HESTIA_CONFIG: config, HESTIA_DATABASE: Path.join(dir, "hestia.db") }

      const added = yield* hestia(["keys", "add", "laptop"], env)
      assert.strictEqual(added.code, 0, added.stderr)
      const key = added.stdout.trim()
      assert.match(key, /^hk_[A-Za-z0-9_-]{43}$/)
      assert.include(added.stderr, "shown only this once")
      const addedJson = JSON.parse((yield* hestia(["keys", "add", "phone", "--format", "json"], env)).stdout)
      assert.strictEqual(addedJson.label, "phone")
      assert.strictEqual((yield* hestia(["keys", "add", "laptop"], env)).code, 1)
      assert.strictEqual((yield* hestia(["keys", "add", "config-9"], env)).code, 2)

      const list = yield* hestia(["keys", "list"], env)
      assert.match(list.stdout, /^LABEL\s+SOURCE\s+STATE\s+CREATED\s+LAST USED\n/)
      assert.match(list.stdout, /^laptop\s+cli\s+enabled\s/m)
      assert.notInclude(list.stdout, key)
      assert.strictEqual((yield* hestia(["keys", "disable", "phone"], env)).stdout.trim(), 'key "phone": disabled')
      const listed = JSON.parse((yield* hestia(["keys", "list", "--format", "json"], env)).stdout)
      assert.deepStrictEqual(
        listed.keys.map((k: { label: string; enabled: boolean }) => [k.label, k.enabled]),
        [
          ["laptop", true],
          ["phone", false]
        ]
      )
      assert.strictEqual((yield* hestia(["keys", "enable", "phone"], env)).code, 0)
      assert.strictEqual((yield* hestia(["keys", "remove", "phone"], env)).code, 0)
      const gone = yield* hestia(["keys", "remove", "phone"], env)
      assert.strictEqual(gone.code, 1)
      assert.strictEqual(oneLine(gone.stderr), 'hestia: no key labelled "phone"')

      // A gateway on that database: auth on, the CLI's key opens it.
      const gateway = yield* startGateway(config, { HESTIA_DATABASE: env.HESTIA_DATABASE }, entry)
      assert.strictEqual((yield* call(`${gateway.url}/v1/services`)).status, 401)
      assert.strictEqual((yield* call(`${gateway.url}/v1/services`, { headers: { "x-api-key": key } })).status, 200)
      const status = yield* hestia(["status", "--url", gateway.url, "--api-key", key])
      assert.strictEqual(status.code, 0, status.stderr)
    }).pipe(Effect.scoped)
  )
})
