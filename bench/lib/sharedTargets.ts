/**
 * The targets the shared scenarios measure, side by side: the plain upstream (direct), the reference proxy, nginx
 * when installed, and the gateway in front of the upstream as its external service `direct`, plus whatever services
 * the selected scenarios add to that gateway's config.
 */
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { Agent, request } from "undici"
import { type ConfigPart, type Gateway, gatewayLauncher, HEADERS, mergeConfigParts } from "./gateway.ts"
import { nginxBinary, startNginx, startReference, startUpstream } from "./launch.ts"
import { idleOver, type Target } from "./measure.ts"
import { namedPorts, spawnedStillRunning, stopChild, waitForHttp } from "./processes.ts"
import { fmt } from "./report.ts"
import type { Bench, Scenario, Setup } from "./scenario.ts"

/** What the shared gateway keeps on while measured, checked before anything is. */
export interface Sanity {
  requestIdHeader?: boolean
  authEnforced?: boolean
  survivesClientAborts?: boolean
}

export const startShared = async (options: {
  readonly quick: boolean
  readonly dir: string
  readonly entry: ReadonlyArray<string>
  readonly log: (message: string) => void
  readonly scenarios: ReadonlyArray<Scenario>
}) => {
  const { log } = options
  const port = namedPorts()
  const file = (name: string) => join(options.dir, name)
  const launchGateway = gatewayLauncher(options.entry, file)

  log("▸ starting upstream, reference proxy, nginx (if installed), gateway")
  const upstreamPort = await port("upstream")
  const upstream = await startUpstream(upstreamPort)
  const reference = await startReference(upstreamPort, await port("reference"))
  const nginxPath = nginxBinary()
  const nginxPort = await port("nginx")
  const nginx = nginxPath === undefined ? undefined : await startNginx(nginxPath, options.dir, upstreamPort, nginxPort)
  if (nginx === undefined) log("  nginx is not installed: its column is skipped (apt-get install nginx to add it)")

  const setup: Setup = {
    quick: options.quick,
    port,
    file,
    upstream: { url: `http://127.0.0.1:${upstreamPort}`, port: upstreamPort, pid: upstream.pid },
    log
  }
  const direct: ConfigPart = {
    services: {
      direct: {
        base_url: setup.upstream.url,
        health_url: `${setup.upstream.url}/health`,
        idle_timeout_ms: 0,
        queue_size: 1000
      }
    }
  }
  const parts = await Promise.all(options.scenarios.flatMap((s) => (s.config === undefined ? [] : [s.config(setup)])))
  const gateway = await launchGateway("gateway", await port("gateway"), mergeConfigParts([direct, ...parts]))
  // The external service's first request runs its readiness check; everything after is the hot path.
  await waitForHttp(`${gateway.url}/services/direct/health`, gateway.child, { headers: HEADERS })

  const targets: Array<Target> = [
    { name: "direct", origin: setup.upstream.url, prefix: "", pid: upstream.pid },
    { name: "reference", origin: `http://127.0.0.1:${await port("reference")}`, prefix: "", pid: reference.pid },
    ...(nginx === undefined
      ? []
      : [{ name: "nginx", origin: `http://127.0.0.1:${nginxPort}`, prefix: "", pid: nginx.pid }]),
    { name: "gateway", origin: gateway.url, prefix: "/services/direct", pid: gateway.child.pid }
  ]
  const agent = new Agent({ keepAliveTimeout: 30_000, connections: 16 })
  const bench: Bench = {
    ...setup,
    headers: HEADERS,
    agent,
    targets,
    target: (name) => {
      const found = targets.find((t) => t.name === name)
      if (found === undefined) throw new Error(`bench: no target ${name}`)
      return found
    },
    withNginx: nginx !== undefined,
    gateway,
    launchGateway
  }
  const sanity = await checkSanity(bench)
  log(
    `  gateway up in ${fmt(gateway.launchMs, 0)} ms; x-request-id: ${sanity.requestIdHeader}; auth: ${sanity.authEnforced}`
  )
  return { bench, sanity, nginxPath }
}

/** Every target answers the same thing, and the gateway keeps its behaviour on (request ids, auth). */
const checkSanity = async (bench: Bench): Promise<Sanity> => {
  const { agent, gateway } = bench
  const sanity: Sanity = {}
  for (const target of bench.targets) {
    const response = await request(`${target.origin}${target.prefix}/json`, { headers: HEADERS, dispatcher: agent })
    const body = await response.body.text()
    if (response.statusCode !== 200 || !body.includes('"hello"')) {
      throw new Error(`${target.name}: /json answered ${response.statusCode} ${body}`)
    }
    if (target.name === "gateway") sanity.requestIdHeader = response.headers["x-request-id"] !== undefined
  }
  const unauthenticated = await request(`${gateway.url}/services/direct/json`, { dispatcher: agent })
  await unauthenticated.body.dump()
  sanity.authEnforced = unauthenticated.statusCode === 401

  // Clients that leave, before the response head and in the middle of a stream, must not take the gateway down
  // (autocannon leaves like this at the end of every run).
  const leaveEarly = await request(`${gateway.url}/services/direct/ndjson?lines=3&interval=400`, {
    headers: HEADERS,
    dispatcher: agent,
    signal: AbortSignal.timeout(100)
  }).catch((error: unknown) => error)
  if (!(leaveEarly instanceof Error)) throw new Error("expected the early client abort to abort the request")
  const leaveMidway = await request(`${gateway.url}/services/direct/ndjson?lines=20&interval=20`, {
    headers: HEADERS,
    dispatcher: agent
  })
  for await (const _chunk of leaveMidway.body) break
  await sleep(500)
  if (gateway.child.process.exitCode !== null) {
    throw new Error("the gateway exited after a client aborted its request (its output is above)")
  }
  await waitForHttp(`${gateway.url}/healthz`, gateway.child, { timeoutMs: 3_000 })
  sanity.survivesClientAborts = true
  return sanity
}

/**
 * Stops the shared gateway (SIGTERM), after measuring it idle when `measureIdle` (every service configured, `direct`
 * hot), and warns about any upstream it left running.
 */
export const stopShared = async (gateway: Gateway, options: { measureIdle: boolean; log: (m: string) => void }) => {
  let idle: Awaited<ReturnType<typeof idleOver>> | undefined
  if (options.measureIdle) {
    await sleep(1_000)
    idle = await idleOver(gateway.child.pid, 3_000)
  }
  await stopChild(gateway.child)
  const left = spawnedStillRunning()
  if (left.length > 0) {
    options.log(`  WARNING: the gateway left ${left.length} upstream process(es) running after SIGTERM`)
  }
  return idle
}
