import { ParseResult, Schema, SchemaAST, Struct } from "effect"
import { ContainerBlock } from "./ContainerConfig.ts"
import {
  Flag,
  fileKeys,
  HttpUrl,
  Millis,
  orUndefined,
  PositiveInt,
  SecondsAsMillis,
  SecondsOrNeverAsMillis
} from "./Fields.ts"
import { Instance } from "./InstanceConfig.ts"

// A service is one flat mapping in the file (the first Hestia's keys, plus ours). Each field below is the whole
// declaration of one key: its domain name, its file key, its check and its default. Adding a key is one line here;
// `<SERVICE>_<KEY>` environment overrides follow from the file keys.

export const OrchestratorKind = Schema.Literal("process", "semaphore", "container", "external")
export type OrchestratorKind = typeof OrchestratorKind.Type

/** argv; a string command in the file runs through `/bin/sh -c`. */
const Command = Schema.transform(
  Schema.Union(Schema.NonEmptyArray(Schema.String), Schema.NonEmptyString),
  Schema.Array(Schema.String),
  {
    strict: true,
    decode: (command) => (typeof command === "string" ? ["/bin/sh", "-c", command] : command),
    encode: (argv) => argv as readonly [string, ...Array<string>]
  }
)

/** The `semaphore_*` keys of a service, gathered under `semaphore` in the domain type. */
export const SemaphoreServiceSettings = Schema.Struct({
  enabled: Schema.optionalWith(Flag, { default: () => false }).pipe(Schema.fromKey("semaphore_enabled")),
  machineId: orUndefined(Schema.String).pipe(Schema.fromKey("semaphore_machine_id")),
  startTemplateId: orUndefined(Schema.Int).pipe(Schema.fromKey("semaphore_start_template_id")),
  stopTemplateId: orUndefined(Schema.Int).pipe(Schema.fromKey("semaphore_stop_template_id")),
  taskTimeoutMs: Schema.optionalWith(SecondsAsMillis, { default: () => 300_000 }).pipe(
    Schema.fromKey("semaphore_task_timeout")
  ),
  pollIntervalMs: Schema.optionalWith(SecondsAsMillis, { default: () => 2_000 }).pipe(
    Schema.fromKey("semaphore_poll_interval")
  )
})
export type SemaphoreServiceSettings = typeof SemaphoreServiceSettings.Type

/** A model name as clients send it in a request body's `model`; `*` in `models:` matches any run of characters. */
const ModelName = Schema.String.pipe(
  Schema.filter((name) => name.trim() === name && name !== "", {
    message: () => "expected a model name (not empty, no leading or trailing spaces)"
  })
)
/** One model, never a glob: what an alias is rewritten to. */
const ExactModelName = ModelName.pipe(
  Schema.filter((name) => !name.includes("*"), { message: () => "expected one model name, not a `*` glob" })
)

const serviceFields = {
  baseUrl: HttpUrl.pipe(Schema.propertySignature, Schema.fromKey("base_url")),
  healthUrl: orUndefined(HttpUrl).pipe(Schema.fromKey("health_url")),
  warmupMs: Schema.optionalWith(Millis, { default: () => 2_000 }).pipe(Schema.fromKey("warmup_ms")),
  idleTimeoutMs: Schema.optionalWith(Millis, { default: () => 300_000 }).pipe(Schema.fromKey("idle_timeout_ms")),
  queueSize: Schema.optionalWith(PositiveInt, { default: () => 100 }).pipe(Schema.fromKey("queue_size")),
  /** How long a request waits for a start (then QueueTimeout; the start goes on). */
  requestTimeoutMs: Schema.optionalWith(SecondsAsMillis, { default: () => 60_000 }).pipe(
    Schema.fromKey("request_timeout_seconds")
  ),
  /** How long one start attempt may take to turn healthy (then ReadinessTimeout); long enough for model servers. */
  startupTimeoutMs: Schema.optionalWith(SecondsAsMillis, { default: () => 300_000 }).pipe(
    Schema.fromKey("startup_timeout_seconds")
  ),
  retryCount: Schema.optionalWith(Schema.NonNegativeInt, { default: () => 2 }).pipe(Schema.fromKey("retry_count")),
  retryDelayMs: Schema.optionalWith(Millis, { default: () => 1_000 }).pipe(Schema.fromKey("retry_delay_ms")),
  fallbackUrl: orUndefined(HttpUrl).pipe(Schema.fromKey("fallback_url")),
  machines: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [] }),
  command: orUndefined(Command),
  cwd: orUndefined(Schema.String),
  env: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.String }), { default: () => ({}) }),
  stopGraceMs: Schema.optionalWith(Millis, { default: () => 5_000 }).pipe(Schema.fromKey("stop_grace_ms")),
  /** Requests forwarded to the service at once; 0 = no limit but the connection pool's. */
  maxConcurrentRequests: Schema.optionalWith(Schema.NonNegativeInt, { default: () => 0 }).pipe(
    Schema.fromKey("max_concurrent_requests")
  ),
  /** An upload that sends nothing for this long is ended with 408; 0 = never. */
  bodyIdleTimeoutMs: Schema.optionalWith(SecondsOrNeverAsMillis, { default: () => 30_000 }).pipe(
    Schema.fromKey("body_idle_timeout_seconds")
  ),
  /** From a request sent upstream to the upstream's response headers; then 504 UpstreamTimeout. */
  upstreamTimeoutMs: Schema.optionalWith(SecondsAsMillis, { default: () => 300_000 }).pipe(
    Schema.fromKey("upstream_timeout_seconds")
  ),
  /** A response body silent for this long is cut; 0 = never (streams may be quiet for long). */
  streamIdleTimeoutMs: Schema.optionalWith(SecondsOrNeverAsMillis, { default: () => 0 }).pipe(
    Schema.fromKey("stream_idle_timeout_seconds")
  ),
  /** A browser navigation to it while cold or starting gets the gateway's waiting page instead of blocking. */
  waitingPage: Schema.optionalWith(Flag, { default: () => false }).pipe(Schema.fromKey("waiting_page")),
  /** A container service: an existing container by name, or one created from `image` (see ContainerConfig). */
  container: orUndefined(ContainerBlock),
  /** What it serves on the model endpoints (`/openai/v1`, `/ollama/api`): exact names and `*` globs. */
  models: Schema.optionalWith(Schema.Array(ModelName), { default: () => [] }),
  /** Names clients may ask for instead: rewritten in the request body to the upstream's own name. */
  modelAliases: Schema.optionalWith(Schema.Record({ key: ModelName, value: ExactModelName }), {
    default: () => ({})
  }).pipe(Schema.fromKey("model_aliases")),
  /** The name of a strategy plugin from `strategies_dir`; the gateway refuses to start when none has it. */
  strategy: orUndefined(Schema.NonEmptyString),
  /**
   * Several upstreams behind this service (one that Hestia does not start): each request goes to one of them, by a
   * balance strategy or the default rule (see InstanceSet).
   */
  instances: Schema.optionalWith(Schema.Array(Instance), { nullable: true, default: () => [] })
}

/** In the file `base_url` may be left out when `instances` is given: the first instance's URL stands in for it. */
const fileFields = {
  ...serviceFields,
  baseUrl: Schema.optional(HttpUrl).pipe(Schema.fromKey("base_url"))
}

/**
 * Keys of the first Hestia that mean nothing here yet, and what to use instead. Each one set (not null) is accepted
 * with one warning.
 */
export const deprecatedServiceKeys: Readonly<Record<string, string>> = {
  routing:
    "the key is ignored; to route by the body's model, declare one service per upstream with its models: (and model_aliases:) and call the model endpoints, /openai/v1 and /ollama/api"
}

/** Accepted (with their warning) and dropped: nothing reads them yet. */
const droppedFields = { routing: Schema.optional(Schema.Unknown) }
const droppedKeys = Object.keys(droppedFields) as Array<keyof typeof droppedFields>
const semaphoreKeys = Object.keys(SemaphoreServiceSettings.fields) as Array<
  keyof typeof SemaphoreServiceSettings.fields
>

/** Where a service was declared: the config file (and environment), or a container's `hestia.*` labels. */
export const ServiceSource = Schema.Literal("config", "labels")
export type ServiceSource = typeof ServiceSource.Type

/** A service as the rest of the gateway reads it: its id (the key under `services:`) and its orchestrator kind. */
export const ServiceConfig = Schema.Struct({
  id: Schema.String,
  kind: OrchestratorKind,
  source: ServiceSource,
  ...serviceFields,
  semaphore: SemaphoreServiceSettings
})
export type ServiceConfig = typeof ServiceConfig.Type

const kindOf = (service: Omit<ServiceConfig, "id" | "kind" | "source">): OrchestratorKind =>
  service.semaphore.enabled
    ? "semaphore"
    : service.command !== undefined
      ? "process"
      : service.container !== undefined
        ? "container"
        : "external"

type Entry = Omit<ServiceConfig, "id" | "kind" | "source">

/** The domain service for an entry once its id (and where it came from) is known. */
export const serviceOf = (id: string, entry: Entry, source: ServiceSource = "config"): ServiceConfig => ({
  id,
  kind: kindOf(entry),
  source,
  ...entry,
  container: entry.container && { ...entry.container, name: entry.container.name || `hestia-${id}` }
})

/** `base_url`, for the "is missing" of a service that has neither it nor `instances`. */
const baseUrlKey = new SchemaAST.PropertySignature("base_url", HttpUrl.ast, false, true)

/** One entry under `services:` (the file's flat mapping), decoded to a `ServiceConfig` once its id is known. */
export const ServiceEntry = Schema.transformOrFail(
  Schema.Struct({ ...fileFields, ...SemaphoreServiceSettings.fields, ...droppedFields }),
  Schema.typeSchema(Schema.Struct({ ...serviceFields, semaphore: SemaphoreServiceSettings })),
  {
    strict: true,
    decode: (flat) => {
      const baseUrl = flat.baseUrl ?? flat.instances[0]?.url
      if (baseUrl === undefined) {
        return ParseResult.fail(new ParseResult.Pointer("base_url", flat, new ParseResult.Missing(baseUrlKey)))
      }
      return ParseResult.succeed({
        ...Struct.omit(flat, ...droppedKeys, ...semaphoreKeys),
        baseUrl,
        semaphore: Struct.pick(flat, ...semaphoreKeys)
      })
    },
    encode: ({ semaphore, ...rest }) => ParseResult.succeed({ ...rest, ...semaphore })
  }
)

const ServiceId = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9_-]*$/, {
    message: () => "service ids use letters, digits, '-' and '_' only"
  })
)

/** `services:`, in file order. */
export const Services = Schema.transform(
  Schema.Record({ key: ServiceId, value: ServiceEntry }),
  Schema.ReadonlyMapFromSelf({ key: Schema.String, value: Schema.typeSchema(ServiceConfig) }),
  {
    strict: true,
    decode: (entries) => new Map(Object.entries(entries).map(([id, entry]) => [id, serviceOf(id, entry)] as const)),
    encode: (services) =>
      Object.fromEntries([...services].map(([id, { id: _, kind: __, source: ___, ...entry }]) => [id, entry] as const))
  }
)

/** The file keys of a service (`base_url`, `semaphore_enabled`, ...), for `<SERVICE>_<KEY>` overrides. */
export const serviceFileKeys = fileKeys(ServiceEntry)
