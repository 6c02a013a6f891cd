/**
 * 6. Scale: a gateway of its own with 100 external services (all on the plain upstream); launch time is process
 * spawn → first 2xx from `/healthz` (polled every 5 ms); then idle (CPU % of one core, RSS), then the same with all
 * 100 services hot.
 */
import { setTimeout as sleep } from "node:timers/promises"
import { request } from "undici"
import type { ServiceEntry } from "../lib/gateway.ts"
import { idleOver } from "../lib/measure.ts"
import { stopChild } from "../lib/processes.ts"
import { fmt } from "../lib/report.ts"
import type { Scenario } from "../lib/scenario.ts"

const settings = (quick: boolean) => ({ services: 100, idleSeconds: quick ? 4 : 10 })

export const idleServices: Scenario = {
  name: "idleServices",
  gateway: "own",
  run: async ({ quick, upstream, headers, gateway: shared, port, launchGateway, log }) => {
    const s = settings(quick)
    log(`▸ 6. scale: ${s.services} services, idle ${s.idleSeconds} s`)
    const ids = Array.from({ length: s.services }, (_, i) => `svc${String(i).padStart(3, "0")}`)
    const services: Record<string, ServiceEntry> = Object.fromEntries(
      ids.map((id) => [id, { base_url: upstream.url, health_url: `${upstream.url}/health`, idle_timeout_ms: 300000 }])
    )
    const gateway = await launchGateway("gateway-scale", await port("gateway-scale"), { services })
    const launchMs = gateway.launchMs
    await sleep(500)
    const coldIdle = await idleOver(gateway.child.pid, s.idleSeconds * 1000)
    log(
      `  launch → /healthz ${fmt(launchMs, 0)} ms; cold idle: ${coldIdle.cpuPercentOfCore} % of a core, ${coldIdle.rssMiB} MiB`
    )
    const woken = await Promise.all(
      ids.map(async (id) => {
        const response = await request(`${gateway.url}/services/${id}/json`, { headers })
        await response.body.dump()
        return response.statusCode
      })
    )
    if (woken.some((status) => status !== 200)) throw new Error(`waking 100 services: ${woken.join(",")}`)
    await sleep(500)
    const hotIdle = await idleOver(gateway.child.pid, s.idleSeconds * 1000)
    log(`  all ${ids.length} hot, idle: ${hotIdle.cpuPercentOfCore} % of a core, ${hotIdle.rssMiB} MiB`)
    await stopChild(gateway.child)
    const scale = { services: ids.length, launchMs: Math.round(launchMs), coldIdle, hotIdle }

    return {
      results: { scale },
      rows: [
        {
          measure: `6. ${scale.services} services configured, idle ${s.idleSeconds} s`,
          gateway: `${fmt(coldIdle.cpuPercentOfCore, 1)} % of a core, ${fmt(coldIdle.rssMiB, 0)} MiB RSS`
        },
        {
          measure: `   same, all ${scale.services} hot, idle ${s.idleSeconds} s`,
          gateway: `${fmt(hotIdle.cpuPercentOfCore, 1)} % of a core, ${fmt(hotIdle.rssMiB, 0)} MiB RSS`
        },
        {
          measure: "   process launch → /healthz answering",
          gateway: `${scale.launchMs} ms (${scale.services} services); ${Math.round(shared.launchMs)} ms (${shared.services} service${shared.services === 1 ? "" : "s"})`
        }
      ],
      bars: [
        {
          line: "6",
          bar: "100 idle services ≤ 1 % of a core",
          figure: `${fmt(coldIdle.cpuPercentOfCore)} %`,
          met: coldIdle.cpuPercentOfCore <= 1
        },
        {
          line: "6",
          bar: "100 idle services RSS ≤ 100 MiB",
          figure: `${fmt(coldIdle.rssMiB, 0)} MiB`,
          met: coldIdle.rssMiB <= 100
        },
        {
          line: "6",
          bar: "listening ≤ 1.5 s after launch",
          figure: `${scale.launchMs} ms`,
          met: scale.launchMs <= 1500
        }
      ]
    }
  }
}
