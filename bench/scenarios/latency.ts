/**
 * 2. Latency at one connection: our own loop, sub-millisecond timing (`performance.now()`), requests alternating
 * between targets; p50/p99 and the gateway's added latency over direct (p50 − p50, p99 − p99).
 */
import { Client } from "undici"
import { percentile, type Target } from "../lib/measure.ts"
import { columns, fmt, mapPer, ms3, rowOf } from "../lib/report.ts"
import type { Scenario } from "../lib/scenario.ts"

const settings = (quick: boolean) => ({ warmup: quick ? 100 : 300, requests: quick ? 500 : 2_000 })

const latencyRun = async (
  targets: ReadonlyArray<Target>,
  options: { warmup: number; requests: number; headers: Record<string, string> }
) => {
  const clients = targets.map((target) => new Client(target.origin, { pipelining: 1, keepAliveTimeout: 30_000 }))
  const samples = targets.map(() => [] as Array<number>)
  let failures = 0
  try {
    const once = async (i: number) => {
      const started = performance.now()
      const response = await clients[i]!.request({
        method: "GET",
        path: `${targets[i]!.prefix}/json`,
        headers: options.headers
      })
      await response.body.dump({ limit: 1 << 20 })
      const took = performance.now() - started
      if (response.statusCode !== 200) failures++
      return took
    }
    for (let n = 0; n < options.warmup + options.requests; n++) {
      // Rotate who goes first so no target always follows the same one.
      for (let k = 0; k < targets.length; k++) {
        const i = (k + n) % targets.length
        const took = await once(i)
        if (n >= options.warmup) samples[i]!.push(took)
      }
    }
  } finally {
    await Promise.all(clients.map((client) => client.close()))
  }
  return {
    failures,
    byTarget: targets.map((target, i) => ({
      name: target.name,
      p50: percentile(samples[i]!, 50),
      p99: percentile(samples[i]!, 99),
      mean: samples[i]!.reduce((a, b) => a + b, 0) / samples[i]!.length
    }))
  }
}

export const latency: Scenario = {
  name: "latency",
  gateway: "shared",
  run: async ({ quick, targets, headers, withNginx, log }) => {
    log("▸ 2. latency at 1 connection")
    const latency = await latencyRun(targets, { ...settings(quick), headers })
    if (latency.failures > 0) throw new Error(`latency run: ${latency.failures} non-200 answers`)
    const latencyOf = (name: string) => latency.byTarget.find((entry) => entry.name === name)!
    const added = {
      p50: latencyOf("gateway").p50 - latencyOf("direct").p50,
      p99: latencyOf("gateway").p99 - latencyOf("direct").p99
    }
    for (const entry of latency.byTarget)
      log(`  ${entry.name}: p50 ${fmt(entry.p50, 3)} ms, p99 ${fmt(entry.p99, 3)} ms`)
    const addedText = (name: string) =>
      `${fmt(latencyOf(name).p50 - latencyOf("direct").p50, 3)} / ${fmt(latencyOf(name).p99 - latencyOf("direct").p99, 3)} ms`
    const lat = columns(Object.fromEntries(latency.byTarget.map((e) => [e.name, e])))

    return {
      results: { latency: { byTarget: latency.byTarget, addedOverDirectMs: added } },
      rows: [
        rowOf(
          "2. latency, 1 conn, p50",
          mapPer(lat, (e) => e.p50),
          ms3
        ),
        rowOf(
          "   latency, 1 conn, p99",
          mapPer(lat, (e) => e.p99),
          ms3
        ),
        {
          measure: "   added over direct, p50 / p99",
          reference: addedText("reference"),
          ...(withNginx ? { nginx: addedText("nginx") } : {}),
          gateway: `${fmt(added.p50, 3)} / ${fmt(added.p99, 3)} ms`
        }
      ],
      bars: [
        { line: "2", bar: "added latency p50 ≤ 0.3 ms", figure: `${fmt(added.p50, 3)} ms`, met: added.p50 <= 0.3 },
        { line: "2", bar: "added latency p99 ≤ 1.5 ms", figure: `${fmt(added.p99, 3)} ms`, met: added.p99 <= 1.5 }
      ]
    }
  }
}
