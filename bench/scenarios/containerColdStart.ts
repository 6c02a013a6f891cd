import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { request } from "undici"
import { engineCall, type RunningEngine, startDockerd, unavailable } from "../../test/fixtures/PrivateEngine.ts"
import { median } from "../lib/measure.ts"
import { freePort, now, startChild, stopChild, waitForHttp } from "../lib/processes.ts"
import { fmt } from "../lib/report.ts"
import type { Scenario } from "../lib/scenario.ts"

// ---------------------------------------------------------------------------
// Container cold start: a stopped container (the test image: the host's node running examples/upstream.mjs) on a
// private dockerd, started by the gateway on the first request. The figure is *engine start → first response*: from
// the engine's own `start` event for the container (its clock is this machine's) to the moment the client has the
// response to the request that triggered the start. Beside it, request → response for the same container, and for
// the same upstream run as a local process (the process cold start on equal terms: same program, same health probe).
// ---------------------------------------------------------------------------

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..")

export interface ContainerColdStart {
  /** p50 of engine `start` event → first response, ms; NaN when not measured. */
  readonly p50Ms: number
  readonly samples: ReadonlyArray<{
    readonly engineStartToResponseMs: number
    readonly requestToResponseMs: number
  }>
  /** p50 request → first response for the container. */
  readonly requestToResponseP50Ms: number
  /** p50 request → first response for the same upstream as a local process. */
  readonly processRequestToResponseP50Ms: number
  readonly processSamples: ReadonlyArray<number>
  /** Why nothing was measured (no engine can run here). */
  readonly skipped?: string
}

export interface Options {
  readonly runs?: number
  /** The gateway's node arguments; default the bundle `npm start` runs (built here). */
  readonly gatewayEntry?: ReadonlyArray<string>
}

const round1 = (value: number) => Math.round(value * 10) / 10

const state = async (gateway: string, id: string) => {
  const response = await request(`${gateway}/v1/services/${id}/status`)
  return ((await response.body.json()) as { state: string }).state
}

const makeCold = async (gateway: string, id: string) => {
  if ((await state(gateway, id)) !== "cold") {
    await (await request(`${gateway}/v1/services/${id}/stop`, { method: "POST" })).body.dump()
  }
  const deadline = now() + 30_000
  while ((await state(gateway, id)) !== "cold") {
    if (now() > deadline) throw new Error(`${id} did not go cold`)
    await sleep(20)
  }
}

/** The engine's time of the last `start` of the container, in ms (from its event log). */
const lastStartMs = async (engine: RunningEngine, name: string, sinceMs: number) => {
  const answer = await engineCall(
    engine.socket,
    "GET",
    `/events?since=${Math.floor(sinceMs / 1000)}&until=${Math.ceil(Date.now() / 1000)}`
  )
  const starts = answer.text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as { Action: string; timeNano: number; Actor?: { Attributes?: any } })
    .filter((event) => event.Action === "start" && event.Actor?.Attributes?.name === name)
  const last = starts.at(-1)
  if (last === undefined) throw new Error(`no start event for ${name}`)
  return last.timeNano / 1e6
}

export const containerColdStart = async (
  log: (message: string) => void,
  options: Options = {}
): Promise<ContainerColdStart> => {
  const skipped = unavailable("docker")
  if (skipped !== undefined) {
    log(`  container cold start not measured: ${skipped}`)
    return {
      p50Ms: Number.NaN,
      samples: [],
      requestToResponseP50Ms: Number.NaN,
      processRequestToResponseP50Ms: Number.NaN,
      processSamples: [],
      skipped
    }
  }
  const runs = options.runs ?? 7
  const dir = mkdtempSync(join(tmpdir(), "hestia-bench-containers-"))
  const engine = await startDockerd()
  try {
    const [containerPort, processPort, gatewayPort] = await Promise.all([freePort(), freePort(), freePort()])
    const name = `bench-cold-${containerPort}`
    const created = await engineCall(engine.socket, "POST", `/containers/create?name=${name}`, {
      Image: engine.image,
      Cmd: [process.execPath, "/app/upstream.mjs", "--port", String(containerPort)],
      HostConfig: { NetworkMode: "host" }
    })
    if (created.status !== 201) throw new Error(`create: ${created.text}`)
    const config = join(dir, "hestia.yml")
    writeFileSync(
      config,
      `server: { host: 127.0.0.1, port: ${gatewayPort} }
database: ${JSON.stringify(join(dir, "hestia.db"))}
machines:
  local: { host: 127.0.0.1, docker_url: ${JSON.stringify(engine.url)} }
services:
  box:
    base_url: http://127.0.0.1:${containerPort}
    health_url: http://127.0.0.1:${containerPort}/health
    container: { name: ${name} }
    idle_timeout_ms: 0
    stop_grace_ms: 2000
  proc:
    base_url: http://127.0.0.1:${processPort}
    health_url: http://127.0.0.1:${processPort}/health
    command: ${JSON.stringify([process.execPath, join(ROOT, "examples/upstream.mjs"), "--port", String(processPort)])}
    idle_timeout_ms: 0
    stop_grace_ms: 2000
`
    )
    let entry = options.gatewayEntry
    if (entry === undefined) {
      execFileSync(process.execPath, [join(ROOT, "scripts", "build.mjs")], { cwd: ROOT, stdio: "ignore" })
      entry = [join(ROOT, "dist", "main.mjs")]
    }
    const gateway = startChild("gateway (containers)", process.execPath, [...entry], {
      cwd: ROOT,
      env: { ...process.env, HESTIA_CONFIG: config, HESTIA_LOG_LEVEL: "error" }
    })
    const url = `http://127.0.0.1:${gatewayPort}`
    try {
      await waitForHttp(`${url}/healthz`, gateway)
      const coldRequest = async (id: string) => {
        await makeCold(url, id)
        const sent = now()
        const response = await request(`${url}/services/${id}/json`)
        await response.body.dump()
        const answered = now()
        if (response.statusCode !== 200) throw new Error(`${id} cold start answered ${response.statusCode}`)
        return { sent, answered }
      }
      // One of each first, not counted: the page cache and the bundle warm up.
      await coldRequest("box")
      await coldRequest("proc")
      const samples: Array<{ engineStartToResponseMs: number; requestToResponseMs: number }> = []
      const processSamples: Array<number> = []
      for (let run = 0; run < runs; run++) {
        const { sent, answered } = await coldRequest("box")
        const started = await lastStartMs(engine, name, sent - 1_000)
        samples.push({
          engineStartToResponseMs: round1(answered - started),
          requestToResponseMs: round1(answered - sent)
        })
        const proc = await coldRequest("proc")
        processSamples.push(round1(proc.answered - proc.sent))
      }
      const result: ContainerColdStart = {
        p50Ms: round1(median(samples.map((s) => s.engineStartToResponseMs))),
        samples,
        requestToResponseP50Ms: round1(median(samples.map((s) => s.requestToResponseMs))),
        processRequestToResponseP50Ms: round1(median(processSamples)),
        processSamples
      }
      log(
        `  container (private dockerd): engine start → first response p50 ${result.p50Ms} ms, ` +
          `request → response p50 ${result.requestToResponseP50Ms} ms; ` +
          `same upstream as a process: request → response p50 ${result.processRequestToResponseP50Ms} ms`
      )
      return result
    } finally {
      await stopChild(gateway)
    }
  } finally {
    await engine.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

export default containerColdStart

/** In `npm run bench`: after the shared gateway, on a private dockerd of its own (a row saying why when none runs). */
export const containerColdStartScenario: Scenario = {
  name: "containerColdStart",
  gateway: "own",
  run: async (bench) => {
    const result = await containerColdStart(bench.log, { runs: bench.quick ? 3 : 7 })
    const runs = result.samples.length
    return {
      results: { containerColdStart: result },
      rows:
        result.skipped !== undefined
          ? [{ measure: "9. container cold start", gateway: `not measured: ${result.skipped}` }]
          : [
              {
                measure: `9. container cold start p50 (${runs} runs, private dockerd): engine start → first response`,
                gateway: `${fmt(result.p50Ms)} ms`
              },
              {
                measure: "   request → first response: the container / the same upstream as a local process",
                gateway: `${fmt(result.requestToResponseP50Ms)} / ${fmt(result.processRequestToResponseP50Ms)} ms`
              }
            ],
      bars: []
    }
  }
}

// `npx tsx bench/scenarios/containerColdStart.ts` runs it alone.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const result = await containerColdStart((message) => process.stderr.write(`${message}\n`))
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
}
