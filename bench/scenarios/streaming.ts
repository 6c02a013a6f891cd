/**
 * 3. Streaming: NDJSON lines written 20 ms apart, runs interleaved, plus short streams (2 lines) for more TTFB
 * samples. TTFB is the first body byte; the chunk count shows whether lines arrive one by one or are buffered.
 */
import { type Agent, request } from "undici"
import { interleaved, median, round3, type Target } from "../lib/measure.ts"
import { columns, fmt, fmtInt, mapPer, ms1, rowOf } from "../lib/report.ts"
import type { Scenario } from "../lib/scenario.ts"

const settings = (quick: boolean) => ({ lines: 50, intervalMs: 20, reps: quick ? 3 : 5, extraTtfbReps: quick ? 5 : 20 })

interface StreamRun {
  readonly status: number
  readonly ttfbMs: number
  readonly totalMs: number
  readonly lines: number
  /** Body chunks received: ~ one per line when nothing buffers on the way. */
  readonly chunks: number
}

const streamRun = async (
  agent: Agent,
  target: Target,
  options: { lines: number; intervalMs: number; headers: Record<string, string> }
): Promise<StreamRun> => {
  const started = performance.now()
  const response = await request(
    `${target.origin}${target.prefix}/ndjson?lines=${options.lines}&interval=${options.intervalMs}`,
    { dispatcher: agent, headers: options.headers }
  )
  let first = Number.NaN
  let lines = 0
  let chunks = 0
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    if (chunks === 0) first = performance.now() - started
    chunks++
    for (const byte of chunk) if (byte === 10) lines++
  }
  return { status: response.statusCode, ttfbMs: first, totalMs: performance.now() - started, lines, chunks }
}

export const streaming: Scenario = {
  name: "streaming",
  gateway: "shared",
  run: async ({ quick, targets, agent, headers, log }) => {
    const s = settings(quick)
    log(`▸ 3. streaming: ${s.lines} NDJSON lines ${s.intervalMs} ms apart`)
    const streamRuns = new Map<string, Array<StreamRun>>(targets.map((t) => [t.name, []]))
    for (const { target } of interleaved(targets, s.reps)) {
      const run = await streamRun(agent, target, { ...s, headers })
      if (run.status !== 200 || run.lines !== s.lines) {
        throw new Error(`${target.name}: stream answered ${run.status} with ${run.lines} lines`)
      }
      streamRuns.get(target.name)!.push(run)
    }
    // The first byte of a 50-line stream is the first line of any such stream: more (short) samples for the TTFB,
    // whose few-ms differences a scheduler hiccup on a loaded machine can otherwise decide.
    const ttfbRuns = new Map<string, Array<number>>(
      targets.map((t) => [t.name, streamRuns.get(t.name)!.map((r) => r.ttfbMs)])
    )
    for (const { target } of interleaved(targets, s.extraTtfbReps)) {
      const run = await streamRun(agent, target, { lines: 2, intervalMs: s.intervalMs, headers })
      if (run.status !== 200 || run.lines !== 2) throw new Error(`${target.name}: stream answered ${run.status}`)
      ttfbRuns.get(target.name)!.push(run.ttfbMs)
    }
    const streaming = Object.fromEntries(
      targets.map((target) => {
        const runs = streamRuns.get(target.name)!
        return [
          target.name,
          {
            ttfbMs: round3(median(ttfbRuns.get(target.name)!)),
            ttfbSamples: ttfbRuns.get(target.name)!.length,
            totalMs: round3(median(runs.map((run) => run.totalMs))),
            chunks: median(runs.map((run) => run.chunks))
          }
        ]
      })
    )
    for (const target of targets) {
      const t = streaming[target.name]!
      log(`  ${target.name}: TTFB ${fmt(t.ttfbMs, 2)} ms, total ${fmt(t.totalMs, 1)} ms, ${t.chunks} chunks`)
    }

    const st = columns(streaming)
    const ttfbDelta = st.gateway.ttfbMs - st.direct!.ttfbMs
    return {
      results: { streaming },
      rows: [
        rowOf(
          `3. streaming TTFB (p50 of ${s.reps + s.extraTtfbReps} runs)`,
          mapPer(st, (x) => x.ttfbMs),
          (n) => (n === undefined ? "—" : `${fmt(n, 2)} ms`),
          false
        ),
        rowOf(
          `   streaming total, ${s.lines} lines × ${s.intervalMs} ms`,
          mapPer(st, (x) => x.totalMs),
          ms1,
          false
        ),
        rowOf(
          `   body chunks received (${s.lines} = line by line)`,
          mapPer(st, (x) => x.chunks),
          fmtInt,
          false
        )
      ],
      bars: [
        {
          line: "3",
          bar: "streaming TTFB within 2 ms of direct",
          figure: `${fmt(ttfbDelta, 2)} ms`,
          met: ttfbDelta <= 2
        }
      ]
    }
  }
}
