/**
 * 1. Throughput: autocannon, 50 connections, `GET /json`, interleaved rounds per target after a warm-up. req/s is
 * the total over the rounds; the ratios are the median of the per-round ratios. Also the CPU time of the serving
 * process per request.
 */
import autocannon from "autocannon"
import { interleaved, median, pairedMedian, round1, type Target } from "../lib/measure.ts"
import { cpuMs } from "../lib/processes.ts"
import { fmt, fmtInt, per, ratioText, rowOf } from "../lib/report.ts"
import type { Scenario } from "../lib/scenario.ts"

const settings = (quick: boolean) => ({
  connections: 50,
  warmupSeconds: quick ? 1 : 2,
  // Short rounds, many of them, interleaved: background load on a shared machine hits every target alike.
  rounds: quick ? 2 : 6,
  secondsPerRound: 1.5
})

interface ThroughputRun {
  readonly ok: number
  readonly seconds: number
  readonly errors: number
  readonly non2xx: number
  readonly cpuMs: number
  readonly latencyP50Ms: number
  readonly latencyP99Ms: number
}

const throughputRun = async (
  target: Target,
  options: { connections: number; seconds: number; headers: Record<string, string> }
): Promise<ThroughputRun> => {
  const cpuBefore = cpuMs(target.pid)
  const result = await autocannon({
    url: `${target.origin}${target.prefix}/json`,
    connections: options.connections,
    duration: options.seconds,
    headers: options.headers,
    timeout: 10
  })
  return {
    ok: result["2xx"],
    seconds: result.duration,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    cpuMs: cpuMs(target.pid) - cpuBefore,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99
  }
}

interface ThroughputFigures {
  readonly requestsPerSecond: number
  readonly perRoundRequestsPerSecond: ReadonlyArray<number>
  readonly requests: number
  readonly seconds: number
  readonly errors: number
  readonly non2xx: number
  readonly cpuUsPerRequest: number
  readonly cpuPercentOfCore: number
  readonly latencyP50Ms: number
  readonly latencyP99Ms: number
}

export const throughput: Scenario = {
  name: "throughput",
  gateway: "shared",
  run: async ({ quick, targets, headers, log }) => {
    const s = settings(quick)
    log(`▸ 1. throughput: ${s.connections} connections, small JSON GET`)
    for (const target of targets) {
      await throughputRun(target, { connections: 50, seconds: s.warmupSeconds, headers })
    }
    const runs = new Map<string, Array<ThroughputRun>>(targets.map((t) => [t.name, []]))
    for (const { round, target } of interleaved(targets, s.rounds)) {
      const run = await throughputRun(target, { connections: s.connections, seconds: s.secondsPerRound, headers })
      runs.get(target.name)!.push(run)
      log(
        `  round ${round + 1} ${target.name}: ${fmtInt(run.ok / run.seconds)} req/s (errors ${run.errors}, non-2xx ${run.non2xx})`
      )
    }
    const throughput: Record<string, ThroughputFigures> = Object.fromEntries(
      targets.map((target) => {
        const mine = runs.get(target.name)!
        const ok = mine.reduce((sum, run) => sum + run.ok, 0)
        const seconds = mine.reduce((sum, run) => sum + run.seconds, 0)
        const cpu = mine.reduce((sum, run) => sum + run.cpuMs, 0)
        return [
          target.name,
          {
            requestsPerSecond: Math.round(ok / seconds),
            perRoundRequestsPerSecond: mine.map((run) => Math.round(run.ok / run.seconds)),
            requests: ok,
            seconds: round1(seconds),
            errors: mine.reduce((sum, run) => sum + run.errors, 0),
            non2xx: mine.reduce((sum, run) => sum + run.non2xx, 0),
            cpuUsPerRequest: round1((cpu * 1000) / ok),
            cpuPercentOfCore: round1((cpu / (seconds * 1000)) * 100),
            latencyP50Ms: median(mine.map((run) => run.latencyP50Ms)),
            latencyP99Ms: Math.max(...mine.map((run) => run.latencyP99Ms))
          }
        ]
      })
    )

    // The ratio reported (and judged) is the median over rounds of the per-round ratio.
    const pairedRatio = (a: string, b: string) => {
      const x = throughput[a]?.perRoundRequestsPerSecond
      const y = throughput[b]?.perRoundRequestsPerSecond
      return x === undefined || y === undefined ? undefined : pairedMedian(x, y)
    }
    const throughputRatios = {
      gatewayToReference: pairedRatio("gateway", "reference"),
      gatewayToDirect: pairedRatio("gateway", "direct"),
      ...(throughput.nginx === undefined ? {} : { nginxToReference: pairedRatio("nginx", "reference") })
    }
    const withErrors = targets.filter((t) => throughput[t.name]!.errors + throughput[t.name]!.non2xx > 0)
    if (withErrors.length > 0) {
      log(`  WARNING: errors or non-2xx answers from ${withErrors.map((t) => t.name).join(", ")}`)
    }
    log(
      `  per-round gateway / reference: ${throughput.gateway!.perRoundRequestsPerSecond.map((v, i) => (v / throughput.reference!.perRoundRequestsPerSecond[i]!).toFixed(2)).join(" ")}`
    )

    return {
      results: { throughput, throughputRatios },
      rows: [
        {
          ...rowOf(
            "1. throughput, small JSON, 50 conn (req/s; ratios: median of per-round ratios)",
            per(throughput, (t) => t.requestsPerSecond),
            fmtInt
          ),
          vsReference: ratioText(throughputRatios.gatewayToReference),
          vsDirect: ratioText(throughputRatios.gatewayToDirect)
        },
        rowOf(
          "   CPU per request of the serving process (µs)",
          per(throughput, (t) => t.cpuUsPerRequest),
          (n) => fmt(n, 1)
        )
      ],
      bars: [
        {
          line: "1",
          bar: "throughput ≥ 0.9 × reference",
          figure: ratioText(throughputRatios.gatewayToReference),
          met: (throughputRatios.gatewayToReference ?? 0) >= 0.9 && withErrors.length === 0
        }
      ]
    }
  }
}
