import { FileSystem } from "@effect/platform"
import { Context, Effect, Either, Layer, Option, ParseResult, Schema } from "effect"
import * as Yaml from "yaml"
import { ConfigError } from "../domain/Errors.ts"
import { check } from "./Checks.ts"
import { applyOverride, type Override, optionalEnv, readOverrides } from "./Environment.ts"
import { deprecatedServiceKeys, ServiceEntry, type ServiceSource, serviceOf } from "./ServiceConfig.ts"
import { type ConfigWarning, type Settings, SettingsFile } from "./Settings.ts"

// Loading `hestia_config.yml`: YAML → environment overrides → one Schema per domain type (src/config/*Config.ts,
// Settings.ts) → cross-key checks. The types the rest of the gateway reads are the Schemas' types, re-exported here.

export type { ContainerSettings } from "./ContainerConfig.ts"
export { isEngineUrl } from "./ContainerConfig.ts"
export { envPrefix } from "./Environment.ts"
export type { LabelValue, MachineConfig } from "./MachineConfig.ts"
export type { MachinePreference, RoutingRule } from "./RoutingRule.ts"
export type { OrchestratorKind, SemaphoreServiceSettings, ServiceConfig, ServiceSource } from "./ServiceConfig.ts"
export type { ConfigWarning, Settings } from "./Settings.ts"

/** Used when no config file exists: one demo service, started on demand from this repository. */
export const embeddedDefaultConfig = `# Embedded default: no hestia_config.yml was found.
server: { host: 127.0.0.1, port: 8080 }
services:
  demo:
    base_url: http://127.0.0.1:9801
    health_url: http://127.0.0.1:9801/health
    command: ["node", "examples/upstream.mjs", "--port", "9801"]
    idle_timeout_ms: 60000
`

const formatPath = (path: ReadonlyArray<PropertyKey>) => path.map(String).join(".")

/** Schema spells out a whole struct type when a mapping is expected; say it in words instead. */
const conciseProblem = (message: string) => {
  const actual = message.match(/, actual (.*)$/s)?.[1]
  if (message.startsWith("Expected {")) return `expected a mapping of keys to values${actual ? `, got ${actual}` : ""}`
  if (message.startsWith("Expected ReadonlyArray") || message.startsWith("Expected readonly ["))
    return `expected a list${actual ? `, got ${actual}` : ""}`
  return message
}

/** A problem at a key path an environment variable set is that variable's. */
const blame = (error: ConfigError, overrides: ReadonlyArray<Override>) => {
  const override = overrides.find(
    (o) => formatPath(o.path) === error.path || error.path.startsWith(`${formatPath(o.path)}.`)
  )
  return override === undefined
    ? error
    : new ConfigError({ ...error, file: `environment variable ${override.variable}` })
}

/** The first Hestia's keys that mean nothing here yet: one warning for each one set. */
const deprecations = (raw: Record<string, any>): ReadonlyArray<ConfigWarning> => {
  const services = raw.services
  if (services === null || typeof services !== "object") return []
  return Object.entries(services).flatMap(([id, service]) =>
    service === null || typeof service !== "object"
      ? []
      : Object.entries(deprecatedServiceKeys)
          .filter(([key]) => (service as Record<string, unknown>)[key] != null)
          .map(([key, message]) => ({ key: `services.${id}.${key}`, message, kind: "deprecated" as const }))
  )
}

const decodeSettings = Schema.decodeUnknownEither(SettingsFile, { onExcessProperty: "error", errors: "first" })

/**
 * Parse YAML text and environment overrides into Settings, or one ConfigError naming file, key path and problem.
 * `databaseDefault` stands in for an absent `database:` key (tests use `:memory:`); HESTIA_DATABASE still wins.
 */
export const parse = (text: string, source: string, databaseDefault?: string) =>
  Effect.gen(function* () {
    const doc = Yaml.parseDocument(text, { prettyErrors: true, uniqueKeys: true })
    if (doc.errors.length > 0) {
      const first = doc.errors[0]!
      const where = first.linePos?.[0] ? `line ${first.linePos[0].line}, column ${first.linePos[0].col}` : ""
      return yield* new ConfigError({
        file: source,
        path: where,
        problem: `invalid YAML: ${first.message.split("\n")[0]}`
      })
    }
    const parsed: unknown = doc.toJS() ?? {}
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      return yield* new ConfigError({
        file: source,
        path: "",
        problem: "expected a mapping of settings at the top level"
      })
    }
    const raw = parsed as Record<string, any>
    if (databaseDefault !== undefined && !("database" in raw)) raw.database = databaseDefault
    const { overrides, warnings: environmentWarnings } = yield* readOverrides(raw).pipe(
      Effect.mapError((e) => new ConfigError({ file: "environment", path: "", problem: String(e) }))
    )
    for (const override of overrides) applyOverride(raw, override)

    const decoded = decodeSettings(raw)
    if (Either.isLeft(decoded)) {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]!
      const problem = issue._tag === "Unexpected" ? "unknown key" : conciseProblem(issue.message)
      return yield* blame(new ConfigError({ file: source, path: formatPath(issue.path), problem }), overrides)
    }
    const settings: Settings = { ...decoded.right, source, warnings: [] }
    const checkWarnings = yield* check(settings).pipe(Effect.mapError((error) => blame(error, overrides)))
    return {
      ...settings,
      warnings: [...deprecations(raw), ...environmentWarnings, ...checkWarnings]
    } satisfies Settings
  })

const decodeEntry = Schema.decodeUnknownEither(ServiceEntry, { onExcessProperty: "error", errors: "first" })

/**
 * One service from settings spelled as in the file (snake_case), checked by the same schema: for services declared
 * elsewhere (container labels). `where` names where the settings came from in the error.
 */
export const decodeService = (
  id: string,
  raw: unknown,
  source: ServiceSource,
  where: { readonly file: string; readonly path: string }
) => {
  const decoded = decodeEntry(raw)
  if (Either.isRight(decoded)) return Effect.succeed(serviceOf(id, decoded.right, source))
  const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]!
  const key = formatPath(issue.path)
  return Effect.fail(
    new ConfigError({
      file: where.file,
      path: key === "" ? where.path : `${where.path}.${key}`,
      problem: issue._tag === "Unexpected" ? "unknown key" : conciseProblem(issue.message)
    })
  )
}

const nonBlank = (value: Option.Option<string>) => Option.filter(value, (path) => path.trim() !== "")

/**
 * Read `HESTIA_CONFIG` (alias `HESTIA_CONFIG_PATH`, the first Hestia's name; `HESTIA_CONFIG` wins when both are
 * set), default ./hestia_config.yml. Only a file that does not exist at the default path means the embedded default;
 * a path that exists but cannot be read (a directory, no permission, an I/O error) is a ConfigError.
 */
export const load = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const primary = nonBlank(yield* optionalEnv("HESTIA_CONFIG"))
  const alias = nonBlank(yield* optionalEnv("HESTIA_CONFIG_PATH"))
  const [variable, path] = Option.isSome(primary)
    ? ["HESTIA_CONFIG", primary.value]
    : Option.isSome(alias)
      ? ["HESTIA_CONFIG_PATH", alias.value]
      : [undefined, "./hestia_config.yml"]
  const aliasIgnored: ReadonlyArray<ConfigWarning> =
    Option.isSome(primary) && Option.isSome(alias) && alias.value !== primary.value
      ? [{ key: "HESTIA_CONFIG_PATH", message: `ignored: HESTIA_CONFIG (${primary.value}) wins`, kind: "warning" }]
      : []
  const cannotRead = (problem: string) => new ConfigError({ file: path, path: "", problem: `cannot read: ${problem}` })

  const info = yield* Effect.either(fs.stat(path))
  if (Either.isLeft(info)) {
    const error = info.left
    if (error._tag === "SystemError" && error.reason === "NotFound") {
      if (variable !== undefined) {
        return yield* new ConfigError({ file: path, path: "", problem: `file not found (${variable})` })
      }
      return yield* parse(embeddedDefaultConfig, "embedded default config")
    }
    return yield* cannotRead(error.message)
  }
  if (info.right.type === "Directory") return yield* cannotRead("it is a directory, not a file")
  const text = yield* fs.readFileString(path).pipe(Effect.mapError((error) => cannotRead(error.message)))
  const settings = yield* parse(text, path)
  return { ...settings, warnings: [...aliasIgnored, ...settings.warnings] } satisfies Settings
}).pipe(
  Effect.mapError((e) =>
    e._tag === "ConfigError" ? e : new ConfigError({ file: "environment", path: "", problem: String(e) })
  )
)

export class HestiaConfig extends Context.Tag("hestia/HestiaConfig")<HestiaConfig, Settings>() {
  /** From the config file and the process environment. */
  static readonly layer = Layer.effect(HestiaConfig, load)

  /**
   * From YAML text (tests); environment overrides still apply through the current ConfigProvider. Without a
   * `database:` key the Store is in memory, so tests never share ./data/hestia.db.
   */
  static readonly layerYaml = (text: string, source = "test config") =>
    Layer.effect(HestiaConfig, parse(text, source, ":memory:"))
}
