/**
 * 7. Strategy plugins: what a call costs its caller, since a routing strategy may run on every request. The
 * Strategies service of this checkout in the bench's own process (as the gateway runs it: the example header router
 * bundled by esbuild, in its own worker thread), called through its Effect API: one call at a time (each timed), then
 * 50 callers at once; the first call of a parked strategy (its thread starts); the loading of the folder; the memory of one
 * running strategy's thread. Not through the gateway: nothing routes requests by strategy yet.
 */

import * as Path from "node:path"
import { performance } from "node:perf_hooks"
import { NodeContext } from "@effect/platform-node"
import { Context, Effect, Layer, Logger, LogLevel } from "effect"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { Strategies } from "../../src/strategies/Strategies.ts"
import { median, percentile, round1 } from "../lib/measure.ts"
import { ROOT } from "../lib/paths.ts"
import { fmt, fmtInt } from "../lib/report.ts"
import type { Scenario } from "../lib/scenario.ts"

const settings = (quick: boolean) => ({ sequential: quick ? 5_000 : 20_000, concurrent: quick ? 20_000 : 100_000 })

const request = {
  method: "POST",
  path: "/v1/chat/completions",
  headers: {
    host: "localhost:8080",
    "user-agent": "openai/6.0 js",
    accept: "application/json",
    "content-type": "application/json",
    "content-length": "120",
    authorization: "Bearer hk_0123456789abcdef",
    "x-request-id": "bench-1",
    "x-hestia-service": "llama"
  }
}

const rssMiB = () => process.memoryUsage().rss / (1024 * 1024)

export const strategyCalls: Scenario = {
  name: "strategyCalls",
  gateway: "own",
  run: async ({ quick, log }) => {
    const s = settings(quick)
    log(`▸ 7. strategy calls: ${s.sequential} one at a time, ${s.concurrent} from 50 callers at once`)
    const yaml = `strategies_dir: ${JSON.stringify(Path.join(ROOT, "strategies"))}
services:
  llama: { base_url: "http://127.0.0.1:1", strategy: header-router }
`
    const layer = Strategies.Default.pipe(
      Layer.provide(HestiaConfig.layerYaml(yaml)),
      Layer.provide(NodeContext.layer),
      Layer.provide(Logger.minimumLogLevel(LogLevel.None))
    )
    const figures = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const loadStart = performance.now()
          const strategies = Context.get(yield* Layer.build(layer), Strategies)
          const loadMs = performance.now() - loadStart
          const route = strategies.route("header-router", request)
          for (let i = 0; i < 2_000; i++) yield* route

          const micros: Array<number> = []
          for (let i = 0; i < s.sequential; i++) {
            const t = performance.now()
            const answer = yield* route
            micros.push((performance.now() - t) * 1000)
            if (answer !== "llama") throw new Error(`the header router answered ${answer}`)
          }

          // 50 callers at once (as 50 requests being routed), each making its calls one after the other.
          const perCaller = s.concurrent / 50
          const caller = Effect.gen(function* () {
            for (let i = 0; i < perCaller; i++) yield* route
          })
          const concurrentStart = performance.now()
          yield* Effect.all(
            Array.from({ length: 50 }, () => caller),
            { concurrency: "unbounded", discard: true }
          )
          const callsPerSecond = s.concurrent / ((performance.now() - concurrentStart) / 1000)

          // round-robin is parked (no service names it): its first call starts its thread.
          const before = rssMiB()
          const instances = [{ url: "http://a", healthy: true, inFlight: 0, labels: {} }]
          const service = yield* HestiaConfig.pipe(
            Effect.map((config) => config.services.get("llama")!),
            Effect.provide(HestiaConfig.layerYaml(yaml))
          )
          const firstStart = performance.now()
          const picked = yield* strategies.balance("round-robin", service, instances)
          const firstCallMs = performance.now() - firstStart
          if (picked?.url !== "http://a") throw new Error("round-robin gave no instance")
          yield* Effect.sleep("500 millis")
          const threadMiB = rssMiB() - before
          return { loadMs, micros, callsPerSecond, firstCallMs, threadMiB }
        })
      )
    )
    const p50 = median(figures.micros)
    const p99 = percentile(figures.micros, 99)
    log(
      `  one at a time: p50 ${fmt(p50)} µs, p99 ${fmt(p99)} µs; 50 callers at once: ${fmtInt(figures.callsPerSecond)} calls/s; ` +
        `first call of a parked strategy ${fmt(figures.firstCallMs, 0)} ms; load ${fmt(figures.loadMs, 0)} ms; ` +
        `thread ≈ ${fmt(figures.threadMiB)} MiB`
    )
    const strategyCall = {
      sequentialCalls: s.sequential,
      p50Micros: round1(p50),
      p99Micros: round1(p99),
      concurrentCallsPerSecond: Math.round(figures.callsPerSecond),
      firstCallOfParkedMs: round1(figures.firstCallMs),
      folderLoadMs: round1(figures.loadMs),
      threadRssMiB: round1(figures.threadMiB)
    }
    return {
      results: { strategyCall },
      rows: [
        {
          measure: "7. routing strategy call (header router, worker thread), one at a time",
          gateway: `p50 ${fmt(p50)} µs, p99 ${fmt(p99)} µs`
        },
        { measure: "   same, 50 callers at once", gateway: `${fmtInt(figures.callsPerSecond)} calls/s` },
        {
          measure: "   first call of a parked strategy (its thread starts)",
          gateway: `${fmt(figures.firstCallMs, 0)} ms`
        },
        {
          measure: "   loading strategies/ (3 examples: bundle, threads)",
          gateway: `${fmt(figures.loadMs, 0)} ms; one running strategy's thread ≈ ${fmt(figures.threadMiB)} MiB RSS`
        }
      ],
      bars: []
    }
  }
}
