/**
 * 5. Cold wake-up: a service whose `command` is bench/upstream.mjs, with a boot delay chosen per run (spread so the
 * figure does not depend on where the delay falls in the probe schedule). The figure is *upstream listening → first
 * queued client response*, shown with its two parts: probe lag (listening → the gateway's first healthy answer) and
 * hand-off (that answer → the client's response). Clocks: `performance.timeOrigin + performance.now()` in every
 * process. Between runs the service is stopped through the API and the bench waits for `cold`.
 */
import { writeFileSync } from "node:fs"
import { request } from "undici"
import { makeCold, readMarks } from "../lib/control.ts"
import { upstreamCommand } from "../lib/launch.ts"
import { median, round1 } from "../lib/measure.ts"
import { now, trackMarks } from "../lib/processes.ts"
import { fmt } from "../lib/report.ts"
import type { Scenario, Setup } from "../lib/scenario.ts"

const SERVICE = "cold"

const settings = (quick: boolean) => ({
  bootDelaysMs: quick ? [400, 700, 1000, 1300, 1600] : [350, 500, 650, 800, 950, 1100, 1250]
})

const files = (setup: Setup) => ({ marks: setup.file("cold.marks"), boot: setup.file("cold.boot-ms") })

export const coldWakeup: Scenario = {
  name: "coldWakeup",
  gateway: "shared",
  config: async (setup) => {
    const port = await setup.port(SERVICE)
    const { marks, boot } = files(setup)
    // The upstream reads its boot delay from this file when it is spawned: the bench sets it before each run.
    writeFileSync(boot, "500")
    trackMarks(marks)
    return {
      services: {
        [SERVICE]: {
          base_url: `http://127.0.0.1:${port}`,
          health_url: `http://127.0.0.1:${port}/health`,
          command: upstreamCommand(port, ["--boot-ms-file", boot, "--marks", marks]),
          idle_timeout_ms: 0,
          queue_size: 2000,
          request_timeout_seconds: 60,
          retry_count: 0,
          stop_grace_ms: 2000
        }
      }
    }
  },
  run: async (bench) => {
    const { gateway, agent, headers, log } = bench
    const { marks: marksFile, boot } = files(bench)
    const { bootDelaysMs } = settings(bench.quick)
    log("▸ 5. cold start: upstream spawned by the gateway, healthy after a known delay")
    const runs: Array<Record<string, number>> = []
    for (const bootMs of bootDelaysMs) {
      await makeCold(gateway.url, SERVICE)
      writeFileSync(boot, String(bootMs))
      const seen = readMarks(marksFile).length
      const sent = now()
      const response = await request(`${gateway.url}/services/${SERVICE}/json`, { headers, dispatcher: agent })
      const answered = now()
      const body = await response.body.text()
      if (response.statusCode !== 200) throw new Error(`cold start answered ${response.statusCode}: ${body}`)
      const marks = readMarks(marksFile).slice(seen)
      const spawned = marks.find((m) => m.event === "spawned")
      const listening = marks.find((m) => m.event === "listening" && m.pid === spawned?.pid)
      const health = marks.find((m) => m.event === "health" && m.pid === spawned?.pid)
      if (spawned === undefined || listening === undefined || health === undefined) {
        throw new Error(`cold start: missing upstream marks ${JSON.stringify(marks)}`)
      }
      const run = {
        bootMs,
        requestToSpawnMs: round1(spawned.t - sent),
        requestToListeningMs: round1(listening.t - sent),
        requestToResponseMs: round1(answered - sent),
        /** The figure: from the moment a health probe could first succeed to the queued client's response. */
        wakeMs: round1(answered - listening.t),
        /** Of which: polling lag, until the gateway's first probe got its healthy answer ... */
        probeLagMs: round1(health.t - listening.t),
        /** ... and the hand-off from that answer to the client's response. */
        handoffMs: round1(answered - health.t)
      }
      runs.push(run)
      log(
        `  boot ${bootMs} ms: wake-up ${fmt(run.wakeMs)} ms (probe lag ${fmt(run.probeLagMs)} + hand-off ${fmt(run.handoffMs)}), request → response ${fmt(run.requestToResponseMs)} ms`
      )
    }
    await makeCold(gateway.url, SERVICE)
    const coldStart = {
      bootDelaysMs,
      wakeP50Ms: round1(median(runs.map((r) => r.wakeMs!))),
      wakeMaxMs: round1(Math.max(...runs.map((r) => r.wakeMs!))),
      probeLagP50Ms: round1(median(runs.map((r) => r.probeLagMs!))),
      handoffP50Ms: round1(median(runs.map((r) => r.handoffMs!))),
      runs
    }

    return {
      results: { coldStart },
      rows: [
        {
          measure: "5. cold wake-up p50: upstream listening → queued response",
          gateway: `${fmt(coldStart.wakeP50Ms)} ms (max ${fmt(coldStart.wakeMaxMs)})`
        },
        {
          measure: "   of which probe lag / hand-off after the healthy answer (p50)",
          gateway: `${fmt(coldStart.probeLagP50Ms)} / ${fmt(coldStart.handoffP50Ms)} ms`
        }
      ],
      bars: [
        {
          line: "5",
          bar: "cold-start wake-up p50 ≤ 150 ms after the upstream turns healthy",
          figure: `${fmt(coldStart.wakeP50Ms)} ms`,
          met: coldStart.wakeP50Ms <= 150
        }
      ]
    }
  }
}
