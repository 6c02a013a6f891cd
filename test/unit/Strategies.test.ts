import { rmSync } from "node:fs"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Schema } from "effect"
import { ServiceEntry, serviceOf } from "../../src/config/ServiceConfig.ts"
import { Strategies } from "../../src/strategies/Strategies.ts"
import { MAX_STRATEGY_FILES } from "../../src/strategies/StrategyFolder.ts"
import { tempDir } from "../fixtures/Gateway.ts"
import {
  entry,
  failures,
  listed,
  listedUntil,
  logged,
  remove,
  router,
  startError,
  strategiesLayer,
  strategiesYaml,
  until,
  write
} from "../fixtures/Strategies.ts"

// The loader on real folders and real worker threads. Each test has its own folder and strategy names (the metrics
// registry is global).

const ask = (name: string, headers: Record<string, string> = {}) =>
  Effect.flatMap(Strategies, (strategies) => strategies.route(name, { method: "GET", path: "/x", headers }))

/** A service as the config decodes it (so new keys get their defaults), with an env a strategy must not see. */
const service = (id: string, strategy?: string) =>
  serviceOf(
    id,
    Schema.decodeUnknownSync(ServiceEntry)({
      base_url: "http://127.0.0.1:1",
      warmup_ms: 0,
      idle_timeout_ms: 0,
      queue_size: 1,
      request_timeout_seconds: 1,
      retry_count: 0,
      retry_delay_ms: 0,
      env: { SECRET: "not for strategies" },
      stop_grace_ms: 0,
      ...(strategy === undefined ? {} : { strategy })
    })
  )

const machines = [
  {
    id: "m1",
    host: "h1",
    semaphoreMachineId: undefined,
    dockerUrl: undefined,
    containerDiscovery: false,
    labels: { gpu: true }
  },
  { id: "m2", host: "h2", semaphoreMachineId: undefined, dockerUrl: undefined, containerDiscovery: false, labels: {} },
  { id: "m3", host: "h3", semaphoreMachineId: undefined, dockerUrl: undefined, containerDiscovery: false, labels: {} }
]

const ctx = { now: 1_000, hot: [], lastStartedOn: {} }

describe("Strategies: loading", () => {
  it.live("loads .ts, .mjs and .js files of each kind, lists them, and each kind decides", () =>
    Effect.gen(function* () {
      const dir = tempDir("hestia-strategies-")
      write(dir, "lib/pick.ts", `export const pick = (h: Record<string, string>): string | undefined => h["x-to"]\n`)
      write(
        dir,
        "route.ts",
        `import type { RoutingStrategy } from ${JSON.stringify(Path.resolve("src/strategies/StrategyApi.ts"))}
import { pick } from "./lib/pick.ts"
const strategy: RoutingStrategy = { name: "t-route", kind: "routing", route: (request) => pick(request.headers) }
export default strategy
`
      )
      write(
        dir,
        "place.mjs",
        `export default { name: "t-place", kind: "placement",
  place: async (service, machines, context) => [...machines].reverse().filter((m) => !(service.env)).map((m) => m.id).concat(context.now > 0 ? [] : ["m1"]) }
`
      )
      write(
        dir,
        "balance.js",
        `module.exports = { name: "t-balance", kind: "balance", balance: (s, instances) => instances[1] }\n`
      )
      write(dir, "notes.md", "not a strategy\n")
      write(dir, "types.d.ts", "export type X = 1\n")

      const layer = strategiesLayer(strategiesYaml(dir, { a: "t-route", b: "t-route", c: "t-place" }))
      yield* Effect.gen(function* () {
        const view = yield* listed
        assert.strictEqual(view.dir, dir)
        assert.strictEqual(view.timeoutMs, 2_000)
        assert.deepStrictEqual(
          view.strategies.map((s) => [s.name, s.kind, s.file, s.usedBy, s.running, s.error]),
          [
            ["t-balance", "balance", Path.join(dir, "balance.js"), [], false, undefined],
            ["t-place", "placement", Path.join(dir, "place.mjs"), ["c"], true, undefined],
            ["t-route", "routing", Path.join(dir, "route.ts"), ["a", "b"], true, undefined]
          ]
        )
        for (const s of view.strategies) assert.isFalse(Number.isNaN(Date.parse(s.loadedAt!)))

        const strategies = yield* Strategies
        // Header names are normalised to lower case before the strategy sees them.
        assert.strictEqual(yield* ask("t-route", { "X-To": "svc-1" }), "svc-1")
        assert.strictEqual(yield* ask("t-route"), undefined)
        // Placement sees the service without its environment, and gets the candidates' ids back in its order.
        assert.deepStrictEqual(yield* strategies.place("t-place", service("c", "t-place"), machines, ctx), [
          "m3",
          "m2",
          "m1"
        ])
        // Balance: the caller's own instance object comes back; the parked strategy's worker starts on its first call.
        const instances = [
          { url: "http://a", healthy: true, inFlight: 0, labels: {}, tag: "a" },
          { url: "http://b", healthy: true, inFlight: 2, labels: { zone: "b" }, tag: "b" }
        ]
        const picked = yield* strategies.balance("t-balance", service("d"), instances)
        assert.strictEqual(picked, instances[1])
        assert.isTrue(entry(yield* listed, "balance.js")!.running)
        assert.strictEqual(strategies.kindOf("t-balance"), "balance")
        assert.strictEqual(strategies.kindOf("nope"), undefined)
      }).pipe(Effect.provide(layer))
    })
  )

  it.live("at start: a broken file, a bad export, a duplicate, an unknown name or too much is a ConfigError", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<[string, Record<string, string>, Record<string, string>, string, RegExp]> = [
        [
          "syntax",
          { "a.ts": "export default { name: 'a', kind: 'routing', route() { return ( } }" },
          {},
          "a.ts",
          /does not compile: line 1, column \d+: /
        ],
        [
          "throws at import",
          { "a.mjs": "\n\nthrow new TypeError('no config')\n" },
          {},
          "a.mjs",
          /failed to load: TypeError: no config \(a\.mjs:3:7\)/
        ],
        ["no default export", { "a.mjs": "export const x = 1\n" }, {}, "a.mjs", /default export is not an object/],
        ["no name", { "a.mjs": "export default { kind: 'routing', route() {} }\n" }, {}, "a.mjs", /needs a name/],
        [
          "bad kind",
          { "a.mjs": "export default { name: 'a', kind: 'routes', route() {} }\n" },
          {},
          "a.mjs",
          /kind must be one of routing, placement, balance, got "routes"/
        ],
        [
          "no function",
          { "a.mjs": "export default { name: 'a', kind: 'placement', route() {} }\n" },
          {},
          "a.mjs",
          /placement strategy but has no place\(\) function/
        ],
        [
          "duplicate",
          { "a.mjs": router("same", "'x'"), "b.mjs": router("same", "'y'") },
          {},
          "a.mjs",
          /duplicate strategy name "same" \(also in .*b\.mjs\)/
        ],
        [
          "unknown",
          { "a.mjs": router("known", "'x'") },
          { svc: "unknwon" },
          "",
          /no strategy named "unknwon" in strategies_dir .* \(loaded: known\)/
        ]
      ]
      for (const [label, files, services, file, problem] of cases) {
        const dir = tempDir("hestia-strategies-")
        for (const [name, content] of Object.entries(files)) write(dir, name, content)
        const error = yield* startError(strategiesYaml(dir, services))
        if (file === "") {
          assert.strictEqual(error.path, "services.svc.strategy", label)
          assert.strictEqual(error.file, "test config", label)
        } else {
          assert.strictEqual(error.file, Path.join(dir, file), label)
        }
        assert.match(error.problem, problem, label)
        assert.notInclude(error.message, "\n", label)
      }

      const many = tempDir("hestia-strategies-")
      for (let i = 0; i <= MAX_STRATEGY_FILES; i++) write(many, `s${i}.mjs`, router(`s${i}`, "'x'"))
      const tooMany = yield* startError(strategiesYaml(many))
      assert.strictEqual(tooMany.file, many)
      assert.include(tooMany.problem, `holds ${MAX_STRATEGY_FILES + 1} strategy files`)

      const huge = tempDir("hestia-strategies-")
      write(huge, "big.mjs", `${router("big", "'x'")}//${"x".repeat(1024 * 1024)}\n`)
      const tooBig = yield* startError(strategiesYaml(huge))
      assert.strictEqual(tooBig.file, Path.join(huge, "big.mjs"))
      assert.match(tooBig.problem, /is 1\.0 MiB; a strategy file may be at most 1\.0 MiB/)
    })
  )

  it.live("a folder that does not exist holds no strategies; a service naming one is then refused", () =>
    Effect.gen(function* () {
      const dir = Path.join(tempDir("hestia-strategies-"), "absent")
      const view = yield* Effect.provide(listed, strategiesLayer(strategiesYaml(dir)))
      assert.deepStrictEqual(view.strategies, [])
      const error = yield* startError(strategiesYaml(dir, { svc: "x" }))
      assert.match(error.problem, /no strategy named "x" .*\(none loaded\)/)
    })
  )
})

describe("Strategies: reload while running", () => {
  it.live("a file added, changed, broken, fixed, duplicated and removed: the previous version stays on failure", () =>
    Effect.gen(function* () {
      const dir = tempDir("hestia-strategies-")
      write(dir, "a.mjs", router("r-alpha", "'one'"))
      const lines: Array<string> = []
      yield* Effect.gen(function* () {
        assert.strictEqual(yield* ask("r-alpha"), "one")
        const first = entry(yield* listed, "a.mjs")!

        // Added.
        write(dir, "b.mjs", router("r-beta", "'b'"))
        yield* listedUntil((view) => entry(view, "b.mjs")?.name === "r-beta")
        assert.strictEqual(yield* ask("r-beta"), "b")

        // Changed: the new version answers, with a new load time.
        write(dir, "a.mjs", router("r-alpha", "'two'"))
        yield* until(ask("r-alpha"), (answer) => answer === "two", 300)
        const second = entry(yield* listed, "a.mjs")!
        assert.isAbove(Date.parse(second.loadedAt!), Date.parse(first.loadedAt!) - 1)
        assert.notStrictEqual(second.loadedAt, first.loadedAt)

        // Broken: the error is shown and logged, the previous version still answers.
        write(dir, "a.mjs", "export default { name: 'r-alpha', kind: 'routing', route() { return ( } }\n")
        const broken = yield* listedUntil((view) => entry(view, "a.mjs")?.error !== undefined)
        const shown = entry(broken, "a.mjs")!
        assert.match(shown.error!, /does not compile/)
        assert.strictEqual(shown.name, "r-alpha")
        assert.strictEqual(shown.loadedAt, second.loadedAt)
        assert.deepStrictEqual(shown.usedBy, ["svc"])
        assert.strictEqual(yield* ask("r-alpha"), "two")
        const failed = logged(lines, "strategy_load_failed")
        assert.strictEqual(failed.length, 1)
        assert.strictEqual(failed[0]!.file, Path.join(dir, "a.mjs"))
        assert.strictEqual(failed[0]!.kept, "r-alpha")

        // A module that throws at import is broken the same way.
        write(dir, "a.mjs", "throw new Error('half written')\n")
        yield* listedUntil((view) => /half written/.test(entry(view, "a.mjs")?.error ?? ""))
        assert.strictEqual(yield* ask("r-alpha"), "two")

        // Fixed.
        write(dir, "a.mjs", router("r-alpha", "'three'"))
        const fixed = yield* listedUntil((view) => entry(view, "a.mjs")?.error === undefined)
        assert.strictEqual(entry(fixed, "a.mjs")!.name, "r-alpha")
        assert.strictEqual(yield* ask("r-alpha"), "three")

        // A duplicate name: refused, shown beside its file; the holder keeps the name.
        write(dir, "c.mjs", router("r-alpha", "'impostor'"))
        const duplicate = yield* listedUntil((view) => entry(view, "c.mjs") !== undefined)
        assert.match(entry(duplicate, "c.mjs")!.error!, /duplicate strategy name "r-alpha" \(also in .*a\.mjs\)/)
        assert.strictEqual(entry(duplicate, "c.mjs")!.loadedAt, null)
        assert.strictEqual(yield* ask("r-alpha"), "three")

        // A file renamed to another strategy name: the old name goes, the new one comes.
        write(dir, "b.mjs", router("r-gamma", "'g'"))
        yield* listedUntil((view) => entry(view, "b.mjs")?.name === "r-gamma")
        assert.strictEqual(yield* ask("r-beta"), undefined)
        assert.strictEqual(yield* ask("r-gamma"), "g")

        // Removed: the holder of the name goes, so the duplicate that was waiting for it takes it.
        remove(dir, "b.mjs")
        remove(dir, "a.mjs")
        const after = yield* listedUntil(
          (view) => entry(view, "a.mjs") === undefined && entry(view, "c.mjs")?.error === undefined
        )
        assert.isUndefined(entry(after, "b.mjs"))
        assert.strictEqual(entry(after, "c.mjs")!.name, "r-alpha")
        assert.strictEqual(yield* ask("r-alpha"), "impostor")

        // Every file gone: a name a service uses but nothing defines is listed with its error.
        remove(dir, "c.mjs")
        const empty = yield* listedUntil((view) => view.strategies.every((s) => s.file === null))
        assert.deepStrictEqual(
          empty.strategies.map((s) => [s.name, s.file, s.usedBy, s.loadedAt]),
          [["r-alpha", null, ["svc"], null]]
        )
        assert.match(empty.strategies[0]!.error!, /no file in .* defines it/)
        assert.strictEqual(yield* ask("r-alpha"), undefined)
        assert.isAtLeast(logged(lines, "strategy_removed").length, 2)
      }).pipe(Effect.provide(strategiesLayer(strategiesYaml(dir, { svc: "r-alpha" }), lines)))
    })
  )

  it.live("the folder removed: its strategies stay, the error is shown; back: it is watched and read again", () =>
    Effect.gen(function* () {
      const root = tempDir("hestia-strategies-")
      const dir = Path.join(root, "s")
      write(dir, "a.mjs", router("r-folder", "'one'"))
      yield* Effect.gen(function* () {
        rmSync(dir, { recursive: true })
        const gone = yield* listedUntil((view) => view.strategies.some((s) => s.file === dir))
        assert.match(
          gone.strategies.find((s) => s.file === dir)!.error!,
          /the folder is gone; the strategies loaded before stay/
        )
        assert.strictEqual(yield* ask("r-folder"), "one")
        write(dir, "a.mjs", router("r-folder", "'two'"))
        yield* until(ask("r-folder"), (answer) => answer === "two")
        assert.isUndefined((yield* listed).strategies.find((s) => s.file === dir))
        // Watched again: a change is seen without waiting for the poll.
        write(dir, "a.mjs", router("r-folder", "'three'"))
        yield* until(ask("r-folder"), (answer) => answer === "three", 60)
      }).pipe(Effect.provide(strategiesLayer(strategiesYaml(dir))))
    })
  )

  it.live("reload() reads the folder at once; a change of the same size in the same instant is seen", () =>
    Effect.gen(function* () {
      const dir = tempDir("hestia-strategies-")
      write(dir, "a.mjs", router("r-same", "'aaaa'"))
      yield* Effect.gen(function* () {
        const strategies = yield* Strategies
        for (const answer of ["bbbb", "cccc", "dddd"]) {
          write(dir, "a.mjs", router("r-same", `'${answer}'`))
          yield* strategies.reload()
          assert.strictEqual(yield* ask("r-same"), answer)
        }
      }).pipe(Effect.provide(strategiesLayer(strategiesYaml(dir))))
    })
  )
})

describe("Strategies: calls never fail", () => {
  it.live("a throw, a rejection, a wrong or unsendable value is undefined, counted, and logged once per window", () =>
    Effect.gen(function* () {
      const dir = tempDir("hestia-strategies-")
      write(dir, "throws.mjs", router("c-throws", "{ throw new RangeError('nope') }"))
      write(dir, "rejects.mjs", router("c-rejects", "Promise.reject(new Error('later'))"))
      write(dir, "number.mjs", router("c-number", "42"))
      write(dir, "fn.mjs", router("c-fn", "() => 1"))
      write(
        dir,
        "place.mjs",
        "export default { name: 'c-place', kind: 'placement', place: (s, m) => ['m1', 'elsewhere'] }\n"
      )
      write(
        dir,
        "dupes.mjs",
        "export default { name: 'c-dupes', kind: 'placement', place: (s, m) => ['m2', 'm1', 'm2'] }\n"
      )
      write(
        dir,
        "bal.mjs",
        "export default { name: 'c-bal', kind: 'balance', balance: () => ({ url: 'http://other' }) }\n"
      )
      const lines: Array<string> = []
      yield* Effect.gen(function* () {
        const strategies = yield* Strategies
        for (let i = 0; i < 20; i++) assert.strictEqual(yield* ask("c-throws"), undefined)
        assert.strictEqual(yield* failures("c-throws", "threw"), 20)
        const lines1 = logged(lines, "strategy_failed").filter((line) => line.strategy === "c-throws")
        assert.strictEqual(lines1.length, 1)
        assert.strictEqual(lines1[0]!.reason, "threw")
        assert.match(String(lines1[0]!.error), /RangeError: nope \(throws\.mjs:2:\d+\)/)

        assert.strictEqual(yield* ask("c-rejects"), undefined)
        assert.strictEqual(yield* failures("c-rejects", "threw"), 1)
        assert.strictEqual(yield* ask("c-number"), undefined)
        assert.strictEqual(yield* failures("c-number", "invalid_result"), 1)
        assert.strictEqual(yield* ask("c-fn"), undefined)
        assert.strictEqual(yield* failures("c-fn", "invalid_result"), 1)

        assert.strictEqual(yield* strategies.place("c-place", service("s"), machines, ctx), undefined)
        assert.strictEqual(yield* failures("c-place", "invalid_result"), 1)
        assert.deepStrictEqual(yield* strategies.place("c-dupes", service("s"), machines, ctx), ["m2", "m1"])
        const instances = [{ url: "http://a", healthy: true, inFlight: 0, labels: {} }]
        assert.strictEqual(yield* strategies.balance("c-bal", service("s"), instances), undefined)
        assert.strictEqual(yield* failures("c-bal", "invalid_result"), 1)

        // A name nobody has, or a strategy of another kind: no decision either.
        assert.strictEqual(yield* ask("c-nobody"), undefined)
        assert.strictEqual(yield* strategies.place("c-throws", service("s"), machines, ctx), undefined)
        assert.strictEqual(yield* failures("c-throws", "unavailable"), 1)
      }).pipe(Effect.provide(strategiesLayer(strategiesYaml(dir), lines)))
    })
  )

  it.live(
    "a synchronous infinite loop is cut at the time limit; its thread is replaced and the next call answers",
    () =>
      Effect.gen(function* () {
        const dir = tempDir("hestia-strategies-")
        write(dir, "loop.mjs", router("c-loop", "{ if (request.headers.loop) for (;;) {} return 'fine' }"))
        const lines: Array<string> = []
        yield* Effect.gen(function* () {
          assert.strictEqual(yield* ask("c-loop"), "fine")
          assert.strictEqual(yield* ask("c-loop", { loop: "1" }), undefined)
          assert.strictEqual(yield* failures("c-loop", "timeout"), 1)
          // The blocked thread does not answer a ping: it is terminated and logged...
          yield* until(
            Effect.sync(() => logged(lines, "strategy_worker_ended")),
            (ended) => ended.length === 1
          )
          assert.match(String(logged(lines, "strategy_worker_ended")[0]!.reason), /blocked/)
          // ...and a new one answers (started at most once a second).
          yield* until(ask("c-loop"), (answer) => answer === "fine", 100)
        }).pipe(Effect.provide(strategiesLayer(strategiesYaml(dir, {}, 300), lines)))
      })
  )

  it.live("a slow async call is cut at the limit but its thread lives on, with its state", () =>
    Effect.gen(function* () {
      const dir = tempDir("hestia-strategies-")
      write(
        dir,
        "slow.mjs",
        router(
          "c-slow",
          "request.headers.slow ? new Promise((resolve) => setTimeout(() => resolve('late'), 2000)) : String(++count)",
          "let count = 0"
        )
      )
      const lines: Array<string> = []
      yield* Effect.gen(function* () {
        assert.strictEqual(yield* ask("c-slow"), "1")
        assert.strictEqual(yield* ask("c-slow", { slow: "1" }), undefined)
        assert.strictEqual(yield* failures("c-slow", "timeout"), 1)
        // Past the ping's wait (2 × 300 ms): the thread answered it, so it was kept.
        yield* Effect.sleep("1 second")
        assert.strictEqual(yield* ask("c-slow"), "2")
        assert.deepStrictEqual(logged(lines, "strategy_worker_ended"), [])
      }).pipe(Effect.provide(strategiesLayer(strategiesYaml(dir, {}, 300), lines)))
    })
  )

  it.live("a strategy that ends its thread (process.exit) gives no decision; the next call gets a new thread", () =>
    Effect.gen(function* () {
      const dir = tempDir("hestia-strategies-")
      write(dir, "exits.mjs", router("c-exits", "{ if (request.headers.exit) process.exit(3); return 'here' }"))
      const lines: Array<string> = []
      yield* Effect.gen(function* () {
        assert.strictEqual(yield* ask("c-exits", { exit: "1" }), undefined)
        assert.strictEqual(yield* failures("c-exits", "unavailable"), 1)
        yield* until(ask("c-exits"), (answer) => answer === "here", 100)
        assert.match(String(logged(lines, "strategy_worker_ended")[0]!.reason), /exited with code 3/)
      }).pipe(Effect.provide(strategiesLayer(strategiesYaml(dir), lines)))
    })
  )

  it.live("a strategy's console output is logged as its own lines", () =>
    Effect.gen(function* () {
      const dir = tempDir("hestia-strategies-")
      write(dir, "talks.mjs", router("c-talks", "{ console.log('routing', request.path); return undefined }"))
      const lines: Array<string> = []
      yield* Effect.gen(function* () {
        assert.strictEqual(yield* ask("c-talks"), undefined)
        const output = yield* until(
          Effect.sync(() => logged(lines, "strategy_output")),
          (found) => found.length === 1
        )
        assert.strictEqual(output[0]!.msg, "routing /x")
        assert.strictEqual(output[0]!.strategy, "c-talks")
        // undefined is a decision not to decide, not a failure.
        assert.strictEqual(yield* failures("c-talks", "invalid_result"), 0)
      }).pipe(Effect.provide(strategiesLayer(strategiesYaml(dir), lines)))
    })
  )

  it.live("closing the scope ends every worker thread", () =>
    Effect.gen(function* () {
      const dir = tempDir("hestia-strategies-")
      write(dir, "a.mjs", router("c-scope", "'x'"))
      const strategies = yield* Effect.scoped(
        Effect.gen(function* () {
          const context = yield* Layer.build(strategiesLayer(strategiesYaml(dir, { svc: "c-scope" })))
          const strategies = Context.get(context, Strategies)
          assert.isTrue(entry(yield* strategies.list(), "a.mjs")!.running)
          return strategies
        })
      )
      assert.isFalse(entry(yield* strategies.list(), "a.mjs")!.running)
      assert.strictEqual(yield* strategies.route("c-scope", { method: "GET", path: "/", headers: {} }), undefined)
    })
  )
})
