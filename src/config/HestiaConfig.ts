import { FileSystem } from "@effect/platform"
import { Config, Context, Effect, Either, Layer, LogLevel, Option, ParseResult, Schema } from "effect"
import * as Yaml from "yaml"
import { ConfigError } from "../domain/Errors.ts"
import { labelsMatch } from "../domain/Placement.ts"

// ---------------------------------------------------------------------------
// The file format: snake_case keys, a superset of the original Hestia's.
// ---------------------------------------------------------------------------

const urlLike = (value: string) => {
  try {
    // `{host}` is filled from the machine at start time; any host name validates the rest.
    const url = new URL(value.replaceAll("{host}", "placeholder.invalid"))
    return url.protocol === "http:" || url.protocol === "https:"
  } catch {
    return false
  }
}

const HttpUrl = Schema.String.pipe(Schema.filter(urlLike, { message: () => "expected an http:// or https:// URL" }))
const Millis = Schema.NonNegativeInt
const Seconds = Schema.Number.pipe(Schema.positive({ message: () => "expected a number of seconds > 0" }))
/** Seconds where 0 means "never". */
const SecondsOrNever = Schema.Number.pipe(
  Schema.nonNegative({ message: () => "expected a number of seconds >= 0 (0 = never)" })
)
const ServiceId = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9_-]*$/, {
    message: () => "service ids use letters, digits, '-' and '_' only"
  })
)

const ServiceFile = Schema.Struct({
  base_url: HttpUrl,
  health_url: Schema.optional(Schema.NullOr(HttpUrl)),
  warmup_ms: Schema.optional(Millis),
  idle_timeout_ms: Schema.optional(Millis),
  queue_size: Schema.optional(Schema.Int.pipe(Schema.positive({ message: () => "expected a whole number > 0" }))),
  request_timeout_seconds: Schema.optional(Seconds),
  retry_count: Schema.optional(Schema.NonNegativeInt),
  retry_delay_ms: Schema.optional(Millis),
  fallback_url: Schema.optional(Schema.NullOr(HttpUrl)),
  machines: Schema.optional(Schema.Array(Schema.String)),
  command: Schema.optional(Schema.NullOr(Schema.Union(Schema.NonEmptyArray(Schema.String), Schema.NonEmptyString))),
  cwd: Schema.optional(Schema.NullOr(Schema.String)),
  env: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  stop_grace_ms: Schema.optional(Millis),
  max_concurrent_requests: Schema.optional(Schema.NonNegativeInt),
  body_idle_timeout_seconds: Schema.optional(SecondsOrNever),
  upstream_timeout_seconds: Schema.optional(Seconds),
  stream_idle_timeout_seconds: Schema.optional(SecondsOrNever),
  semaphore_enabled: Schema.optional(Schema.Boolean),
  semaphore_machine_id: Schema.optional(Schema.NullOr(Schema.String)),
  semaphore_start_template_id: Schema.optional(Schema.NullOr(Schema.Int)),
  semaphore_stop_template_id: Schema.optional(Schema.NullOr(Schema.Int)),
  semaphore_task_timeout: Schema.optional(Seconds),
  semaphore_poll_interval: Schema.optional(Seconds),
  strategy: Schema.optional(Schema.NullOr(Schema.String))
})
type ServiceFile = typeof ServiceFile.Type

const LogLevelName = Schema.Literal("trace", "debug", "info", "warn", "warning", "error", "fatal", "none")

const MachineFile = Schema.Struct({
  host: Schema.NonEmptyString,
  semaphore_machine_id: Schema.optional(Schema.NullOr(Schema.String)),
  labels: Schema.optional(
    Schema.Record({ key: Schema.String, value: Schema.Union(Schema.String, Schema.Number, Schema.Boolean) })
  )
})

const LabelValue = Schema.Union(Schema.String, Schema.Number, Schema.Boolean)

const isPreferStep = Schema.is(
  Schema.Union(
    Schema.NonEmptyString,
    Schema.Record({ key: Schema.String, value: LabelValue }).pipe(
      Schema.filter((labels) => Object.keys(labels).length > 0)
    )
  )
)
// Declared as one check so a bad step gets one plain message rather than each union member's complaint.
const PreferStep = Schema.declare(isPreferStep, {
  message: () => "expected a machine id, or a label selector with at least one label such as { gpu: true }"
})

/** One routing rule: for the services it matches, the machines to try, in order. */
const RoutingRuleFile = Schema.Struct({
  /** Service ids, `*` as a wildcard; absent = every service. */
  services: Schema.optional(
    Schema.Array(Schema.NonEmptyString).pipe(
      Schema.minItems(1, {
        message: () => "expected at least one service id or pattern (omit the key for every service)"
      })
    )
  ),
  /** Each entry is a machine id, or a label selector standing for every machine with those labels (file order). */
  prefer: Schema.Array(PreferStep).pipe(
    Schema.minItems(1, { message: () => "expected at least one machine id or label selector" })
  )
})

export const ConfigFile = Schema.Struct({
  server: Schema.optional(
    Schema.Struct({
      host: Schema.optional(Schema.NonEmptyString),
      port: Schema.optional(Schema.Int.pipe(Schema.between(0, 65535, { message: () => "expected a port 0-65535" })))
    })
  ),
  database: Schema.optional(Schema.NonEmptyString),
  max_dispatch_body_bytes: Schema.optional(
    Schema.Int.pipe(Schema.positive({ message: () => "expected a number of bytes > 0" }))
  ),
  log_level: Schema.optional(LogLevelName),
  auth: Schema.optional(
    Schema.NullOr(
      Schema.Struct({
        api_keys: Schema.optional(Schema.Array(Schema.NonEmptyString)),
        dashboard: Schema.optional(Schema.Struct({ username: Schema.NonEmptyString, password: Schema.NonEmptyString })),
        forward_authorization: Schema.optional(Schema.Boolean)
      })
    )
  ),
  semaphore_base_url: Schema.optional(Schema.NullOr(HttpUrl)),
  semaphore_api_key: Schema.optional(Schema.NullOr(Schema.String)),
  semaphore_project_id: Schema.optional(Schema.NullOr(Schema.Int)),
  machines: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: MachineFile }))),
  services: Schema.optional(Schema.NullOr(Schema.Record({ key: ServiceId, value: ServiceFile }))),
  routing_rules: Schema.optional(Schema.NullOr(Schema.Array(RoutingRuleFile)))
})
type ConfigFile = typeof ConfigFile.Type

// ---------------------------------------------------------------------------
// The decoded, defaulted settings the rest of the gateway reads.
// ---------------------------------------------------------------------------

export type OrchestratorKind = "process" | "semaphore" | "external"

export interface SemaphoreServiceSettings {
  readonly enabled: boolean
  readonly machineId: string | undefined
  readonly startTemplateId: number | undefined
  readonly stopTemplateId: number | undefined
  readonly taskTimeoutMs: number
  readonly pollIntervalMs: number
}

export interface ServiceConfig {
  readonly id: string
  readonly kind: OrchestratorKind
  readonly baseUrl: string
  readonly healthUrl: string | undefined
  readonly warmupMs: number
  readonly idleTimeoutMs: number
  readonly queueSize: number
  readonly requestTimeoutMs: number
  readonly retryCount: number
  readonly retryDelayMs: number
  readonly fallbackUrl: string | undefined
  readonly machines: ReadonlyArray<string>
  /** argv; a string command in the file runs through `/bin/sh -c`. */
  readonly command: ReadonlyArray<string> | undefined
  readonly cwd: string | undefined
  readonly env: Readonly<Record<string, string>>
  readonly stopGraceMs: number
  /** Requests forwarded to the service at once; 0 = no limit but the connection pool's. */
  readonly maxConcurrentRequests: number
  /** An upload that sends nothing for this long is ended with 408; 0 = never. */
  readonly bodyIdleTimeoutMs: number
  /** From a request sent upstream to the upstream's response headers; then 504 UpstreamTimeout. */
  readonly upstreamTimeoutMs: number
  /** A response body silent for this long is cut; 0 = never (streams may be quiet for long). */
  readonly streamIdleTimeoutMs: number
  readonly semaphore: SemaphoreServiceSettings
  readonly strategy: string | undefined
}

export interface MachineConfig {
  readonly id: string
  readonly host: string
  readonly semaphoreMachineId: string | undefined
  readonly labels: Readonly<Record<string, string | number | boolean>>
}

export type LabelValue = string | number | boolean

/** A step of a routing rule's order: one machine, or every machine carrying all these labels (in file order). */
export type MachinePreference =
  | { readonly _tag: "Machine"; readonly machineId: string }
  | { readonly _tag: "Labels"; readonly labels: Readonly<Record<string, LabelValue>> }

export interface RoutingRule {
  /** Service id patterns (`*` wildcard); undefined = every service. */
  readonly services: ReadonlyArray<string> | undefined
  readonly prefer: ReadonlyArray<MachinePreference>
}

export interface Settings {
  /** Where the settings came from, for messages. */
  readonly source: string
  readonly host: string
  readonly port: number
  readonly database: string
  /** `POST /v1/requests`: the largest request body read, and the largest upstream answer collected. */
  readonly maxDispatchBodyBytes: number
  readonly logLevel: LogLevel.LogLevel
  readonly auth: {
    readonly apiKeys: ReadonlyArray<string>
    readonly dashboard: { readonly username: string; readonly password: string } | undefined
    readonly forwardAuthorization: boolean
  }
  readonly semaphore: {
    readonly baseUrl: string | undefined
    readonly apiKey: string | undefined
    readonly projectId: number | undefined
  }
  readonly machines: ReadonlyMap<string, MachineConfig>
  readonly services: ReadonlyMap<string, ServiceConfig>
  /** Placement for services without their own `machines:` list; the first rule matching the service decides. */
  readonly routingRules: ReadonlyArray<RoutingRule>
}

export const defaults = {
  host: "0.0.0.0",
  port: 8080,
  database: "./data/hestia.db",
  maxDispatchBodyBytes: 10 * 1024 * 1024,
  warmupMs: 2_000,
  idleTimeoutMs: 300_000,
  queueSize: 100,
  requestTimeoutSeconds: 60,
  retryCount: 2,
  retryDelayMs: 1_000,
  stopGraceMs: 5_000,
  maxConcurrentRequests: 0,
  bodyIdleTimeoutSeconds: 30,
  upstreamTimeoutSeconds: 300,
  streamIdleTimeoutSeconds: 0,
  semaphoreTaskTimeoutSeconds: 300,
  semaphorePollIntervalSeconds: 2
} as const

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

const logLevels: Record<typeof LogLevelName.Type, LogLevel.LogLevel> = {
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warn: LogLevel.Warning,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  fatal: LogLevel.Fatal,
  none: LogLevel.None
}

const kindOf = (file: ServiceFile): OrchestratorKind =>
  file.semaphore_enabled === true ? "semaphore" : file.command != null ? "process" : "external"

const toServiceConfig = (id: string, file: ServiceFile): ServiceConfig => ({
  id,
  kind: kindOf(file),
  baseUrl: file.base_url,
  healthUrl: file.health_url ?? undefined,
  warmupMs: file.warmup_ms ?? defaults.warmupMs,
  idleTimeoutMs: file.idle_timeout_ms ?? defaults.idleTimeoutMs,
  queueSize: file.queue_size ?? defaults.queueSize,
  requestTimeoutMs: Math.round((file.request_timeout_seconds ?? defaults.requestTimeoutSeconds) * 1000),
  retryCount: file.retry_count ?? defaults.retryCount,
  retryDelayMs: file.retry_delay_ms ?? defaults.retryDelayMs,
  fallbackUrl: file.fallback_url ?? undefined,
  machines: file.machines ?? [],
  command:
    file.command == null
      ? undefined
      : typeof file.command === "string"
        ? ["/bin/sh", "-c", file.command]
        : file.command,
  cwd: file.cwd ?? undefined,
  env: file.env ?? {},
  stopGraceMs: file.stop_grace_ms ?? defaults.stopGraceMs,
  maxConcurrentRequests: file.max_concurrent_requests ?? defaults.maxConcurrentRequests,
  bodyIdleTimeoutMs: Math.round((file.body_idle_timeout_seconds ?? defaults.bodyIdleTimeoutSeconds) * 1000),
  upstreamTimeoutMs: Math.round((file.upstream_timeout_seconds ?? defaults.upstreamTimeoutSeconds) * 1000),
  streamIdleTimeoutMs: Math.round((file.stream_idle_timeout_seconds ?? defaults.streamIdleTimeoutSeconds) * 1000),
  semaphore: {
    enabled: file.semaphore_enabled ?? false,
    machineId: file.semaphore_machine_id ?? undefined,
    startTemplateId: file.semaphore_start_template_id ?? undefined,
    stopTemplateId: file.semaphore_stop_template_id ?? undefined,
    taskTimeoutMs: Math.round((file.semaphore_task_timeout ?? defaults.semaphoreTaskTimeoutSeconds) * 1000),
    pollIntervalMs: Math.round((file.semaphore_poll_interval ?? defaults.semaphorePollIntervalSeconds) * 1000)
  },
  strategy: file.strategy ?? undefined
})

const toSettings = (source: string, file: ConfigFile, databaseDefault: string = defaults.database): Settings => ({
  source,
  host: file.server?.host ?? defaults.host,
  port: file.server?.port ?? defaults.port,
  database: file.database ?? databaseDefault,
  maxDispatchBodyBytes: file.max_dispatch_body_bytes ?? defaults.maxDispatchBodyBytes,
  logLevel: logLevels[file.log_level ?? "info"],
  auth: {
    apiKeys: file.auth?.api_keys ?? [],
    dashboard: file.auth?.dashboard,
    forwardAuthorization: file.auth?.forward_authorization ?? false
  },
  semaphore: {
    baseUrl: file.semaphore_base_url ?? undefined,
    apiKey: file.semaphore_api_key ?? undefined,
    projectId: file.semaphore_project_id ?? undefined
  },
  machines: new Map(
    Object.entries(file.machines ?? {}).map(([id, m]) => [
      id,
      { id, host: m.host, semaphoreMachineId: m.semaphore_machine_id ?? undefined, labels: m.labels ?? {} }
    ])
  ),
  services: new Map(Object.entries(file.services ?? {}).map(([id, s]) => [id, toServiceConfig(id, s)])),
  routingRules: (file.routing_rules ?? []).map((rule) => ({
    services: rule.services,
    prefer: rule.prefer.map(
      (step): MachinePreference =>
        typeof step === "string" ? { _tag: "Machine", machineId: step } : { _tag: "Labels", labels: step }
    )
  }))
})

// ---------------------------------------------------------------------------
// Environment overrides: read through Effect's ConfigProvider, so tests can supply a map.
// ---------------------------------------------------------------------------

const serviceKeys = Object.keys(ServiceFile.fields)

/** `my-svc` → `MY_SVC` */
export const envPrefix = (serviceId: string) => serviceId.toUpperCase().replaceAll("-", "_")

const optionalEnv = (name: string) => Config.option(Config.string(name))

type Override = { readonly path: ReadonlyArray<string>; readonly variable: string; readonly value: unknown }

/** Env values are YAML scalars, decoded by the same Schema as the file: "5000" is a number, "[a, b]" a list. */
const parseEnvValue = (raw: string): unknown => {
  try {
    return Yaml.parse(raw)
  } catch {
    return raw
  }
}

const readOverrides = (raw: Record<string, any>) =>
  Effect.gen(function* () {
    const overrides: Array<Override> = []
    const global: ReadonlyArray<[string, ReadonlyArray<string>, (s: string) => unknown]> = [
      ["HESTIA_HOST", ["server", "host"], (s) => s],
      ["HESTIA_PORT", ["server", "port"], parseEnvValue],
      ["HESTIA_LOG_LEVEL", ["log_level"], (s) => s.toLowerCase()],
      ["HESTIA_DATABASE", ["database"], (s) => s],
      [
        "HESTIA_API_KEYS",
        ["auth", "api_keys"],
        (s) =>
          s
            .split(",")
            .map((k) => k.trim())
            .filter((k) => k !== "")
      ],
      ["SEMAPHORE_BASE_URL", ["semaphore_base_url"], (s) => s],
      ["SEMAPHORE_API_KEY", ["semaphore_api_key"], (s) => s],
      ["SEMAPHORE_PROJECT_ID", ["semaphore_project_id"], parseEnvValue]
    ]
    for (const [variable, path, parse] of global) {
      const value = yield* optionalEnv(variable)
      if (Option.isSome(value)) overrides.push({ path, variable, value: parse(value.value) })
    }
    const services = raw.services
    if (services !== null && typeof services === "object") {
      for (const id of Object.keys(services)) {
        for (const key of serviceKeys) {
          const variable = `${envPrefix(id)}_${key.toUpperCase()}`
          const value = yield* optionalEnv(variable)
          if (Option.isSome(value))
            overrides.push({ path: ["services", id, key], variable, value: parseEnvValue(value.value) })
        }
      }
    }
    return overrides
  })

const applyOverride = (raw: Record<string, any>, { path, value }: Override) => {
  let node = raw
  for (const key of path.slice(0, -1)) {
    if (node[key] === null || typeof node[key] !== "object") node[key] = {}
    node = node[key]
  }
  node[path[path.length - 1]!] = value
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

const formatPath = (path: ReadonlyArray<PropertyKey>) => path.map(String).join(".")

/** Schema spells out a whole struct type when a mapping is expected; say it in words instead. */
const conciseProblem = (message: string) => {
  const actual = message.match(/, actual (.*)$/s)?.[1]
  if (message.startsWith("Expected {")) return `expected a mapping of keys to values${actual ? `, got ${actual}` : ""}`
  if (message.startsWith("Expected ReadonlyArray") || message.startsWith("Expected readonly ["))
    return `expected a list${actual ? `, got ${actual}` : ""}`
  return message
}

/** Parse YAML text and environment overrides into Settings, or one ConfigError naming file, key path and problem. */
export const parse = (text: string, source: string, databaseDefault: string = defaults.database) =>
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
    const overrides = yield* readOverrides(raw).pipe(
      Effect.mapError((e) => new ConfigError({ file: "environment", path: "", problem: String(e) }))
    )
    for (const override of overrides) applyOverride(raw, override)

    const decoded = Schema.decodeUnknownEither(ConfigFile, { onExcessProperty: "error", errors: "first" })(raw)
    if (Either.isLeft(decoded)) {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)[0]!
      const path = formatPath(issue.path)
      const override = overrides.find((o) => formatPath(o.path) === path || path.startsWith(`${formatPath(o.path)}.`))
      const problem = issue._tag === "Unexpected" ? "unknown key" : conciseProblem(issue.message)
      return yield* new ConfigError({
        file: override ? `environment variable ${override.variable}` : source,
        path,
        problem
      })
    }
    const settings = toSettings(source, decoded.right, databaseDefault)
    yield* validateReferences(settings)
    yield* validateSemaphore(settings)
    yield* validateRoutingRules(settings)
    return settings
  })

const validateReferences = (settings: Settings) =>
  Effect.forEach(settings.services.values(), (service) =>
    Effect.gen(function* () {
      for (const machine of service.machines) {
        if (!settings.machines.has(machine)) {
          return yield* new ConfigError({
            file: settings.source,
            path: `services.${service.id}.machines`,
            problem: `unknown machine "${machine}" (not under machines:)`
          })
        }
      }
      if (service.kind === "semaphore" && service.semaphore.startTemplateId === undefined) {
        return yield* new ConfigError({
          file: settings.source,
          path: `services.${service.id}.semaphore_start_template_id`,
          problem: "required when semaphore_enabled is true"
        })
      }
    })
  )

/** A Semaphore service cannot start without the server, its token and the project. */
const validateSemaphore = (settings: Settings) =>
  Effect.gen(function* () {
    const first = [...settings.services.values()].find((service) => service.kind === "semaphore")
    if (first === undefined) return
    const missing = (
      [
        ["semaphore_base_url", "SEMAPHORE_BASE_URL", settings.semaphore.baseUrl],
        ["semaphore_api_key", "SEMAPHORE_API_KEY", settings.semaphore.apiKey],
        ["semaphore_project_id", "SEMAPHORE_PROJECT_ID", settings.semaphore.projectId]
      ] as const
    ).find(([, , value]) => value === undefined || value === "")
    if (missing !== undefined) {
      return yield* new ConfigError({
        file: settings.source,
        path: missing[0],
        problem: `required (or env ${missing[1]}) because service "${first.id}" has semaphore_enabled: true`
      })
    }
  })

const validateRoutingRules = (settings: Settings) =>
  Effect.forEach(settings.routingRules, (rule, index) =>
    Effect.gen(function* () {
      const fail = (path: string, problem: string) =>
        new ConfigError({ file: settings.source, path: `routing_rules.${index}${path}`, problem })
      for (const [i, pattern] of (rule.services ?? []).entries()) {
        if (!pattern.includes("*") && !settings.services.has(pattern)) {
          return yield* fail(`.services.${i}`, `unknown service "${pattern}" (not under services:)`)
        }
      }
      for (const [i, step] of rule.prefer.entries()) {
        if (step._tag === "Machine" && !settings.machines.has(step.machineId)) {
          return yield* fail(`.prefer.${i}`, `unknown machine "${step.machineId}" (not under machines:)`)
        }
        if (step._tag === "Labels" && ![...settings.machines.values()].some((m) => labelsMatch(m, step.labels))) {
          return yield* fail(`.prefer.${i}`, `no machine has the labels ${JSON.stringify(step.labels)}`)
        }
      }
    })
  )

/** Read `HESTIA_CONFIG` (default ./hestia_config.yml); the embedded default when that file does not exist. */
export const load = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Config.string("HESTIA_CONFIG").pipe(Config.withDefault("./hestia_config.yml"))
  const exists = yield* fs.exists(path).pipe(Effect.orElseSucceed(() => false))
  if (!exists) {
    const explicit = yield* optionalEnv("HESTIA_CONFIG")
    if (Option.isSome(explicit)) {
      return yield* new ConfigError({ file: path, path: "", problem: "file not found (HESTIA_CONFIG)" })
    }
    return yield* parse(embeddedDefaultConfig, "embedded default config")
  }
  const text = yield* fs
    .readFileString(path)
    .pipe(Effect.mapError((e) => new ConfigError({ file: path, path: "", problem: `cannot read: ${e.message}` })))
  return yield* parse(text, path)
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
