/**
 * 5b. A thundering herd: 1 000 concurrent requests (1 000 connections) to a cold service. Starts are counted from
 * the marks file (one line per spawned process); errors are every answer that is not a 200 from the upstream.
 */
import { Pool } from "undici"
import { makeCold, readMarks } from "../lib/control.ts"
import { upstreamCommand } from "../lib/launch.ts"
import { now, trackMarks } from "../lib/processes.ts"
import type { Scenario } from "../lib/scenario.ts"

const SERVICE = "herd"
const REQUESTS = 1_000

export const herd: Scenario = {
  name: "herd",
  gateway: "shared",
  config: async (setup) => {
    const port = await setup.port(SERVICE)
    const marks = setup.file("herd.marks")
    trackMarks(marks)
    return {
      services: {
        [SERVICE]: {
          base_url: `http://127.0.0.1:${port}`,
          health_url: `http://127.0.0.1:${port}/health`,
          command: upstreamCommand(port, ["--boot-ms", "500", "--marks", marks]),
          idle_timeout_ms: 0,
          queue_size: 2000,
          request_timeout_seconds: 60,
          retry_count: 0,
          stop_grace_ms: 2000
        }
      }
    }
  },
  run: async ({ gateway, headers, file, log }) => {
    const marks = file("herd.marks")
    log(`▸ 5b. ${REQUESTS} concurrent requests to a cold service`)
    await makeCold(gateway.url, SERVICE)
    const seen = readMarks(marks).filter((m) => m.event === "spawned").length
    const pool = new Pool(gateway.url, { connections: REQUESTS, pipelining: 1 })
    const started = now()
    const outcomes = await Promise.allSettled(
      Array.from({ length: REQUESTS }, async () => {
        const response = await pool.request({ method: "GET", path: `/services/${SERVICE}/json`, headers })
        return { status: response.statusCode, body: await response.body.text() }
      })
    )
    const tookMs = now() - started
    await pool.close()
    const errorKinds: Record<string, number> = {}
    const pids = new Set<number>()
    let ok = 0
    for (const outcome of outcomes) {
      if (outcome.status === "fulfilled" && outcome.value.status === 200) {
        ok++
        pids.add((JSON.parse(outcome.value.body) as { pid: number }).pid)
      } else {
        const kind =
          outcome.status === "fulfilled"
            ? `HTTP ${outcome.value.status}`
            : String((outcome.reason as { code?: string }).code ?? outcome.reason)
        errorKinds[kind] = (errorKinds[kind] ?? 0) + 1
      }
    }
    const herd = {
      requests: REQUESTS,
      ok,
      errors: REQUESTS - ok,
      errorKinds,
      starts: readMarks(marks).filter((m) => m.event === "spawned").length - seen,
      upstreamPidsAnswering: pids.size,
      allAnsweredMs: Math.round(tookMs)
    }
    log(
      `  starts ${herd.starts}, ok ${herd.ok}, errors ${herd.errors} ${JSON.stringify(errorKinds)}, ${herd.allAnsweredMs} ms`
    )
    await makeCold(gateway.url, SERVICE)

    return {
      results: { herd },
      rows: [
        {
          measure: `   ${herd.requests} concurrent requests to a cold service`,
          gateway: `${herd.starts} start(s), ${herd.errors} errors, all answered in ${herd.allAnsweredMs} ms`
        }
      ],
      bars: [
        {
          line: "5",
          bar: `${REQUESTS} concurrent cold requests → exactly 1 start, 0 errors`,
          figure: `${herd.starts} start(s), ${herd.errors} errors`,
          met: herd.starts === 1 && herd.errors === 0
        }
      ]
    }
  }
}
