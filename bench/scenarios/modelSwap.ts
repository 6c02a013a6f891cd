/**
 * 8. Model swap: two model services (examples/model-upstream.mjs) in one exclusive group, asked for through the
 * model endpoint (`POST /openai/v1/chat/completions`, streamed). The figure is the swap's own cost: *B requested
 * while A is hot → A stopped → B's first byte*, minus B's own boot (B requested with nothing else running → its
 * first byte), run for run, interleaved: a boot-alone run, then a swap run, `rounds` times; p50 of the differences.
 * Two boots of a node process differ by more than the swap costs on a loaded machine, so beside it the same cost
 * read within each swap run: B requested → B's start attempt begun (`attempt_started` in the gateway's timeline, ms
 * resolution); and the parts of a swap from the upstreams' marks (one clock in every process:
 * `performance.timeOrigin + performance.now()`): request → A exited, A exited → B's script running (node's own
 * start included), → listening, → first byte.
 */
import { request } from "undici"
import { getJson, makeCold, readMarks } from "../lib/control.ts"
import { median, round1 } from "../lib/measure.ts"
import { NODE, ROOT } from "../lib/paths.ts"
import { now, trackMarks } from "../lib/processes.ts"
import { fmt } from "../lib/report.ts"
import type { Bench, Scenario } from "../lib/scenario.ts"

const A = "swap-a"
const B = "swap-b"
const MODEL = { [A]: "swap-model-a", [B]: "swap-model-b" } as const

const settings = (quick: boolean) => ({ rounds: quick ? 3 : 7 })

interface MarkLine {
  readonly event: string
  readonly pid: number
  readonly t: number
}
const marksOf = (file: string) => readMarks(file) as unknown as ReadonlyArray<MarkLine>

/** Sends a streamed chat completion for `model`; when its first body byte arrived, and when the whole answer had. */
const ask = async (bench: Bench, model: string) => {
  const sent = now()
  const response = await request(`${bench.gateway.url}/openai/v1/chat/completions`, {
    method: "POST",
    headers: { ...bench.headers, "content-type": "application/json" },
    body: JSON.stringify({ model, stream: true, max_tokens: 2, messages: [{ role: "user", content: "hi" }] }),
    dispatcher: bench.agent
  })
  let firstByte: number | undefined
  let text = ""
  for await (const chunk of response.body) {
    firstByte ??= now()
    text += chunk.toString()
  }
  if (response.statusCode !== 200 || !text.includes(`[${model}]`)) {
    throw new Error(`model swap: ${model} answered ${response.statusCode}: ${text.slice(0, 300)}`)
  }
  return { sent, firstByte: firstByte!, done: now() }
}

export const modelSwap: Scenario = {
  name: "modelSwap",
  gateway: "shared",
  config: async (setup) => {
    const services: Record<string, Record<string, unknown>> = {}
    for (const id of [A, B] as const) {
      const port = await setup.port(id)
      const marks = setup.file(`${id}.marks`)
      trackMarks(marks)
      services[id] = {
        base_url: `http://127.0.0.1:${port}`,
        health_url: `http://127.0.0.1:${port}/health`,
        command: [
          NODE,
          `${ROOT}/examples/model-upstream.mjs`,
          "--port",
          String(port),
          "--models",
          MODEL[id],
          "--token-ms",
          "1",
          "--marks",
          marks
        ],
        models: [MODEL[id]],
        idle_timeout_ms: 0,
        retry_count: 0,
        stop_grace_ms: 2000
      }
    }
    return { services, sections: { groups: { "swap-gpu": { exclusive: true, members: [A, B] } } } }
  },
  run: async (bench) => {
    const { gateway, log } = bench
    const { rounds } = settings(bench.quick)
    const marksA = bench.file(`${A}.marks`)
    const marksB = bench.file(`${B}.marks`)
    log("▸ 8. model swap: B asked for while A holds the group, against B's boot alone")
    const runs: Array<Record<string, number>> = []
    for (let round = 0; round < rounds; round++) {
      // B's own boot: nothing else in the group runs.
      await makeCold(gateway.url, A)
      await makeCold(gateway.url, B)
      const alone = await ask(bench, MODEL[B])
      // The swap: A hot (and idle), then B.
      await makeCold(gateway.url, B)
      await ask(bench, MODEL[A])
      const seenA = marksOf(marksA).length
      const seenB = marksOf(marksB).length
      const swap = await ask(bench, MODEL[B])
      const aExit = marksOf(marksA)
        .slice(seenA)
        .find((m) => m.event === "exit")
      const bMarks = marksOf(marksB).slice(seenB)
      const bSpawned = bMarks.find((m) => m.event === "spawned")
      const bListening = bMarks.find((m) => m.event === "listening")
      if (aExit === undefined || bSpawned === undefined || bListening === undefined) {
        throw new Error(`model swap: missing upstream marks ${JSON.stringify({ aExit, bMarks })}`)
      }
      const timeline = await getJson<{ activity: ReadonlyArray<{ type: string; ts: string }> }>(
        `${gateway.url}/v1/activity?serviceId=${B}&limit=20`,
        bench.headers
      )
      const bStart = timeline.body.activity.find((row) => row.type === "attempt_started")
      if (bStart === undefined) throw new Error(`model swap: no attempt_started for ${B} in the timeline`)
      const run = {
        bootAloneMs: round1(alone.firstByte - alone.sent),
        swapFirstByteMs: round1(swap.firstByte - swap.sent),
        /** The figure: what the swap adds to B's own boot. */
        swapCostMs: round1(swap.firstByte - swap.sent - (alone.firstByte - alone.sent)),
        /** The same cost within the swap run: until B's own start began (the gateway's clock, ms). */
        requestToBStartMs: round1(Date.parse(bStart.ts) - swap.sent),
        requestToAExitedMs: round1(aExit.t - swap.sent),
        aExitedToBSpawnedMs: round1(bSpawned.t - aExit.t),
        bSpawnedToListeningMs: round1(bListening.t - bSpawned.t),
        bListeningToFirstByteMs: round1(swap.firstByte - bListening.t)
      }
      runs.push(run)
      log(
        `  round ${round + 1}: swap → first byte ${fmt(run.swapFirstByteMs)} ms, B alone ${fmt(run.bootAloneMs)} ms, swap cost ${fmt(run.swapCostMs)} ms; B's start began after ${fmt(run.requestToBStartMs)} ms (A exited after ${fmt(run.requestToAExitedMs)} ms)`
      )
    }
    await makeCold(gateway.url, A)
    await makeCold(gateway.url, B)
    const p50 = (key: string) => round1(median(runs.map((r) => r[key]!)))
    const modelSwap = {
      rounds,
      swapCostP50Ms: p50("swapCostMs"),
      swapFirstByteP50Ms: p50("swapFirstByteMs"),
      bootAloneP50Ms: p50("bootAloneMs"),
      requestToBStartP50Ms: p50("requestToBStartMs"),
      requestToAExitedP50Ms: p50("requestToAExitedMs"),
      aExitedToBSpawnedP50Ms: p50("aExitedToBSpawnedMs"),
      bSpawnedToListeningP50Ms: p50("bSpawnedToListeningMs"),
      bListeningToFirstByteP50Ms: p50("bListeningToFirstByteMs"),
      runs
    }
    return {
      results: { modelSwap },
      rows: [
        {
          measure: `8. model swap p50 (${rounds} rounds): B asked for while A is hot → B's first byte, minus B's boot alone`,
          gateway: `${fmt(modelSwap.swapCostP50Ms)} ms (${fmt(modelSwap.swapFirstByteP50Ms)} − ${fmt(modelSwap.bootAloneP50Ms)} ms)`
        },
        {
          measure: "   the same within each swap run: B requested → B's start begun (gateway timeline, p50)",
          gateway: `${fmt(modelSwap.requestToBStartP50Ms)} ms`
        },
        {
          measure: "   request → A exited / → B's script running / → listening / → first byte (p50)",
          gateway: `${fmt(modelSwap.requestToAExitedP50Ms)} / ${fmt(modelSwap.aExitedToBSpawnedP50Ms)} / ${fmt(modelSwap.bSpawnedToListeningP50Ms)} / ${fmt(modelSwap.bListeningToFirstByteP50Ms)} ms`
        }
      ],
      bars: []
    }
  }
}
