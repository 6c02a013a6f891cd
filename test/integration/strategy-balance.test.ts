import { type ChildProcess, spawn } from "node:child_process"
import { writeFileSync } from "node:fs"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { ensureBundle } from "../fixtures/Bundle.ts"
import { call, callJson, eventually, freePort, repoRoot, tempDir, upstreamScript } from "../fixtures/Gateway.ts"
import { startGateway } from "../fixtures/GatewayProcess.ts"

// Balancing a service's instances in the bundle npm start runs: three real upstream processes the test starts and
// kills itself (the gateway starts none of them), strategies/round-robin.js, the default rule, health-based failover.

interface Upstream {
  readonly port: number
  readonly pid: number
  readonly child: ChildProcess
}

/** `examples/upstream.mjs` on `port`, answering its /health; SIGKILLed when the scope closes (if still running). */
const upstream = (port: number) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const child = spawn(process.execPath, [upstreamScript, "--port", String(port)], { stdio: "ignore" })
      const pid = yield* eventually(
        Effect.map(
          Effect.either(Effect.tryPromise(() => fetch(`http://127.0.0.1:${port}/health`).then((r) => r.json()))),
          (result) => (result._tag === "Right" ? (result.right as { pid: number }).pid : undefined)
        ),
        (found) => found === child.pid
      )
      return { port, pid: pid!, child } satisfies Upstream
    }),
    ({ child }) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
  )

const killed = (instance: Upstream) =>
  Effect.promise(
    () =>
      new Promise<void>((resolve) => {
        instance.child.once("exit", () => resolve())
        instance.child.kill("SIGKILL")
      })
  )

describe("balance strategies and instances (the bundle)", () => {
  it.live(
    "round-robin over three instances; one killed → every request still answered, it is out (status, gauge), back once restarted; the default rule; a reload",
    () =>
      Effect.gen(function* () {
        const [entry] = ensureBundle()
        const dir = tempDir("hestia-balance-")
        const ports = [
          yield* Effect.promise(freePort),
          yield* Effect.promise(freePort),
          yield* Effect.promise(freePort)
        ]
        let instances = yield* Effect.forEach(ports, upstream)
        const urls = ports.map((port) => `http://127.0.0.1:${port}`)
        const file = Path.join(dir, "hestia.yml")
        const config = (pool: ReadonlyArray<string>) =>
          `server: { host: 127.0.0.1, port: 0 }
strategies_dir: ${JSON.stringify(Path.join(repoRoot, "strategies"))}
strategy_timeout_ms: 2000
services:
  pool:
    health_url: ${urls[0]}/health
    instances: ${JSON.stringify(pool)}
    strategy: round-robin
    idle_timeout_ms: 0
  plain:
    # The first Hestia's form: a label beside the url.
    instances: [${urls.map((url, i) => `{ url: "${url}", zone: z${i} }`).join(", ")}]
    health_url: http://127.0.0.1:1/health
    idle_timeout_ms: 0
`
        writeFileSync(file, config(urls))
        const gateway = yield* startGateway(file, { HESTIA_DATABASE: Path.join(dir, "hestia.db") }, [entry!])
        const pidAt = (service: string, path = "/who") =>
          Effect.map(callJson(`${gateway.url}/services/${service}${path}`), (r) => {
            assert.strictEqual(r.status, 200, r.text)
            return r.json.pid as number
          })
        const status = Effect.map(callJson(`${gateway.url}/v1/services/pool/status`), (r) => r.json)
        const gauge = (url: string) =>
          Effect.map(call(`${gateway.url}/metrics`), (r) => {
            const escaped = url.replace(/[.]/g, "\\.")
            const found = r.text.match(
              new RegExp(`hestia_instance_healthy\\{instance="${escaped}",service="pool"\\} (\\d)`)
            )
            return found?.[1]
          })
        const counts = (pids: ReadonlyArray<number>) => instances.map((i) => pids.filter((pid) => pid === i.pid).length)

        // Round robin: every instance in turn.
        const spread: Array<number> = []
        for (let i = 0; i < 9; i++) spread.push(yield* pidAt("pool"))
        assert.deepStrictEqual(counts(spread), [3, 3, 3])
        const hot = yield* status
        assert.strictEqual(hot.state, "hot")
        assert.deepStrictEqual(
          hot.instances.map((i: { url: string; healthy: boolean }) => [i.url, i.healthy]),
          urls.map((url) => [url, true])
        )

        // One killed: every following request is still answered (a GET refused by it goes to another instance).
        yield* killed(instances[1]!)
        const after: Array<number> = []
        for (let i = 0; i < 12; i++) after.push(yield* pidAt("pool"))
        assert.deepStrictEqual(
          counts(after).map((n) => n > 0),
          [true, false, true]
        )
        const out = yield* status
        assert.deepStrictEqual(
          out.instances.map((i: { healthy: boolean }) => i.healthy),
          [true, false, true]
        )
        assert.strictEqual(out.state, "hot")
        assert.strictEqual(yield* gauge(urls[1]!), "0")
        assert.strictEqual(yield* gauge(urls[0]!), "1")
        const down = gateway.lines.filter((line) => line.includes('"event":"instance_down"'))
        assert.strictEqual(down.length, 1)
        assert.include(down[0], urls[1])
        assert.include(down[0], '"serviceId":"pool"')

        // Restarted on the same port: back in once its health answers, and in the rotation again.
        const restarted = yield* upstream(ports[1]!)
        instances = [instances[0]!, restarted, instances[2]!]
        yield* eventually(status, (s) => s.instances[1].healthy === true, 300)
        assert.strictEqual(yield* gauge(urls[1]!), "1")
        assert.isTrue(gateway.lines.some((line) => line.includes('"event":"instance_up"') && line.includes(urls[1]!)))
        const back: Array<number> = []
        for (let i = 0; i < 6; i++) back.push(yield* pidAt("pool"))
        assert.deepStrictEqual(counts(back), [2, 2, 2])

        // Without a strategy, the default rule: the fewest requests in flight, ties to the first in the file.
        const sequential: Array<number> = []
        for (let i = 0; i < 4; i++) sequential.push(yield* pidAt("plain"))
        assert.deepStrictEqual(counts(sequential), [4, 0, 0])
        // Three at once (each held 500 ms): one on each instance.
        yield* Effect.all(
          [0, 1, 2].map(() => call(`${gateway.url}/services/plain/slow?ms=500`)),
          { concurrency: "unbounded" }
        )
        const slowSeen = yield* Effect.forEach(ports, (port) =>
          Effect.map(
            callJson(`http://127.0.0.1:${port}/_seen`),
            (r) => (r.json as Array<{ url: string }>).filter((seen) => seen.url.startsWith("/slow")).length
          )
        )
        assert.deepStrictEqual(slowSeen, [1, 1, 1])

        // A reload: the instance set follows the file (the second instance removed), no restart needed.
        writeFileSync(file, config([urls[0]!, urls[2]!]))
        yield* eventually(status, (s) => s.instances.length === 2, 300)
        const reloaded: Array<number> = []
        for (let i = 0; i < 4; i++) reloaded.push(yield* pidAt("pool"))
        assert.deepStrictEqual(counts(reloaded), [2, 0, 2])
      }).pipe(Effect.scoped)
  )

  it.live("refused with a body → 502 as before (the instance out); no healthy instance → 503 NoHealthyInstance", () =>
    Effect.gen(function* () {
      const [entry] = ensureBundle()
      const dir = tempDir("hestia-balance-out-")
      const dead = yield* Effect.promise(freePort)
      const [live, solo] = yield* Effect.forEach([0, 1], () => Effect.flatMap(Effect.promise(freePort), upstream))
      const file = Path.join(dir, "hestia.yml")
      writeFileSync(
        file,
        `server: { host: 127.0.0.1, port: 0 }
services:
  duo:
    instances: ["http://127.0.0.1:${dead}", "http://127.0.0.1:${live!.port}"]
    health_url: http://127.0.0.1:${live!.port}/health
  solo:
    instances: ["http://127.0.0.1:${solo!.port}"]
`
      )
      const gateway = yield* startGateway(file, { HESTIA_DATABASE: Path.join(dir, "hestia.db") }, [entry!])
      const status = (id: string) => Effect.map(callJson(`${gateway.url}/v1/services/${id}/status`), (r) => r.json)

      // Hot: one instance answers its health (the dead one is in until it refuses). The default rule sends the first
      // request to it: with a body, it is not sent again (the body streamed once): 502, and it is out.
      const posted = yield* callJson(`${gateway.url}/services/duo/mirror`, { method: "POST", body: "payload" })
      assert.strictEqual(posted.status, 502)
      assert.deepStrictEqual([posted.json.error, posted.json.reason], ["UpstreamUnavailable", "connection refused"])
      assert.deepStrictEqual(
        (yield* status("duo")).instances.map((i: { healthy: boolean }) => i.healthy),
        [false, true]
      )
      const next = yield* call(`${gateway.url}/services/duo/mirror`, { method: "POST", body: "payload" })
      assert.deepStrictEqual([next.status, next.text], [200, "payload"])

      // Its only instance gone: the GET refused finds no other one, and so does the next request.
      const first = yield* callJson(`${gateway.url}/services/solo/who`)
      assert.strictEqual(first.json.pid, solo!.pid)
      yield* killed(solo!)
      for (let i = 0; i < 2; i++) {
        const refused = yield* callJson(`${gateway.url}/services/solo/who`)
        assert.strictEqual(refused.status, 503)
        assert.strictEqual(refused.headers["retry-after"], "1")
        assert.deepStrictEqual(
          [refused.json.error, refused.json.serviceId, refused.json.instances],
          ["NoHealthyInstance", "solo", 1]
        )
      }
      assert.strictEqual((yield* status("solo")).state, "hot")
    }).pipe(Effect.scoped)
  )
})
