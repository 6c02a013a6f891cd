// `npm run bench`: the gateway against a plain upstream, a minimal reference proxy and (when installed) nginx, all
// on 127.0.0.1, measured the same way and interleaved. Prints markdown tables and writes bench/results/latest.json.
//   npm run bench [-- --quick] [-- --tsx] [-- --only <scenario>[,<scenario>]]
//     --quick: shorter runs, for trying the bench itself; figures are rougher.
//     --tsx: run the gateway's TypeScript sources through tsx (`npm run dev`) instead of the bundle `npm start` runs.
//     --only: run only these scenarios (names below); the results go to results/latest-only-<names>.json.
// The gateway runs as its own process, as `npm start` runs it (`node scripts/build.mjs`, then `node dist/main.mjs`,
// a real config file) with log level `error`, so logging stays out of the measurements. Extra node flags for it
// (e.g. a CPU profile) can be passed with BENCH_GATEWAY_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof";
// BENCH_GATEWAY_ROOT=/other/checkout benchmarks the gateway of another checkout (e.g. a branch) with this bench.
//
// Each scenario is one module of bench/scenarios/ (how its figures are taken, its rows and bars); this file only
// composes them: which run, in what order, the two tables and the results file.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { cpus, loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { gatewayEntry } from "./lib/gateway.ts"
import { round1 } from "./lib/measure.ts"
import { BENCH_DIR, GATEWAY_ROOT } from "./lib/paths.ts"
import { machineBusyPercent, now, stopEverything, stopEverythingOnExit } from "./lib/processes.ts"
import { barTable, fmt, table } from "./lib/report.ts"
import type { Outcome, Scenario } from "./lib/scenario.ts"
import { startShared, stopShared } from "./lib/sharedTargets.ts"
import { bulk } from "./scenarios/bulk.ts"
import { coldWakeup } from "./scenarios/coldWakeup.ts"
import { containerColdStartScenario } from "./scenarios/containerColdStart.ts"
import { herd } from "./scenarios/herd.ts"
import { idleServices } from "./scenarios/idleServices.ts"
import { latency } from "./scenarios/latency.ts"
import { modelSwap } from "./scenarios/modelSwap.ts"
import { strategyCalls } from "./scenarios/strategyCalls.ts"
import { streaming } from "./scenarios/streaming.ts"
import { throughput } from "./scenarios/throughput.ts"

/** Every scenario, in the order of the tables. The shared ones run first (in this order), then the `own` ones. */
const SCENARIOS: ReadonlyArray<Scenario> = [
  throughput,
  latency,
  streaming,
  bulk,
  coldWakeup,
  herd,
  modelSwap,
  idleServices,
  strategyCalls,
  containerColdStartScenario
]

const log = (message: string) => process.stderr.write(`${message}\n`)

const args = process.argv.slice(2)
const quick = args.includes("--quick")
const viaTsx = args.includes("--tsx")

/** `--only a,b` or `--only=a,b`: the scenarios named, in the tables' order; undefined: all of them. */
const onlyNames = (): ReadonlyArray<string> | undefined => {
  const at = args.findIndex((arg) => arg === "--only" || arg.startsWith("--only="))
  if (at === -1) return undefined
  const value = args[at]!.startsWith("--only=") ? args[at]!.slice("--only=".length) : args[at + 1]
  const names = (value ?? "").split(",").filter((name) => name !== "")
  const known = SCENARIOS.map((s) => s.name)
  const unknown = names.filter((name) => !known.includes(name))
  if (names.length === 0 || unknown.length > 0) {
    log(`bench: --only takes scenario names separated by commas, from: ${known.join(", ")}`)
    if (unknown.length > 0) log(`  unknown: ${unknown.join(", ")}`)
    process.exit(2)
  }
  return names
}
const only = onlyNames()
const selected = SCENARIOS.filter((s) => only === undefined || only.includes(s.name))

const main = async () => {
  const began = now()
  const dir = mkdtempSync(join(tmpdir(), "hestia-bench-"))
  stopEverythingOnExit(() => rmSync(dir, { recursive: true, force: true }))
  try {
    const busyBefore = await machineBusyPercent(2_000)
    const loadBefore = loadavg()[0]!
    log(`▸ machine before the run: ${fmt(busyBefore, 0)} % busy, load average ${fmt(loadBefore, 2)}`)
    if (!viaTsx) log("▸ building the gateway as npm start does (scripts/build.mjs)")
    const entry = gatewayEntry(viaTsx)

    const shared = selected.filter((s) => s.gateway === "shared")
    const own = selected.filter((s) => s.gateway === "own")
    const { bench, sanity, nginxPath } = await startShared({ quick, dir, entry, log, scenarios: shared })
    const outcomes: Array<Outcome> = []
    try {
      for (const scenario of shared) outcomes.push(await scenario.run(bench))
      // The shared gateway idle (every service configured, one hot) is a figure of the whole run only.
      const mainGatewayIdle = await stopShared(bench.gateway, { measureIdle: only === undefined, log })
      for (const scenario of own) outcomes.push(await scenario.run(bench))

      const rows = outcomes.flatMap((o) => o.rows)
      const bars = outcomes.flatMap((o) => o.bars)
      const meta = {
        date: new Date().toISOString(),
        node: process.version,
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? "unknown",
        quick,
        ...(only === undefined ? {} : { only }),
        nginx: bench.withNginx ? nginxPath : "not installed: skipped",
        loadGenerator: "autocannon (in the bench process); latency, streaming and bulk with undici clients",
        gateway: `node ${entry.join(" ")} in ${GATEWAY_ROOT}, log level error, auth configured (x-api-key)`,
        bundled: !viaTsx,
        sanity,
        ...(mainGatewayIdle === undefined ? {} : { mainGatewayIdle }),
        machineBusyPercentBefore: round1(busyBefore),
        loadAverage: { before: loadBefore, after: loadavg()[0]! },
        note: "One run on a shared machine; the load generator, the proxy and the upstream share its cores.",
        durationSeconds: Math.round((now() - began) / 1000)
      }
      const report = [
        `## Hestia bench — ${meta.date.slice(0, 16).replace("T", " ")}, Node ${meta.node}, ${meta.cpus} × ${meta.cpuModel}${quick ? " (quick)" : ""}${viaTsx ? " (gateway run through tsx)" : ""}${only === undefined ? "" : ` (only ${only.join(", ")})`}`,
        "",
        table(rows, bench.withNginx),
        "",
        barTable(bars),
        "",
        `One run on a shared ${meta.cpus}-core machine; load generator, proxy and upstream share the cores. ${bench.withNginx ? "" : "nginx not installed: skipped. "}Gateway log level: error. Whole run: ${meta.durationSeconds} s. Machine before the run: ${fmt(busyBefore, 0)} % busy; load average ${fmt(loadBefore, 1)} before, ${fmt(meta.loadAverage.after, 1)} after${busyBefore > 15 ? " — other work was running: treat the figures, the throughput ratio above all, as rough" : ""}.`
      ].join("\n")
      process.stdout.write(`\n${report}\n`)

      const results = { meta, ...Object.assign({}, ...outcomes.map((o) => o.results)), bars, table: report }
      mkdirSync(join(BENCH_DIR, "results"), { recursive: true })
      // Variants get their own file, so latest.json is always a full run of the gateway as `npm start` runs it.
      const name = `latest${only === undefined ? "" : `-only-${only.join("-")}`}${viaTsx ? "-tsx" : ""}${quick ? "-quick" : ""}.json`
      writeFileSync(join(BENCH_DIR, "results", name), `${JSON.stringify(results, null, 2)}\n`)
      log(`\nwrote bench/results/${name}`)
    } finally {
      await bench.agent.close().catch(() => undefined)
    }
  } finally {
    const leftovers = await stopEverything()
    if (leftovers.length > 0) log(`killed ${leftovers.length} leftover upstream process(es): ${leftovers.join(", ")}`)
    rmSync(dir, { recursive: true, force: true })
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    log(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
    // main's finally has stopped every child; the exit handler is the last resort.
    process.exit(1)
  }
)
