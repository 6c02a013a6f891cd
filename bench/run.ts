// `npm run bench`: the gateway against a plain upstream, a minimal reference proxy and (when installed) nginx, all
// on 127.0.0.1, measured the same way and interleaved. Prints markdown tables and writes bench/results/latest.json.
//   npm run bench [-- --quick] [-- --tsx]
//     --quick: shorter runs, for trying the bench itself; figures are rougher.
//     --tsx: run the gateway's TypeScript sources through tsx (`npm run dev`) instead of the bundle `npm start` runs.
// The gateway runs as its own process, as `npm start` runs it (`node scripts/build.mjs`, then `node dist/main.mjs`,
// a real config file) with log level `error`,
// so logging stays out of the measurements. Extra node flags for it (e.g. a CPU profile) can be passed with
// BENCH_GATEWAY_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"; BENCH_GATEWAY_ROOT=/other/checkout benchmarks the
// gateway of another checkout (e.g. a branch) with this bench.
import { execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { cpus, loadavg, tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { Agent, Pool, request } from "undici"
import {
  downloadRun,
  getJson,
  interleaved,
  latencyRun,
  MiB,
  median,
  type StreamRun,
  streamRun,
  type Target,
  type ThroughputRun,
  throughputRun,
  uploadRun
} from "./lib/measure.ts"
import {
  cpuMs,
  freePort,
  killEverythingNow,
  machineBusyPercent,
  now,
  rssMiB,
  rssSampler,
  startChild,
  stopChild,
  stopEverything,
  trackMarks,
  waitForHttp
} from "./lib/processes.ts"
import { type Bar, barTable, fmt, fmtInt, type Row, ratio, table } from "./lib/report.ts"

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const BENCH = join(ROOT, "bench")
const UPSTREAM = join(BENCH, "upstream.mjs")
const REFERENCE = join(BENCH, "reference-proxy.mjs")
const NODE = process.execPath
const GATEWAY_ROOT = process.env.BENCH_GATEWAY_ROOT ?? ROOT

const quick = process.argv.includes("--quick")
const viaTsx = process.argv.includes("--tsx")
const settings = {
  throughput: {
    connections: 50,
    warmupSeconds: quick ? 1 : 2,
    // Short rounds, many of them, interleaved: background load on a shared machine hits every target alike.
    rounds: quick ? 2 : 6,
    secondsPerRound: 1.5
  },
  latency: { warmup: quick ? 100 : 300, requests: quick ? 500 : 2_000 },
  streaming: { lines: 50, intervalMs: 20, reps: quick ? 3 : 5, extraTtfbReps: quick ? 5 : 20 },
  bulk: { bytes: 256 * MiB, reps: quick ? 2 : 4, bigBytes: 1024 * MiB },
  cold: { bootDelaysMs: quick ? [400, 700, 1000, 1300, 1600] : [350, 500, 650, 800, 950, 1100, 1250], herd: 1_000 },
  scale: { services: 100, idleSeconds: quick ? 4 : 10 }
}
const API_KEY = "bench-key-0123456789abcdef"
/** Sent to every target alike: the gateway needs it when auth is on; the others pass it on or ignore it. */
const HEADERS = { "x-api-key": API_KEY, accept: "application/json" }
const GATEWAY_NODE_ARGS = (process.env.BENCH_GATEWAY_NODE_ARGS ?? "").split(" ").filter((arg) => arg !== "")

const log = (message: string) => process.stderr.write(`${message}\n`)
const round1 = (value: number) => Math.round(value * 10) / 10
const round3 = (value: number) => Math.round(value * 1000) / 1000

// ---------------------------------------------------------------------------
// Starting things
// ---------------------------------------------------------------------------

const startUpstream = async (port: number) => {
  const child = startChild("upstream", NODE, [UPSTREAM, "--port", String(port)])
  await waitForHttp(`http://127.0.0.1:${port}/health`, child)
  return child
}

const startReference = async (upstreamPort: number, port: number) => {
  const child = startChild("reference", NODE, [
    REFERENCE,
    "--upstream",
    `http://127.0.0.1:${upstreamPort}`,
    "--port",
    String(port)
  ])
  await waitForHttp(`http://127.0.0.1:${port}/health`, child)
  return child
}

const nginxBinary = () => {
  try {
    return execFileSync("sh", ["-c", "command -v nginx"], { encoding: "utf8" }).trim() || undefined
  } catch {
    return undefined
  }
}

/** nginx as a plain keep-alive reverse proxy: one worker (like one Node process), no buffering, no access log. */
const startNginx = async (binary: string, dir: string, upstreamPort: number, port: number) => {
  const prefix = join(dir, "nginx")
  mkdirSync(prefix, { recursive: true })
  const conf = join(prefix, "nginx.conf")
  writeFileSync(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  upstream bench_upstream {
    server 127.0.0.1:${upstreamPort};
    keepalive 256;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      client_max_body_size 0;
      proxy_read_timeout 300s;
    }
  }
}
`
  )
  const child = startChild("nginx", binary, ["-e", `${prefix}/error.log`, "-p", prefix, "-c", conf])
  await waitForHttp(`http://127.0.0.1:${port}/health`, child)
  return child
}

const yamlString = (value: string) => JSON.stringify(value)

/** The bundle `npm start` runs: built once per run by the project's own build script, outside the measurements. */
const bundleGateway = () => {
  execFileSync(NODE, [join(GATEWAY_ROOT, "scripts", "build.mjs")], {
    cwd: GATEWAY_ROOT,
    stdio: ["ignore", "inherit", "inherit"]
  })
  return join(GATEWAY_ROOT, "dist", "main.mjs")
}

let gatewayEntry: ReadonlyArray<string> = ["--import", "tsx", "src/main.ts"]
/** The run's temp directory (configs, marks files, nginx prefix), removed on the way out. */
let workDir: string | undefined

const launchGateway = async (name: string, configPath: string, port: number) => {
  const started = now()
  const child = startChild(name, NODE, [...GATEWAY_NODE_ARGS, ...gatewayEntry], {
    cwd: GATEWAY_ROOT,
    env: {
      ...process.env,
      HESTIA_CONFIG: configPath,
      HESTIA_HOST: "127.0.0.1",
      HESTIA_PORT: String(port),
      HESTIA_LOG_LEVEL: "error"
    }
  })
  const answered = await waitForHttp(`http://127.0.0.1:${port}/healthz`, child, { everyMs: 5 })
  return { child, launchMs: answered - started }
}

// ---------------------------------------------------------------------------
// Upstream marks (bench/upstream.mjs --marks) and the control API
// ---------------------------------------------------------------------------

interface Mark {
  readonly event: "spawned" | "listening" | "health"
  readonly pid: number
  readonly t: number
}

const readMarks = (file: string): Array<Mark> => {
  try {
    return readFileSync(file, "utf8")
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as Mark)
  } catch {
    return []
  }
}

const statusOf = async (gateway: string, serviceId: string) => {
  const answer = await getJson<{ state?: string }>(`${gateway}/v1/services/${serviceId}/status`, HEADERS)
  if (answer.status !== 200)
    throw new Error(`status of ${serviceId}: HTTP ${answer.status} ${JSON.stringify(answer.body)}`)
  return answer.body.state
}

const waitForState = async (gateway: string, serviceId: string, state: string, timeoutMs = 15_000) => {
  const deadline = now() + timeoutMs
  for (;;) {
    const current = await statusOf(gateway, serviceId)
    if (current === state) return
    if (now() > deadline) throw new Error(`${serviceId} still ${current}, not ${state}, after ${timeoutMs} ms`)
    await sleep(20)
  }
}

/** Stop through the API (202) and wait for `cold`. */
const makeCold = async (gateway: string, serviceId: string) => {
  const state = await statusOf(gateway, serviceId)
  if (state === "cold") return
  if (state === "hot" || state === "starting") {
    const answer = await getJson(`${gateway}/v1/services/${serviceId}/stop`, HEADERS, "POST")
    if (answer.status !== 202 && answer.status !== 200) throw new Error(`stop ${serviceId}: HTTP ${answer.status}`)
  }
  await waitForState(gateway, serviceId, "cold")
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

const main = async () => {
  const began = now()
  const dir = mkdtempSync(join(tmpdir(), "hestia-bench-"))
  workDir = dir
  const agent = new Agent({ keepAliveTimeout: 30_000, connections: 16 })
  try {
    const [upstreamPort, referencePort, nginxPort, gatewayPort, coldPort, herdPort, scalePort] = await Promise.all(
      Array.from({ length: 7 }, () => freePort())
    )

    const busyBefore = await machineBusyPercent(2_000)
    const loadBefore = loadavg()[0]!
    log(`▸ machine before the run: ${fmt(busyBefore, 0)} % busy, load average ${fmt(loadBefore, 2)}`)
    if (!viaTsx) {
      log("▸ building the gateway as npm start does (scripts/build.mjs)")
      gatewayEntry = [bundleGateway()]
    }
    log("▸ starting upstream, reference proxy, nginx (if installed), gateway")
    const upstream = await startUpstream(upstreamPort!)
    const reference = await startReference(upstreamPort!, referencePort!)
    const nginxPath = nginxBinary()
    const nginx = nginxPath === undefined ? undefined : await startNginx(nginxPath, dir, upstreamPort!, nginxPort!)
    if (nginx === undefined) log("  nginx is not installed: its column is skipped (apt-get install nginx to add it)")

    const coldMarks = join(dir, "cold.marks")
    const herdMarks = join(dir, "herd.marks")
    const bootFile = join(dir, "cold.boot-ms")
    writeFileSync(bootFile, "500")
    trackMarks(coldMarks)
    trackMarks(herdMarks)
    const upstreamCommand = (port: number, marks: string, boot: Array<string>) =>
      `[${[NODE, UPSTREAM, "--port", String(port), ...boot, "--marks", marks].map(yamlString).join(", ")}]`
    const configPath = join(dir, "gateway.yml")
    writeFileSync(
      configPath,
      `# written by bench/run.ts
server: { host: 127.0.0.1, port: ${gatewayPort} }
database: ${yamlString(join(dir, "hestia.db"))}
log_level: error
auth:
  api_keys: [${yamlString(API_KEY)}]
services:
  direct:
    base_url: http://127.0.0.1:${upstreamPort}
    health_url: http://127.0.0.1:${upstreamPort}/health
    idle_timeout_ms: 0
    queue_size: 1000
  cold:
    base_url: http://127.0.0.1:${coldPort}
    health_url: http://127.0.0.1:${coldPort}/health
    command: ${upstreamCommand(coldPort!, coldMarks, ["--boot-ms-file", bootFile])}
    idle_timeout_ms: 0
    queue_size: 2000
    request_timeout_seconds: 60
    retry_count: 0
    stop_grace_ms: 2000
  herd:
    base_url: http://127.0.0.1:${herdPort}
    health_url: http://127.0.0.1:${herdPort}/health
    command: ${upstreamCommand(herdPort!, herdMarks, ["--boot-ms", "500"])}
    idle_timeout_ms: 0
    queue_size: 2000
    request_timeout_seconds: 60
    retry_count: 0
    stop_grace_ms: 2000
`
    )
    const { child: gateway, launchMs: mainLaunchMs } = await launchGateway("gateway", configPath, gatewayPort!)
    const gatewayUrl = `http://127.0.0.1:${gatewayPort}`
    // The external service's first request runs its readiness check; everything after is the hot path.
    await waitForHttp(`${gatewayUrl}/services/direct/health`, gateway, { headers: HEADERS })

    const targets: Array<Target> = [
      { name: "direct", origin: `http://127.0.0.1:${upstreamPort}`, prefix: "", pid: upstream.pid },
      { name: "reference", origin: `http://127.0.0.1:${referencePort}`, prefix: "", pid: reference.pid },
      ...(nginx === undefined
        ? []
        : [{ name: "nginx", origin: `http://127.0.0.1:${nginxPort}`, prefix: "", pid: nginx.pid }]),
      { name: "gateway", origin: gatewayUrl, prefix: "/services/direct", pid: gateway.pid }
    ]

    // Every target answers the same thing, and the gateway keeps its behaviour on (request ids, auth).
    const sanity: Record<string, unknown> = {}
    for (const target of targets) {
      const response = await request(`${target.origin}${target.prefix}/json`, { headers: HEADERS, dispatcher: agent })
      const body = await response.body.text()
      if (response.statusCode !== 200 || !body.includes('"hello"')) {
        throw new Error(`${target.name}: /json answered ${response.statusCode} ${body}`)
      }
      if (target.name === "gateway") sanity.requestIdHeader = response.headers["x-request-id"] !== undefined
    }
    const unauthenticated = await request(`${gatewayUrl}/services/direct/json`, { dispatcher: agent })
    await unauthenticated.body.dump()
    sanity.authEnforced = unauthenticated.statusCode === 401

    // Clients that leave, before the response head and in the middle of a stream, must not take the gateway down
    // (autocannon leaves like this at the end of every run).
    const leaveEarly = await request(`${gatewayUrl}/services/direct/ndjson?lines=3&interval=400`, {
      headers: HEADERS,
      dispatcher: agent,
      signal: AbortSignal.timeout(100)
    }).catch((error: unknown) => error)
    if (!(leaveEarly instanceof Error)) throw new Error("expected the early client abort to abort the request")
    const leaveMidway = await request(`${gatewayUrl}/services/direct/ndjson?lines=20&interval=20`, {
      headers: HEADERS,
      dispatcher: agent
    })
    for await (const _chunk of leaveMidway.body) break
    await sleep(500)
    if (gateway.process.exitCode !== null) {
      throw new Error("the gateway exited after a client aborted its request (its output is above)")
    }
    await waitForHttp(`${gatewayUrl}/healthz`, gateway, { timeoutMs: 3_000 })
    sanity.survivesClientAborts = true
    log(
      `  gateway up in ${fmt(mainLaunchMs, 0)} ms; x-request-id: ${sanity.requestIdHeader}; auth: ${sanity.authEnforced}`
    )

    // -----------------------------------------------------------------------
    // 1. Throughput
    // -----------------------------------------------------------------------
    log(`▸ 1. throughput: ${settings.throughput.connections} connections, small JSON GET`)
    for (const target of targets) {
      await throughputRun(target, { connections: 50, seconds: settings.throughput.warmupSeconds, headers: HEADERS })
    }
    const throughputRuns = new Map<string, Array<ThroughputRun>>(targets.map((t) => [t.name, []]))
    for (const { round, target } of interleaved(targets, settings.throughput.rounds)) {
      const run = await throughputRun(target, {
        connections: settings.throughput.connections,
        seconds: settings.throughput.secondsPerRound,
        headers: HEADERS
      })
      throughputRuns.get(target.name)!.push(run)
      log(
        `  round ${round + 1} ${target.name}: ${fmtInt(run.ok / run.seconds)} req/s (errors ${run.errors}, non-2xx ${run.non2xx})`
      )
    }
    const throughput: Record<string, ThroughputFigures> = Object.fromEntries(
      targets.map((target) => {
        const runs = throughputRuns.get(target.name)!
        const ok = runs.reduce((sum, run) => sum + run.ok, 0)
        const seconds = runs.reduce((sum, run) => sum + run.seconds, 0)
        const cpu = runs.reduce((sum, run) => sum + run.cpuMs, 0)
        return [
          target.name,
          {
            requestsPerSecond: Math.round(ok / seconds),
            perRoundRequestsPerSecond: runs.map((run) => Math.round(run.ok / run.seconds)),
            requests: ok,
            seconds: round1(seconds),
            errors: runs.reduce((sum, run) => sum + run.errors, 0),
            non2xx: runs.reduce((sum, run) => sum + run.non2xx, 0),
            cpuUsPerRequest: round1((cpu * 1000) / ok),
            cpuPercentOfCore: round1((cpu / (seconds * 1000)) * 100),
            latencyP50Ms: median(runs.map((run) => run.latencyP50Ms)),
            latencyP99Ms: Math.max(...runs.map((run) => run.latencyP99Ms))
          }
        ]
      })
    )

    // Rounds ran back to back, so the ratio within a round sees the same background load on this shared machine:
    // the ratio reported (and judged) is the median over rounds of the per-round ratio.
    const pairedRatio = (a: string, b: string) => {
      const x = throughput[a]?.perRoundRequestsPerSecond
      const y = throughput[b]?.perRoundRequestsPerSecond
      return x === undefined || y === undefined ? undefined : median(x.map((value, i) => value / y[i]!))
    }
    const throughputRatios = {
      gatewayToReference: pairedRatio("gateway", "reference"),
      gatewayToDirect: pairedRatio("gateway", "direct"),
      ...(nginx === undefined ? {} : { nginxToReference: pairedRatio("nginx", "reference") })
    }
    const throughputErrors = targets.filter((t) => throughput[t.name]!.errors + throughput[t.name]!.non2xx > 0)
    if (throughputErrors.length > 0) {
      log(`  WARNING: errors or non-2xx answers from ${throughputErrors.map((t) => t.name).join(", ")}`)
    }
    log(
      `  per-round gateway / reference: ${throughput.gateway!.perRoundRequestsPerSecond.map((v, i) => (v / throughput.reference!.perRoundRequestsPerSecond[i]!).toFixed(2)).join(" ")}`
    )

    // -----------------------------------------------------------------------
    // 2. Latency at one connection
    // -----------------------------------------------------------------------
    log("▸ 2. latency at 1 connection")
    const latency = await latencyRun(targets, { ...settings.latency, headers: HEADERS })
    if (latency.failures > 0) throw new Error(`latency run: ${latency.failures} non-200 answers`)
    const latencyOf = (name: string) => latency.byTarget.find((entry) => entry.name === name)!
    const added = {
      p50: latencyOf("gateway").p50 - latencyOf("direct").p50,
      p99: latencyOf("gateway").p99 - latencyOf("direct").p99
    }
    for (const entry of latency.byTarget)
      log(`  ${entry.name}: p50 ${fmt(entry.p50, 3)} ms, p99 ${fmt(entry.p99, 3)} ms`)

    // -----------------------------------------------------------------------
    // 3. Streaming
    // -----------------------------------------------------------------------
    log(`▸ 3. streaming: ${settings.streaming.lines} NDJSON lines ${settings.streaming.intervalMs} ms apart`)
    const streamRuns = new Map<string, Array<StreamRun>>(targets.map((t) => [t.name, []]))
    for (const { target } of interleaved(targets, settings.streaming.reps)) {
      const run = await streamRun(agent, target, { ...settings.streaming, headers: HEADERS })
      if (run.status !== 200 || run.lines !== settings.streaming.lines) {
        throw new Error(`${target.name}: stream answered ${run.status} with ${run.lines} lines`)
      }
      streamRuns.get(target.name)!.push(run)
    }
    // The first byte of a 50-line stream is the first line of any such stream: more (short) samples for the TTFB,
    // whose few-ms differences a scheduler hiccup on a loaded machine can otherwise decide.
    const ttfbRuns = new Map<string, Array<number>>(
      targets.map((t) => [t.name, streamRuns.get(t.name)!.map((r) => r.ttfbMs)])
    )
    for (const { target } of interleaved(targets, settings.streaming.extraTtfbReps)) {
      const run = await streamRun(agent, target, {
        lines: 2,
        intervalMs: settings.streaming.intervalMs,
        headers: HEADERS
      })
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
      const s = streaming[target.name]!
      log(`  ${target.name}: TTFB ${fmt(s.ttfbMs, 2)} ms, total ${fmt(s.totalMs, 1)} ms, ${s.chunks} chunks`)
    }

    // -----------------------------------------------------------------------
    // 4. Bulk, and memory over a 1 GiB body
    // -----------------------------------------------------------------------
    log(`▸ 4. bulk: ${settings.bulk.bytes / MiB} MiB downloads; RSS over ${settings.bulk.bigBytes / MiB} MiB bodies`)
    const bulkRuns = new Map<string, Array<number>>(targets.map((t) => [t.name, []]))
    for (const { target } of interleaved(targets, settings.bulk.reps)) {
      const run = await downloadRun(agent, target, settings.bulk.bytes, HEADERS)
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
    const pairedMedian = (x: ReadonlyArray<number>, y: ReadonlyArray<number>) => median(x.map((v, i) => v / y[i]!))
    const bulkRatios = {
      gatewayToReference: pairedMedian(bulkRuns.get("gateway")!, bulkRuns.get("reference")!),
      gatewayToDirect: pairedMedian(bulkRuns.get("gateway")!, bulkRuns.get("direct")!)
    }

    const memoryOver = async (target: Target) => {
      await sleep(500)
      const before = rssMiB(target.pid)
      const sampler = rssSampler(target.pid)
      const down = await downloadRun(agent, target, settings.bulk.bigBytes, HEADERS)
      const up = await uploadRun(agent, target, settings.bulk.bigBytes, HEADERS)
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
    const memory = {
      reference: await memoryOver(targets.find((t) => t.name === "reference")!),
      gateway: await memoryOver(targets.find((t) => t.name === "gateway")!)
    }

    // -----------------------------------------------------------------------
    // 5. Cold start: wake-up latency, and a thundering herd
    // -----------------------------------------------------------------------
    log("▸ 5. cold start: upstream spawned by the gateway, healthy after a known delay")
    const coldRuns: Array<Record<string, number>> = []
    for (const bootMs of settings.cold.bootDelaysMs) {
      await makeCold(gatewayUrl, "cold")
      writeFileSync(bootFile, String(bootMs))
      const seen = readMarks(coldMarks).length
      const sent = now()
      const response = await request(`${gatewayUrl}/services/cold/json`, { headers: HEADERS, dispatcher: agent })
      const answered = now()
      const body = await response.body.text()
      if (response.statusCode !== 200) throw new Error(`cold start answered ${response.statusCode}: ${body}`)
      const marks = readMarks(coldMarks).slice(seen)
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
      coldRuns.push(run)
      log(
        `  boot ${bootMs} ms: wake-up ${fmt(run.wakeMs)} ms (probe lag ${fmt(run.probeLagMs)} + hand-off ${fmt(run.handoffMs)}), request → response ${fmt(run.requestToResponseMs)} ms`
      )
    }
    await makeCold(gatewayUrl, "cold")
    const coldStart = {
      bootDelaysMs: settings.cold.bootDelaysMs,
      wakeP50Ms: round1(median(coldRuns.map((r) => r.wakeMs!))),
      wakeMaxMs: round1(Math.max(...coldRuns.map((r) => r.wakeMs!))),
      probeLagP50Ms: round1(median(coldRuns.map((r) => r.probeLagMs!))),
      handoffP50Ms: round1(median(coldRuns.map((r) => r.handoffMs!))),
      runs: coldRuns
    }

    log(`▸ 5b. ${settings.cold.herd} concurrent requests to a cold service`)
    await makeCold(gatewayUrl, "herd")
    const herdSeen = readMarks(herdMarks).filter((m) => m.event === "spawned").length
    const herdPool = new Pool(gatewayUrl, { connections: settings.cold.herd, pipelining: 1 })
    const herdStarted = now()
    const outcomes = await Promise.allSettled(
      Array.from({ length: settings.cold.herd }, async () => {
        const response = await herdPool.request({ method: "GET", path: "/services/herd/json", headers: HEADERS })
        return { status: response.statusCode, body: await response.body.text() }
      })
    )
    const herdMs = now() - herdStarted
    await herdPool.close()
    const errorKinds: Record<string, number> = {}
    const pids = new Set<number>()
    let herdOk = 0
    for (const outcome of outcomes) {
      if (outcome.status === "fulfilled" && outcome.value.status === 200) {
        herdOk++
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
      requests: settings.cold.herd,
      ok: herdOk,
      errors: settings.cold.herd - herdOk,
      errorKinds,
      starts: readMarks(herdMarks).filter((m) => m.event === "spawned").length - herdSeen,
      upstreamPidsAnswering: pids.size,
      allAnsweredMs: Math.round(herdMs)
    }
    log(
      `  starts ${herd.starts}, ok ${herd.ok}, errors ${herd.errors} ${JSON.stringify(errorKinds)}, ${herd.allAnsweredMs} ms`
    )
    await makeCold(gatewayUrl, "herd")

    const mainIdle = await (async () => {
      // The main gateway, every service configured and one hot, idle: a second idle figure for free.
      await sleep(1_000)
      const cpu0 = cpuMs(gateway.pid)
      const t0 = now()
      await sleep(3_000)
      return {
        cpuPercentOfCore: round1(((cpuMs(gateway.pid) - cpu0) / (now() - t0)) * 100),
        rssMiB: round1(rssMiB(gateway.pid))
      }
    })()
    await stopChild(gateway)
    const left = readMarks(coldMarks)
      .concat(readMarks(herdMarks))
      .filter((m) => m.event === "spawned")
      .filter((m) => {
        try {
          process.kill(m.pid, 0)
          return true
        } catch {
          return false
        }
      })
    if (left.length > 0) log(`  WARNING: the gateway left ${left.length} upstream process(es) running after SIGTERM`)

    // -----------------------------------------------------------------------
    // 6. Scale: 100 configured services
    // -----------------------------------------------------------------------
    log(`▸ 6. scale: ${settings.scale.services} services, idle ${settings.scale.idleSeconds} s`)
    const ids = Array.from({ length: settings.scale.services }, (_, i) => `svc${String(i).padStart(3, "0")}`)
    const scaleConfig = join(dir, "scale.yml")
    writeFileSync(
      scaleConfig,
      `# written by bench/run.ts
server: { host: 127.0.0.1, port: ${scalePort} }
database: ${yamlString(join(dir, "scale.db"))}
log_level: error
auth:
  api_keys: [${yamlString(API_KEY)}]
services:
${ids
  .map(
    (id) => `  ${id}:
    base_url: http://127.0.0.1:${upstreamPort}
    health_url: http://127.0.0.1:${upstreamPort}/health
    idle_timeout_ms: 300000
`
  )
  .join("")}`
    )
    const { child: scaleGateway, launchMs } = await launchGateway("gateway-scale", scaleConfig, scalePort!)
    const idleFor = async (pid: number) => {
      const cpu0 = cpuMs(pid)
      const t0 = now()
      await sleep(settings.scale.idleSeconds * 1000)
      return {
        cpuPercentOfCore: round1(((cpuMs(pid) - cpu0) / (now() - t0)) * 100),
        rssMiB: round1(rssMiB(pid))
      }
    }
    await sleep(500)
    const coldIdle = await idleFor(scaleGateway.pid)
    log(
      `  launch → /healthz ${fmt(launchMs, 0)} ms; cold idle: ${coldIdle.cpuPercentOfCore} % of a core, ${coldIdle.rssMiB} MiB`
    )
    const woken = await Promise.all(
      ids.map(async (id) => {
        const response = await request(`http://127.0.0.1:${scalePort}/services/${id}/json`, { headers: HEADERS })
        await response.body.dump()
        return response.statusCode
      })
    )
    if (woken.some((status) => status !== 200)) throw new Error(`waking 100 services: ${woken.join(",")}`)
    await sleep(500)
    const hotIdle = await idleFor(scaleGateway.pid)
    log(`  all ${ids.length} hot, idle: ${hotIdle.cpuPercentOfCore} % of a core, ${hotIdle.rssMiB} MiB`)
    await stopChild(scaleGateway)
    const scale = { services: ids.length, launchMs: Math.round(launchMs), coldIdle, hotIdle }

    // -----------------------------------------------------------------------
    // Report
    // -----------------------------------------------------------------------
    const withNginx = nginx !== undefined
    const per = <A>(values: Record<string, A>, pick: (value: A) => number) => mapPer(columns(values), pick)
    const rowOf = (
      measure: string,
      v: Columns<number>,
      show: (n: number | undefined) => string,
      ratios = true
    ): Row => ({
      measure,
      direct: show(v.direct),
      reference: show(v.reference),
      nginx: show(v.nginx),
      gateway: show(v.gateway),
      ...(ratios ? { vsReference: ratio(v.gateway, v.reference), vsDirect: ratio(v.gateway, v.direct) } : {})
    })
    const tp = per(throughput, (t) => t.requestsPerSecond)
    const lat = columns(Object.fromEntries(latency.byTarget.map((e) => [e.name, e])))
    const st = columns(streaming)
    const bk = per(bulk, (b) => b.mibPerSecond)
    const ms3 = (n: number | undefined) => (n === undefined ? "—" : `${fmt(n, 3)} ms`)
    const ms1 = (n: number | undefined) => (n === undefined ? "—" : `${fmt(n, 1)} ms`)
    const rows: Array<Row> = [
      {
        ...rowOf("1. throughput, small JSON, 50 conn (req/s; ratios: median of per-round ratios)", tp, fmtInt),
        vsReference: ratioText(throughputRatios.gatewayToReference),
        vsDirect: ratioText(throughputRatios.gatewayToDirect)
      },
      rowOf(
        "   CPU per request of the serving process (µs)",
        per(throughput, (t) => t.cpuUsPerRequest),
        (n) => fmt(n, 1)
      ),
      rowOf(
        "2. latency, 1 conn, p50",
        mapPer(lat, (e) => e.p50),
        ms3
      ),
      rowOf(
        "   latency, 1 conn, p99",
        mapPer(lat, (e) => e.p99),
        ms3
      ),
      {
        measure: "   added over direct, p50 / p99",
        reference: `${fmt(latencyOf("reference").p50 - latencyOf("direct").p50, 3)} / ${fmt(latencyOf("reference").p99 - latencyOf("direct").p99, 3)} ms`,
        ...(withNginx
          ? {
              nginx: `${fmt(latencyOf("nginx").p50 - latencyOf("direct").p50, 3)} / ${fmt(latencyOf("nginx").p99 - latencyOf("direct").p99, 3)} ms`
            }
          : {}),
        gateway: `${fmt(added.p50, 3)} / ${fmt(added.p99, 3)} ms`
      },
      rowOf(
        `3. streaming TTFB (p50 of ${settings.streaming.reps + settings.streaming.extraTtfbReps} runs)`,
        mapPer(st, (s) => s.ttfbMs),
        (n) => (n === undefined ? "—" : `${fmt(n, 2)} ms`),
        false
      ),
      rowOf(
        "   streaming total, 50 lines × 20 ms",
        mapPer(st, (s) => s.totalMs),
        ms1,
        false
      ),
      rowOf(
        "   body chunks received (50 = line by line)",
        mapPer(st, (s) => s.chunks),
        fmtInt,
        false
      ),
      {
        ...rowOf("4. bulk download, 256 MiB (MiB/s, median; ratios: median of per-round ratios)", bk, fmtInt),
        vsReference: ratioText(bulkRatios.gatewayToReference),
        vsDirect: ratioText(bulkRatios.gatewayToDirect)
      },
      {
        measure: "   RSS before → peak → after 1 GiB down + 1 GiB up (MiB)",
        reference: `${memory.reference.beforeMiB} → ${memory.reference.peakMiB} → ${memory.reference.afterMiB}`,
        gateway: `${memory.gateway.beforeMiB} → ${memory.gateway.peakMiB} → ${memory.gateway.afterMiB}`
      },
      {
        measure: "5. cold wake-up p50: upstream listening → queued response",
        gateway: `${fmt(coldStart.wakeP50Ms)} ms (max ${fmt(coldStart.wakeMaxMs)})`
      },
      {
        measure: "   of which probe lag / hand-off after the healthy answer (p50)",
        gateway: `${fmt(coldStart.probeLagP50Ms)} / ${fmt(coldStart.handoffP50Ms)} ms`
      },
      {
        measure: `   ${herd.requests} concurrent requests to a cold service`,
        gateway: `${herd.starts} start(s), ${herd.errors} errors, all answered in ${herd.allAnsweredMs} ms`
      },
      {
        measure: `6. ${scale.services} services configured, idle ${settings.scale.idleSeconds} s`,
        gateway: `${fmt(coldIdle.cpuPercentOfCore, 1)} % of a core, ${fmt(coldIdle.rssMiB, 0)} MiB RSS`
      },
      {
        measure: `   same, all ${scale.services} hot, idle ${settings.scale.idleSeconds} s`,
        gateway: `${fmt(hotIdle.cpuPercentOfCore, 1)} % of a core, ${fmt(hotIdle.rssMiB, 0)} MiB RSS`
      },
      {
        measure: "   process launch → /healthz answering",
        gateway: `${scale.launchMs} ms (${scale.services} services); ${Math.round(mainLaunchMs)} ms (3 services)`
      }
    ]

    const ttfbDelta = st.gateway.ttfbMs - st.direct!.ttfbMs
    const bars: Array<Bar> = [
      {
        line: "1",
        bar: "throughput ≥ 0.9 × reference",
        figure: ratioText(throughputRatios.gatewayToReference),
        met: (throughputRatios.gatewayToReference ?? 0) >= 0.9 && throughputErrors.length === 0
      },
      { line: "2", bar: "added latency p50 ≤ 0.3 ms", figure: `${fmt(added.p50, 3)} ms`, met: added.p50 <= 0.3 },
      { line: "2", bar: "added latency p99 ≤ 1.5 ms", figure: `${fmt(added.p99, 3)} ms`, met: added.p99 <= 1.5 },
      {
        line: "3",
        bar: "streaming TTFB within 2 ms of direct",
        figure: `${fmt(ttfbDelta, 2)} ms`,
        met: ttfbDelta <= 2
      },
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
      },
      {
        line: "5",
        bar: "cold-start wake-up p50 ≤ 150 ms after the upstream turns healthy",
        figure: `${fmt(coldStart.wakeP50Ms)} ms`,
        met: coldStart.wakeP50Ms <= 150
      },
      {
        line: "5",
        bar: "1000 concurrent cold requests → exactly 1 start, 0 errors",
        figure: `${herd.starts} start(s), ${herd.errors} errors`,
        met: herd.starts === 1 && herd.errors === 0
      },
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

    const meta = {
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? "unknown",
      quick,
      nginx: nginx === undefined ? "not installed: skipped" : nginxPath,
      loadGenerator: "autocannon (in the bench process); latency, streaming and bulk with undici clients",
      gateway: `node ${gatewayEntry.join(" ")} in ${GATEWAY_ROOT}, log level error, auth configured (x-api-key)`,
      bundled: !viaTsx,
      sanity,
      mainGatewayIdle: mainIdle,
      machineBusyPercentBefore: round1(busyBefore),
      loadAverage: { before: loadBefore, after: loadavg()[0]! },
      note: "One run on a shared machine; the load generator, the proxy and the upstream share its cores.",
      durationSeconds: Math.round((now() - began) / 1000)
    }
    const report = [
      `## Hestia bench — ${meta.date.slice(0, 16).replace("T", " ")}, Node ${meta.node}, ${meta.cpus} × ${meta.cpuModel}${quick ? " (quick)" : ""}${viaTsx ? " (gateway run through tsx)" : ""}`,
      "",
      table(rows, withNginx),
      "",
      barTable(bars),
      "",
      `One run on a shared ${meta.cpus}-core machine; load generator, proxy and upstream share the cores. ${nginx === undefined ? "nginx not installed: skipped. " : ""}Gateway log level: error. Whole run: ${meta.durationSeconds} s. Machine before the run: ${fmt(busyBefore, 0)} % busy; load average ${fmt(loadBefore, 1)} before, ${fmt(meta.loadAverage.after, 1)} after${busyBefore > 15 ? " — other work was running: treat the figures, the throughput ratio above all, as rough" : ""}.`
    ].join("\n")
    process.stdout.write(`\n${report}\n`)

    const results = {
      meta,
      throughput,
      throughputRatios,
      latency: { byTarget: latency.byTarget, addedOverDirectMs: added },
      streaming,
      bulk,
      bulkRatios,
      memory,
      coldStart,
      herd,
      scale,
      bars,
      table: report
    }
    mkdirSync(join(BENCH, "results"), { recursive: true })
    // Variants get their own file, so latest.json is always a full run of the gateway as `npm start` runs it.
    const name = `latest${viaTsx ? "-tsx" : ""}${quick ? "-quick" : ""}.json`
    writeFileSync(join(BENCH, "results", name), `${JSON.stringify(results, null, 2)}\n`)
    log(`\nwrote bench/results/${name}`)
  } finally {
    await agent.close().catch(() => undefined)
    const leftovers = await stopEverything()
    if (leftovers.length > 0) log(`killed ${leftovers.length} leftover upstream process(es): ${leftovers.join(", ")}`)
    rmSync(dir, { recursive: true, force: true })
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

const ratioText = (value: number | undefined) => (value === undefined ? "—" : `${value.toFixed(2)}×`)

interface Columns<A> {
  readonly direct: A | undefined
  readonly reference: A | undefined
  readonly nginx: A | undefined
  readonly gateway: A
}

/** The four columns of the table from a record keyed by target name. */
const columns = <A>(values: Record<string, A>): Columns<A> => ({
  direct: values.direct,
  reference: values.reference,
  nginx: values.nginx,
  gateway: values.gateway!
})

/** The same four columns, each mapped. */
const mapPer = <A>(v: Columns<A>, pick: (value: A) => number): Columns<number> => ({
  direct: v.direct === undefined ? undefined : pick(v.direct),
  reference: v.reference === undefined ? undefined : pick(v.reference),
  nginx: v.nginx === undefined ? undefined : pick(v.nginx),
  gateway: pick(v.gateway)
})

process.on("exit", () => {
  killEverythingNow()
  // Also when a signal or an error cut the run short.
  if (workDir !== undefined) rmSync(workDir, { recursive: true, force: true })
})
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    log(`\n${signal}: stopping every process the bench started`)
    void stopEverything().finally(() => process.exit(130))
  })
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    log(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
    process.exitCode = 1
    // main's finally has stopped every child; the exit handler is the last resort.
    process.exit(1)
  }
)
