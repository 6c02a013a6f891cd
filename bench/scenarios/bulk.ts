/**
 * 4. Bulk: 256 MiB downloads, interleaved runs per target, median MiB/s, ratio = median of per-round ratios.
 * Memory: RSS of the reference proxy and of the gateway sampled every 25 ms over a 1 GiB download and a 1 GiB
 * upload; growth = peak − before.
 */

import { Readable } from "node:stream"
import { setTimeout as sleep } from "node:timers/promises"
import { type Agent, request } from "undici"
import { interleaved, median, pairedMedian, round1, type Target } from "../lib/measure.ts"
import { rssMiB, rssSampler } from "../lib/processes.ts"
import { fmt, fmtInt, per, ratioText, rowOf } from "../lib/report.ts"
import type { Bench, Scenario } from "../lib/scenario.ts"

const MiB = 1024 * 1024

const settings = (quick: boolean) => ({ bytes: 256 * MiB, reps: quick ? 2 : 4, bigBytes: 1024 * MiB })

const downloadRun = async (agent: Agent, target: Target, bytes: number, headers: Record<string, string>) => {
  const started = performance.now()
  const response = await request(`${target.origin}${target.prefix}/bytes?n=${bytes}`, { dispatcher: agent, headers })
  let received = 0
  for await (const chunk of response.body as AsyncIterable<Buffer>) received += chunk.length
  const seconds = (performance.now() - started) / 1000
  if (response.statusCode !== 200 || received !== bytes) {
    throw new Error(`${target.name}: download got status ${response.statusCode}, ${received} of ${bytes} bytes`)
  }
  return { seconds, mibPerSecond: bytes / MiB / seconds }
}

const uploadRun = async (agent: Agent, target: Target, bytes: number, headers: Record<string, string>) => {
  const piece = Buffer.alloc(64 * 1024, "0123456789abcdef")
  const body = Readable.from(
    (function* () {
      for (let left = bytes; left > 0; left -= piece.length) {
        yield left >= piece.length ? piece : piece.subarray(0, left)
      }
    })()
  )
  const started = performance.now()
  const response = await request(`${target.origin}${target.prefix}/sink`, {
    dispatcher: agent,
    method: "POST",
    headers: { ...headers, "content-type": "application/octet-stream", "content-length": String(bytes) },
    body
  })
  const answer = (await response.body.json()) as { bytes?: number }
  const seconds = (performance.now() - started) / 1000
  if (response.statusCode !== 200 || answer.bytes !== bytes) {
    throw new Error(`${target.name}: upload got status ${response.statusCode}, upstream saw ${answer.bytes} bytes`)
  }
  return { seconds, mibPerSecond: bytes / MiB / seconds }
}

/** RSS of `target` before, at its peak over a big download and a big upload, and after. */
const memoryOver = async ({ agent, headers, log }: Bench, target: Target, bytes: number) => {
  await sleep(500)
  const before = rssMiB(target.pid)
  const sampler = rssSampler(target.pid)
  const down = await downloadRun(agent, target, bytes, headers)
  const up = await uploadRun(agent, target, bytes, headers)
  const peak = sampler.stop()
  await sleep(500)
  const after = rssMiB(target.pid)
  const result = {
    beforeMiB: round1(before),
    peakMiB: round1(peak),
    afterMiB: round1(after),
    growthMiB: round1(peak - before),
    downloadMiBPerSecond: Math.round(down.mibPerSecond),
    uploadMiBPerSecond: Math.round(up.mibPerSecond)
  }
  log(
    `  ${target.name}: RSS ${result.beforeMiB} → peak ${result.peakMiB} → ${result.afterMiB} MiB (1 GiB down ${result.downloadMiBPerSecond} MiB/s, up ${result.uploadMiBPerSecond} MiB/s)`
  )
  return result
}

export const bulk: Scenario = {
  name: "bulk",
  gateway: "shared",
  run: async (bench) => {
    const { quick, targets, agent, headers, log } = bench
    const s = settings(quick)
    log(`▸ 4. bulk: ${s.bytes / MiB} MiB downloads; RSS over ${s.bigBytes / MiB} MiB bodies`)
    const bulkRuns = new Map<string, Array<number>>(targets.map((t) => [t.name, []]))
    for (const { target } of interleaved(targets, s.reps)) {
      const run = await downloadRun(agent, target, s.bytes, headers)
      bulkRuns.get(target.name)!.push(run.mibPerSecond)
    }
    const bulk = Object.fromEntries(
      targets.map((target) => [
        target.name,
        {
          mibPerSecond: Math.round(median(bulkRuns.get(target.name)!)),
          perRoundMiBPerSecond: bulkRuns.get(target.name)!.map(Math.round)
        }
      ])
    )
    for (const target of targets) log(`  ${target.name}: ${bulk[target.name]!.mibPerSecond} MiB/s`)
    const bulkRatios = {
      gatewayToReference: pairedMedian(bulkRuns.get("gateway")!, bulkRuns.get("reference")!),
      gatewayToDirect: pairedMedian(bulkRuns.get("gateway")!, bulkRuns.get("direct")!)
    }
    const memory = {
      reference: await memoryOver(bench, bench.target("reference"), s.bigBytes),
      gateway: await memoryOver(bench, bench.target("gateway"), s.bigBytes)
    }

    return {
      results: { bulk, bulkRatios, memory },
      rows: [
        {
          ...rowOf(
            `4. bulk download, ${s.bytes / MiB} MiB (MiB/s, median; ratios: median of per-round ratios)`,
            per(bulk, (b) => b.mibPerSecond),
            fmtInt
          ),
          vsReference: ratioText(bulkRatios.gatewayToReference),
          vsDirect: ratioText(bulkRatios.gatewayToDirect)
        },
        {
          measure: "   RSS before → peak → after 1 GiB down + 1 GiB up (MiB)",
          reference: `${memory.reference.beforeMiB} → ${memory.reference.peakMiB} → ${memory.reference.afterMiB}`,
          gateway: `${memory.gateway.beforeMiB} → ${memory.gateway.peakMiB} → ${memory.gateway.afterMiB}`
        }
      ],
      bars: [
        {
          line: "4",
          bar: "bulk ≥ 0.8 × reference",
          figure: ratioText(bulkRatios.gatewayToReference),
          met: bulkRatios.gatewayToReference >= 0.8
        },
        {
          line: "4",
          bar: "RSS growth ≤ 32 MiB over a 1 GiB body (peak − before)",
          figure: `${fmt(memory.gateway.growthMiB)} MiB`,
          met: memory.gateway.growthMiB <= 32
        }
      ]
    }
  }
}
