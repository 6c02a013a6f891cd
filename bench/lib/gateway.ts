/** The gateway under measurement: its config file, the build `npm start` runs, and its launch. */
import { execFileSync } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import * as Yaml from "yaml"
import { GATEWAY_ROOT, NODE } from "./paths.ts"
import { type Child, now, startChild, waitForHttp } from "./processes.ts"

export const API_KEY = "bench-key-0123456789abcdef"
/** Sent to every target alike: the gateway needs it when auth is on; the others pass it on or ignore it. */
export const HEADERS = { "x-api-key": API_KEY, accept: "application/json" }

/** Extra node flags for the gateway, e.g. BENCH_GATEWAY_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof". */
const GATEWAY_NODE_ARGS = (process.env.BENCH_GATEWAY_NODE_ARGS ?? "").split(" ").filter((arg) => arg !== "")

/** One service as hestia_config.yml spells it (snake_case keys). */
export type ServiceEntry = Readonly<Record<string, unknown>>

/** What a scenario adds to a gateway's config: services, and other top-level sections (e.g. `groups`). */
export interface ConfigPart {
  readonly services?: Readonly<Record<string, ServiceEntry>>
  readonly sections?: Readonly<Record<string, Readonly<Record<string, unknown>>>>
}

const mergeInto = (into: Record<string, unknown>, from: Readonly<Record<string, unknown>>, where: string) => {
  for (const [key, value] of Object.entries(from)) {
    if (key in into) throw new Error(`bench: two scenarios define ${where}${key}`)
    into[key] = value
  }
}

/** The parts merged; a service (or a section entry) defined twice is an error, not an override. */
export const mergeConfigParts = (parts: ReadonlyArray<ConfigPart>): ConfigPart => {
  const services: Record<string, ServiceEntry> = {}
  const sections: Record<string, Record<string, unknown>> = {}
  for (const part of parts) {
    mergeInto(services, part.services ?? {}, "services.")
    for (const [name, section] of Object.entries(part.sections ?? {})) {
      const into = sections[name] ?? {}
      mergeInto(into, section, `${name}.`)
      sections[name] = into
    }
  }
  return { services, sections }
}

export const writeGatewayConfig = (file: string, options: { port: number; database: string; part: ConfigPart }) => {
  const config = {
    server: { host: "127.0.0.1", port: options.port },
    database: options.database,
    log_level: "error",
    auth: { api_keys: [API_KEY] },
    ...options.part.sections,
    services: options.part.services ?? {}
  }
  writeFileSync(file, `# written by the bench (bench/lib/gateway.ts)\n${Yaml.stringify(config)}`)
}

/** The bundle `npm start` runs: built once per run by the project's own build script, outside the measurements. */
const bundleGateway = () => {
  execFileSync(NODE, [join(GATEWAY_ROOT, "scripts", "build.mjs")], {
    cwd: GATEWAY_ROOT,
    stdio: ["ignore", "inherit", "inherit"]
  })
  return join(GATEWAY_ROOT, "dist", "main.mjs")
}

/** How the gateway is run: the bundle (built here), or the sources through tsx (`npm run dev`). */
export const gatewayEntry = (viaTsx: boolean): ReadonlyArray<string> =>
  viaTsx ? ["--import", "tsx", "src/main.ts"] : [bundleGateway()]

export interface Gateway {
  readonly name: string
  readonly url: string
  readonly child: Child
  /** Process spawn → first 2xx from /healthz (polled every 5 ms). */
  readonly launchMs: number
  /** How many services its config has. */
  readonly services: number
}

/** Writes `name`.yml (and its database `name`.db) with `file`, launches the gateway, waits for /healthz. */
export const gatewayLauncher =
  (entry: ReadonlyArray<string>, file: (name: string) => string) =>
  async (name: string, port: number, part: ConfigPart): Promise<Gateway> => {
    const configPath = file(`${name}.yml`)
    writeGatewayConfig(configPath, { port, database: file(`${name}.db`), part })
    const started = now()
    const child = startChild(name, NODE, [...GATEWAY_NODE_ARGS, ...entry], {
      cwd: GATEWAY_ROOT,
      env: {
        ...process.env,
        HESTIA_CONFIG: configPath,
        HESTIA_HOST: "127.0.0.1",
        HESTIA_PORT: String(port),
        HESTIA_LOG_LEVEL: "error"
      }
    })
    const url = `http://127.0.0.1:${port}`
    const answered = await waitForHttp(`${url}/healthz`, child, { everyMs: 5 })
    return { name, url, child, launchMs: answered - started, services: Object.keys(part.services ?? {}).length }
  }
