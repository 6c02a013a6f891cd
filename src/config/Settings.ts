import { LogLevel, Schema, Struct } from "effect"
import { Credential, Flag, HttpUrl, Millis, orUndefined, Port, PositiveInt, SecondsAsMillis } from "./Fields.ts"
import { Groups } from "./GroupConfig.ts"
import { Machines } from "./MachineConfig.ts"
import { RoutingRule } from "./RoutingRule.ts"
import { Services } from "./ServiceConfig.ts"

// The top level of `hestia_config.yml`. As for services, each field is the whole declaration of one key.

const logLevels = {
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warn: LogLevel.Warning,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  fatal: LogLevel.Fatal,
  none: LogLevel.None
} as const
const levelNames = Object.keys(logLevels) as Array<keyof typeof logLevels>

const LogLevelFromName = Schema.transform(
  Schema.Literal(...levelNames),
  Schema.declare((input): input is LogLevel.LogLevel => Object.values(logLevels).some((level) => level === input)),
  {
    strict: true,
    decode: (name) => logLevels[name],
    encode: (level) => levelNames.find((name) => logLevels[name] === level) ?? "info"
  }
)

/** `server:` in the file; `host` and `port` at the top of the settings. */
export const ServerSettings = Schema.Struct({
  host: Schema.optionalWith(Schema.NonEmptyString, { default: () => "0.0.0.0" }),
  port: Schema.optionalWith(Port, { default: () => 8080 })
})

export const AuthSettings = Schema.Struct({
  apiKeys: Schema.optionalWith(Schema.Array(Schema.NonEmptyString), { default: () => [] }).pipe(
    Schema.fromKey("api_keys")
  ),
  dashboard: orUndefined(Schema.Struct({ username: Schema.NonEmptyString, password: Schema.NonEmptyString })),
  forwardAuthorization: Schema.optionalWith(Flag, { default: () => false }).pipe(
    Schema.fromKey("forward_authorization")
  )
})

/** The flat top-level `semaphore_*` keys (the first Hestia's), gathered under `semaphore` in the settings. */
export const SemaphoreServerSettings = Schema.Struct({
  baseUrl: orUndefined(HttpUrl).pipe(Schema.fromKey("semaphore_base_url")),
  /** Bearer token; when set, it is used rather than the username/password login. */
  apiKey: orUndefined(Credential).pipe(Schema.fromKey("semaphore_api_key")),
  username: orUndefined(Credential).pipe(Schema.fromKey("semaphore_username")),
  password: orUndefined(Credential).pipe(Schema.fromKey("semaphore_password")),
  /** The first Hestia assumed project 1. */
  projectId: Schema.optionalWith(PositiveInt, { nullable: true, default: () => 1 }).pipe(
    Schema.fromKey("semaphore_project_id")
  ),
  /** The HTTP timeout of each Semaphore API call (`semaphore_timeout`, seconds). */
  requestTimeoutMs: Schema.optionalWith(SecondsAsMillis, { default: () => 10_000 }).pipe(
    Schema.fromKey("semaphore_timeout")
  )
})

const settingsFields = {
  database: Schema.optionalWith(Schema.NonEmptyString, { default: () => "./data/hestia.db" }),
  logLevel: Schema.optionalWith(LogLevelFromName, { default: () => LogLevel.Info }).pipe(Schema.fromKey("log_level")),
  /** `json` lines or `pretty` (one readable line per event); undefined: pretty when stdout is a terminal. */
  logFormat: orUndefined(Schema.Literal("json", "pretty")).pipe(Schema.fromKey("log_format")),
  auth: Schema.optionalWith(AuthSettings, { nullable: true, default: () => AuthSettings.make({}) }),
  machines: Schema.optionalWith(Machines, { nullable: true, default: () => new Map() }),
  services: Schema.optionalWith(Services, { nullable: true, default: () => new Map() }),
  /** Services decided together: an exclusive group holds one running member at a time (one GPU). */
  groups: Schema.optionalWith(Groups, { nullable: true, default: () => new Map() }),
  /** Placement for services without their own `machines:` list; the first rule matching the service decides. */
  routingRules: Schema.optionalWith(Schema.Array(RoutingRule), { nullable: true, default: () => [] }).pipe(
    Schema.fromKey("routing_rules")
  ),
  /** `POST /v1/requests`: the largest request body read, and the largest upstream answer collected. */
  maxDispatchBodyBytes: Schema.optionalWith(PositiveInt, { default: () => 10 * 1024 * 1024 }).pipe(
    Schema.fromKey("max_dispatch_body_bytes")
  ),
  /**
   * The model endpoints (`/openai/v1`, `/ollama/api`) read a request body whole to find its `model`: never more than
   * this (then 413).
   */
  maxRoutingBodyBytes: Schema.optionalWith(PositiveInt, { default: () => 1024 * 1024 }).pipe(
    Schema.fromKey("max_routing_body_bytes")
  ),
  /** How long a stopping gateway lets open requests and streams finish. */
  shutdownGraceMs: Schema.optionalWith(Millis, { default: () => 10_000 }).pipe(Schema.fromKey("shutdown_grace_ms")),
  /** The folder of strategy plugins (relative to the working directory); a missing folder holds none. */
  strategiesDir: Schema.optionalWith(Schema.NonEmptyString, { default: () => "./strategies" }).pipe(
    Schema.fromKey("strategies_dir")
  ),
  /**
   * A routing strategy the model endpoints (`/openai/v1`, `/ollama/api`) ask first, with the body: the service id it
   * answers wins over the body's model.
   */
  modelStrategy: orUndefined(Schema.NonEmptyString).pipe(Schema.fromKey("model_strategy")),
  /** The time limit of one strategy call; past it, the default rule decides. */
  strategyTimeoutMs: Schema.optionalWith(PositiveInt, { default: () => 50 }).pipe(Schema.fromKey("strategy_timeout_ms"))
}

const semaphoreKeys = Object.keys(SemaphoreServerSettings.fields) as Array<keyof typeof SemaphoreServerSettings.fields>

/** The whole file, decoded to what the gateway reads (everything but where it came from and its warnings). */
export const SettingsFile = Schema.transform(
  Schema.Struct({
    server: Schema.optionalWith(ServerSettings, { default: () => ServerSettings.make({}) }),
    ...settingsFields,
    ...SemaphoreServerSettings.fields
  }),
  Schema.typeSchema(Schema.Struct({ ...ServerSettings.fields, ...settingsFields, semaphore: SemaphoreServerSettings })),
  {
    strict: true,
    decode: ({ server, ...flat }) => ({
      ...server,
      ...Struct.omit(flat, ...semaphoreKeys),
      semaphore: Struct.pick(flat, ...semaphoreKeys)
    }),
    encode: ({ host, port, semaphore, ...rest }) => ({ server: { host, port }, ...rest, ...semaphore })
  }
)

/** Something the gateway accepted but the user should hear about; logged once at start. */
export interface ConfigWarning {
  /** The key path (or environment variable) it is about. */
  readonly key: string
  readonly message: string
  /** `deprecated`: a key of the first Hestia that means nothing here yet. */
  readonly kind: "deprecated" | "warning"
}

export type Settings = typeof SettingsFile.Type & {
  /** Where the settings came from, for messages. */
  readonly source: string
  readonly warnings: ReadonlyArray<ConfigWarning>
}
