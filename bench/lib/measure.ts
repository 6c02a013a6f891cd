/** What every scenario measures against, and the statistics they share. */
import { setTimeout as sleep } from "node:timers/promises"
import { cpuMs, now, rssMiB } from "./processes.ts"

/** One thing measured: the upstream itself, a proxy in front of it, or the gateway. */
export interface Target {
  readonly name: string
  /** Origin of the server the client talks to. */
  readonly origin: string
  /** Path prefix in front of the upstream's own paths ("" or "/services/direct"). */
  readonly prefix: string
  /** The process whose CPU is charged to this target (the proxy; for direct, the upstream). */
  readonly pid: number
}

export const median = (values: ReadonlyArray<number>) => percentile(values, 50)

/** Nearest-rank percentile. */
export const percentile = (values: ReadonlyArray<number>, p: number) => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!
}

/**
 * The median over rounds of the per-round ratio x / y. Rounds of different targets run back to back, so the ratio
 * within a round sees the same background load on a shared machine.
 */
export const pairedMedian = (x: ReadonlyArray<number>, y: ReadonlyArray<number>) =>
  median(x.map((value, i) => value / y[i]!))

/** Every target once per round, in an order that rotates from round to round. */
export const interleaved = <T>(targets: ReadonlyArray<T>, rounds: number): Array<{ round: number; target: T }> => {
  const out: Array<{ round: number; target: T }> = []
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < targets.length; i++) out.push({ round, target: targets[(i + round) % targets.length]! })
  }
  return out
}

export const round1 = (value: number) => Math.round(value * 10) / 10
export const round3 = (value: number) => Math.round(value * 1000) / 1000

/** CPU (% of one core) of `pid` over `ms` of idling, and its RSS at the end. */
export const idleOver = async (pid: number, ms: number) => {
  const cpu0 = cpuMs(pid)
  const t0 = now()
  await sleep(ms)
  return {
    cpuPercentOfCore: round1(((cpuMs(pid) - cpu0) / (now() - t0)) * 100),
    rssMiB: round1(rssMiB(pid))
  }
}
