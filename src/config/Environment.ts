import { Config, Effect, Option } from "effect"
import * as Yaml from "yaml"
import { serviceFileKeys } from "./ServiceConfig.ts"
import type { ConfigWarning } from "./Settings.ts"

// Environment overrides, read through Effect's ConfigProvider (tests supply a map). They are written into the raw
// document before it is decoded, so the file's Schema checks them too, and a bad one names its variable.

/** `my-svc` → `MY_SVC` */
export const envPrefix = (serviceId: string) => serviceId.toUpperCase().replaceAll("-", "_")

export const optionalEnv = (name: string) => Config.option(Config.string(name))

export interface Override {
  readonly path: ReadonlyArray<string>
  readonly variable: string
  readonly value: unknown
}

/** Env values are YAML scalars, decoded by the same Schema as the file: "5000" is a number, "[a, b]" a list. */
const yamlScalar = (raw: string): unknown => {
  try {
    return Yaml.parse(raw)
  } catch {
    return raw
  }
}
const text = (raw: string) => raw
const list = (raw: string) =>
  raw
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "")

const globals: ReadonlyArray<readonly [string, ReadonlyArray<string>, (raw: string) => unknown]> = [
  ["HESTIA_HOST", ["server", "host"], text],
  ["HESTIA_PORT", ["server", "port"], yamlScalar],
  ["HESTIA_LOG_LEVEL", ["log_level"], (raw) => raw.toLowerCase()],
  ["HESTIA_LOG_FORMAT", ["log_format"], (raw) => raw.toLowerCase()],
  ["HESTIA_DATABASE", ["database"], text],
  ["HESTIA_API_KEYS", ["auth", "api_keys"], list],
  ["HESTIA_SHUTDOWN_GRACE_MS", ["shutdown_grace_ms"], yamlScalar],
  ["HESTIA_STRATEGIES_DIR", ["strategies_dir"], text],
  ["HESTIA_STRATEGY_TIMEOUT_MS", ["strategy_timeout_ms"], yamlScalar],
  ["HESTIA_MODEL_STRATEGY", ["model_strategy"], text],
  ["SEMAPHORE_BASE_URL", ["semaphore_base_url"], text],
  // Secrets stay text: a password "123" or "yes" is not a number or a boolean.
  ["SEMAPHORE_API_KEY", ["semaphore_api_key"], text],
  ["SEMAPHORE_USERNAME", ["semaphore_username"], text],
  ["SEMAPHORE_PASSWORD", ["semaphore_password"], text],
  ["SEMAPHORE_PROJECT_ID", ["semaphore_project_id"], yamlScalar],
  ["SEMAPHORE_TIMEOUT", ["semaphore_timeout"], yamlScalar]
]

/** The overrides set in the environment for this document, and a warning for a variable read as two settings. */
export const readOverrides = (raw: Record<string, any>) =>
  Effect.gen(function* () {
    const overrides: Array<Override> = []
    for (const [variable, path, parse] of globals) {
      const value = yield* optionalEnv(variable)
      if (Option.isSome(value)) overrides.push({ path, variable, value: parse(value.value) })
    }
    const services = raw.services
    if (services !== null && typeof services === "object") {
      for (const id of Object.keys(services)) {
        for (const key of serviceFileKeys) {
          const variable = `${envPrefix(id)}_${key.toUpperCase()}`
          const value = yield* optionalEnv(variable)
          if (Option.isSome(value))
            overrides.push({ path: ["services", id, key], variable, value: yamlScalar(value.value) })
        }
      }
    }
    // A service named `semaphore` has SEMAPHORE_BASE_URL as its own override too (as in the first Hestia): say so.
    const warnings: Array<ConfigWarning> = []
    for (const [i, override] of overrides.entries()) {
      const other = overrides.findIndex((o, j) => j > i && o.variable === override.variable)
      if (other !== -1) {
        warnings.push({
          key: override.variable,
          message: `sets both ${override.path.join(".")} and ${overrides[other]!.path.join(".")}`,
          kind: "warning"
        })
      }
    }
    return { overrides, warnings }
  })

export const applyOverride = (raw: Record<string, any>, { path, value }: Override) => {
  let node = raw
  for (const key of path.slice(0, -1)) {
    if (node[key] === null || typeof node[key] !== "object") node[key] = {}
    node = node[key]
  }
  node[path[path.length - 1]!] = value
}
