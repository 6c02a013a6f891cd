import { mkdirSync, renameSync, symlinkSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { request } from "undici"
import { ensureBundle } from "../fixtures/Bundle.ts"
import {
  call,
  callJson,
  eventually,
  freePort,
  gatewayYaml,
  isAlive,
  processService,
  tempDir
} from "../fixtures/Gateway.ts"
import { startGateway } from "../fixtures/GatewayProcess.ts"

const status = (base: string, id: string) => Effect.map(callJson(`${base}/v1/services/${id}/status`), (r) => r)
const logged = (lines: ReadonlyArray<string>, event: string) =>
  lines.flatMap((line) => {
    try {
      const entry = JSON.parse(line) as { event?: string }
      return entry.event === event ? [entry as Record<string, any>] : []
    } catch {
      return []
    }
  })

describe("live configuration: hestia_config.yml edited while the gateway runs (the bundle)", () => {
  it.live(
    "a service added appears, one removed finishes its open stream then stops, a typo is refused and the old config stays",
    () =>
      Effect.gen(function* () {
        const [entry] = ensureBundle()
        const dir = tempDir("hestia-live-")
        const [a, b] = [yield* Effect.promise(freePort), yield* Effect.promise(freePort)]
        const file = Path.join(dir, "hestia.yml")
        const serviceA = processService("alpha", a, { settings: { idle_timeout_ms: 0 } })
        const serviceB = processService("beta", b, { settings: { idle_timeout_ms: 0 } })
        writeFileSync(file, gatewayYaml(serviceA))
        const gateway = yield* startGateway(file, { HESTIA_DATABASE: Path.join(dir, "hestia.db") }, [entry!])
        const base = gateway.url
        assert.strictEqual((yield* status(base, "beta")).status, 404)

        // Added: the file is watched.
        writeFileSync(file, gatewayYaml(serviceA + serviceB))
        yield* eventually(status(base, "beta"), (s) => s.status === 200)
        const hello = yield* callJson(`${base}/services/beta/hello`)
        assert.strictEqual(hello.status, 200)
        const betaPid: number = hello.json.pid

        // Removed while a stream is open: the stream finishes, then the process is stopped.
        const stream = yield* Effect.promise(() =>
          request(`${base}/services/beta/ndjson?lines=20&interval=50`).then(async (response) => ({
            status: response.statusCode,
            text: await response.body.text()
          }))
        ).pipe(Effect.fork)
        yield* Effect.sleep("200 millis")
        writeFileSync(file, gatewayYaml(serviceA))
        yield* eventually(status(base, "beta"), (s) => s.status === 404)
        const done = yield* stream.await
        assert.strictEqual(done._tag, "Success")
        if (done._tag === "Success") {
          assert.strictEqual(done.value.status, 200)
          assert.strictEqual(done.value.text.trim().split("\n").length, 20, "the open stream ran to its end")
        }
        yield* eventually(
          Effect.sync(() => isAlive(betaPid)),
          (alive) => !alive
        )
        const reloaded = logged(gateway.lines, "config_reloaded")
        assert.isAtLeast(reloaded.length, 2)
        assert.deepStrictEqual(reloaded.at(-1)?.removed, ["beta"])

        // A typo: refused with the message a start would print; the running config stays.
        writeFileSync(file, `${gatewayYaml(serviceA)}  bad: { base_url: 1 }\n`)
        const failed = yield* eventually(
          Effect.sync(() => logged(gateway.lines, "config_reload_failed")),
          (found) => found.length > 0
        )
        assert.match(failed[0]!.problem, /services\.bad\.base_url/)
        assert.strictEqual((yield* status(base, "alpha")).status, 200)
        assert.strictEqual((yield* call(`${base}/services/alpha/x`)).status, 200)

        // On demand: POST /v1/config/reload answers with the problem (400), then with what it applied.
        const refused = yield* callJson(`${base}/v1/config/reload`, { method: "POST" })
        assert.strictEqual(refused.status, 400)
        assert.strictEqual(refused.json.error, "ConfigInvalid")
        assert.match(refused.json.problem, /services\.bad\.base_url/)
        writeFileSync(file, gatewayYaml(serviceA + serviceB))
        yield* eventually(status(base, "beta"), (s) => s.status === 200)
        const again = yield* callJson(`${base}/v1/config/reload`, { method: "POST" })
        assert.strictEqual(again.status, 200)
        assert.deepStrictEqual(
          [again.json.reloaded.added, again.json.reloaded.removed, again.json.reloaded.trigger],
          [[], [], "api"]
        )

        // SIGHUP reloads too.
        const before = logged(gateway.lines, "config_reloaded").length
        gateway.child.kill("SIGHUP")
        yield* eventually(
          Effect.sync(() => logged(gateway.lines, "config_reloaded")),
          (found) => found.length > before && found.at(-1)?.trigger === "signal"
        )
      }).pipe(Effect.scoped),
    90_000
  )

  it.live(
    "a config reached through links is followed: a Kubernetes ConfigMap's `..data` swap, an edit of the target; an event without a change of bytes reloads nothing",
    () =>
      Effect.gen(function* () {
        const [entry] = ensureBundle()
        const dir = tempDir("hestia-live-links-")
        const [a, b, c] = [
          yield* Effect.promise(freePort),
          yield* Effect.promise(freePort),
          yield* Effect.promise(freePort)
        ]
        const serviceA = processService("alpha", a)
        // As the kubelet lays a ConfigMap out: hestia.yml → ..data/hestia.yml, ..data → ..v1 (a folder).
        const version = (name: string, yaml: string) => {
          mkdirSync(Path.join(dir, name))
          writeFileSync(Path.join(dir, name, "hestia.yml"), yaml)
        }
        version("..v1", gatewayYaml(serviceA))
        symlinkSync("..v1", Path.join(dir, "..data"))
        symlinkSync("..data/hestia.yml", Path.join(dir, "hestia.yml"))
        // The database elsewhere: its writes must not be what makes the watch look at the folder.
        const gateway = yield* startGateway(
          Path.join(dir, "hestia.yml"),
          { HESTIA_DATABASE: Path.join(tempDir("hestia-live-links-db-"), "hestia.db") },
          [entry!]
        )
        const base = gateway.url

        // The update: a new version folder, and `..data` replaced by a rename (atomic), as the kubelet does.
        version("..v2", gatewayYaml(serviceA + processService("beta", b)))
        symlinkSync("..v2", Path.join(dir, "..data_tmp"))
        renameSync(Path.join(dir, "..data_tmp"), Path.join(dir, "..data"))
        yield* eventually(status(base, "beta"), (s) => s.status === 200)

        // The file the links lead to, edited in place.
        writeFileSync(Path.join(dir, "..v2", "hestia.yml"), gatewayYaml(serviceA + processService("gamma", c)))
        yield* eventually(status(base, "gamma"), (s) => s.status === 200)
        assert.strictEqual((yield* status(base, "beta")).status, 404)

        // Written again with the same bytes: the watch sees an event, and nothing is reloaded.
        const reloads = logged(gateway.lines, "config_reloaded").length
        assert.strictEqual(reloads, 2)
        writeFileSync(Path.join(dir, "..v2", "hestia.yml"), gatewayYaml(serviceA + processService("gamma", c)))
        writeFileSync(Path.join(dir, "unrelated.txt"), "x")
        yield* Effect.sleep("1 second")
        assert.strictEqual(logged(gateway.lines, "config_reloaded").length, reloads)
        assert.deepStrictEqual(
          logged(gateway.lines, "config_reloaded").map((line) => [line.trigger, line.added]),
          [
            ["file", ["beta"]],
            ["file", ["gamma"]]
          ]
        )
      }).pipe(Effect.scoped),
    60_000
  )
})
