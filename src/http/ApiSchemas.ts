import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import type { ReloadOutcome } from "../config/LiveConfig.ts"
import { AttemptInProgress, StartAttempt } from "../domain/Errors.ts"
import type { JsonMetric } from "../observability/Metrics.ts"
import type { ServiceHistory } from "../observability/MetricsHistory.ts"
import type { ContainerView } from "../orchestrators/ContainerRecords.ts"
import type { AutomationView } from "../orchestrators/SemaphoreTasks.ts"
import type { ServiceStatusView } from "../registry/ServiceOwner.ts"
import type { ActivityEntry } from "../store/ActivityLog.ts"
import { type StoreStatus, WRITE_OPERATIONS } from "../store/StoreHealth.ts"
import type { StrategiesView } from "../strategies/Strategies.ts"
import { flagParam, intParam, param, strictParams, wholeNumber } from "./SearchParams.ts"

// The schemas of the control API's requests and answers (src/http/ControlApi.ts declares the routes with them). The
// server encodes its answers with these schemas and the CLI decodes them; the types they describe are checked against
// the gateway's own at the bottom of this file, so a field added there and not here fails the type check.

// ---------------------------------------------------------------------------
// Paths and query parameters
// ---------------------------------------------------------------------------

export const ServicePath = Schema.Struct({ id: Schema.String.annotations({ description: "the service id" }) })
export const GroupPath = Schema.Struct({ name: Schema.String.annotations({ description: "the group name" }) })

/** `?wait=true`: answer once the service is hot (200), or with the start's typed error. */
export const StartParams = strictParams({ wait: Schema.optional(flagParam("wait")) })

export const DEFAULT_ACTIVITY_LIMIT = 100
export const MAX_ACTIVITY_LIMIT = 1_000

const Before = param(
  "before",
  "an activity id or an ISO-8601 time such as 2025-01-31T12:00:00Z",
  (text): { readonly id: number } | { readonly ts: number } | undefined => {
    const id = wholeNumber(text)
    if (id !== undefined) return id > 0 ? { id } : undefined
    const ts = /^\d{4}-\d\d-\d\dT/.test(text) ? Date.parse(text) : Number.NaN
    return Number.isNaN(ts) ? undefined : { ts }
  },
  (before) => ("id" in before ? String(before.id) : new Date(before.ts).toISOString()),
  { type: "string" }
)

const ServiceIdParam = Schema.NonEmptyString.annotations({
  message: () => "serviceId must not be empty",
  description: "one service's rows only"
})

/** `?serviceId=&limit=&before=`: `before` is a row id (the previous page's `nextBefore`) or an ISO-8601 time. */
export const ActivityParams = strictParams({
  serviceId: Schema.optional(ServiceIdParam),
  limit: Schema.optional(intParam("limit", 1, MAX_ACTIVITY_LIMIT)),
  before: Schema.optional(Before)
})

export const DEFAULT_TAIL = 100
/** The ring's size (ServiceLogs.RING_LINES), the most a tail can ask for. */
export const MAX_TAIL = 1_000

/** `?tail=N&follow=1`: the last N lines (0–1000, default 100); with follow, then every new line as SSE. */
export const LogsParams = strictParams({
  tail: Schema.optional(intParam("tail", 0, MAX_TAIL)),
  follow: Schema.optional(flagParam("follow"))
})

/** `?serviceId=`: one service's history, else every service's. */
export const HistoryParams = strictParams({ serviceId: Schema.optional(ServiceIdParam) })

// ---------------------------------------------------------------------------
// Service status
// ---------------------------------------------------------------------------

const exact = <S extends Schema.Schema.Any>(schema: S) => Schema.optionalWith(schema, { exact: true })
const Iso = Schema.String.annotations({ description: "ISO-8601 time" })

export const ServiceState = Schema.Literal("cold", "starting", "hot", "stopping")

const TaskView = Schema.Struct({
  id: Schema.Number,
  template_id: Schema.Number,
  action: Schema.Literal("start", "stop"),
  status: Schema.String,
  machine_id: Schema.String,
  started_at: Iso,
  finished_at: Schema.NullOr(Iso)
})

const Automation = Schema.Struct({
  enabled: Schema.Boolean,
  provider: Schema.Literal("semaphore"),
  machine_id: Schema.NullOr(Schema.String),
  current_task: Schema.NullOr(TaskView),
  last_task: Schema.NullOr(TaskView)
}).annotations({ identifier: "Automation", description: "a Semaphore service's current and last task" })

const Container = Schema.Struct({
  engine: Schema.String,
  machine_id: Schema.String,
  name: Schema.String,
  id: Schema.NullOr(Schema.String),
  image: Schema.NullOr(Schema.String),
  state: Schema.NullOr(Schema.String),
  created_by_hestia: Schema.Boolean
}).annotations({ identifier: "Container", description: "a container service's container, image and engine" })

const statusFields = {
  serviceId: Schema.String,
  state: ServiceState,
  readiness: Schema.Literal("ready", "not_ready"),
  machineId: Schema.NullOr(Schema.String),
  baseUrl: Schema.String,
  queuePending: Schema.Number,
  queueCapacity: Schema.Number,
  inFlight: Schema.Number,
  lastActivity: Schema.NullOr(Iso),
  lastError: Schema.NullOr(
    Schema.Struct({ error: Schema.String, message: Schema.String, attempts: Schema.Array(StartAttempt) })
  ),
  group: exact(Schema.String),
  waitingFor: exact(Schema.String.annotations({ description: "the group member that must stop first" })),
  draining: exact(Schema.Struct({ by: Schema.String, since: Iso })),
  attempt: exact(AttemptInProgress),
  automation: exact(Automation),
  container: exact(Container),
  instances: exact(
    Schema.Array(
      Schema.Struct({ url: Schema.String, healthy: Schema.Boolean, inFlight: Schema.Number }).annotations({
        identifier: "Instance",
        description: "one of the service's instances: in rotation (healthy) or taken out, and its requests in flight"
      })
    )
  ),
  source: Schema.Literal("config", "labels")
}

export const ServiceStatus = Schema.Struct(statusFields).annotations({
  identifier: "ServiceStatus",
  description: "a service's state, queue, placement and last error"
})

export const ServiceList = Schema.Struct({ services: Schema.Array(ServiceStatus) })

/** A start's answer: the status, and whether this call started it (false: it was hot already). */
export const StartAnswer = Schema.Struct({ ...statusFields, started: Schema.Boolean }).annotations({
  identifier: "StartAnswer"
})

export const GroupStopAnswer = Schema.Struct({ group: Schema.String, services: Schema.Array(ServiceStatus) })

// ---------------------------------------------------------------------------
// Health, activity, logs, metrics, strategies
// ---------------------------------------------------------------------------

export const Health = Schema.Struct({
  status: Schema.Literal("ok", "degraded"),
  services: Schema.Number,
  auth: Schema.Literal("enabled", "disabled"),
  warning: exact(Schema.String),
  store: Schema.Struct({
    writes: Schema.Literal("ok", "failing"),
    writeFailures: Schema.Number,
    lastError: Schema.NullOr(
      Schema.Struct({
        operation: Schema.Literal(...WRITE_OPERATIONS),
        message: Schema.String,
        at: Iso
      })
    )
  })
}).annotations({ identifier: "Health" })

export const ActivityRow = Schema.Struct({
  id: Schema.Number,
  ts: Iso,
  serviceId: Schema.NullOr(Schema.String),
  machineId: Schema.NullOr(Schema.String),
  type: Schema.String,
  detail: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  requestId: Schema.NullOr(Schema.String)
}).annotations({ identifier: "ActivityRow" })

export const ActivityPage = Schema.Struct({
  activity: Schema.Array(ActivityRow),
  nextBefore: Schema.NullOr(Schema.Number).annotations({ description: "`before` of the next (older) page" })
})

export const LogLine = Schema.Struct({
  seq: Schema.Number,
  ts: Iso,
  stream: Schema.Literal("stdout", "stderr"),
  line: Schema.String
}).annotations({ identifier: "LogLine" })

export const LogTail = Schema.Struct({ serviceId: Schema.String, lines: Schema.Array(LogLine) })

const MetricJson = Schema.Struct({
  name: Schema.String,
  type: Schema.Literal("counter", "gauge", "histogram", "summary"),
  help: exact(Schema.String),
  labels: Schema.Record({ key: Schema.String, value: Schema.String }),
  value: exact(Schema.Number),
  count: exact(Schema.Number),
  sum: exact(Schema.Number),
  min: exact(Schema.Number),
  max: exact(Schema.Number),
  buckets: exact(Schema.Array(Schema.Tuple(Schema.Union(Schema.Number, Schema.Literal("+Inf")), Schema.Number))),
  quantiles: exact(Schema.Array(Schema.Tuple(Schema.Number, Schema.NullOr(Schema.Number)))),
  occurrences: exact(Schema.Record({ key: Schema.String, value: Schema.Number }))
}).annotations({ identifier: "Metric" })

export const MetricsJson = Schema.Struct({ metrics: Schema.Array(MetricJson) })
export const ServiceMetricsJson = Schema.Struct({ serviceId: Schema.String, metrics: Schema.Array(MetricJson) })

const History = Schema.Struct({
  requests: Schema.Array(Schema.Struct({ at: Schema.Number, perSecond: Schema.Number })),
  coldStarts: Schema.Array(
    Schema.Struct({
      at: Schema.Number,
      durationMs: Schema.Number,
      outcome: Schema.Literal("success", "failure"),
      machine: Schema.NullOr(Schema.String)
    })
  )
})

export const MetricsHistory = Schema.Struct({
  intervalMs: Schema.Number,
  windowMs: Schema.Number,
  services: Schema.Record({ key: Schema.String, value: History })
})

export const StrategyList = Schema.Struct({
  dir: Schema.String,
  timeoutMs: Schema.Number,
  strategies: Schema.Array(
    Schema.Struct({
      name: Schema.NullOr(Schema.String),
      kind: Schema.NullOr(Schema.Literal("routing", "placement", "balance")),
      file: Schema.NullOr(Schema.String),
      usedBy: Schema.Array(Schema.String),
      loadedAt: Schema.NullOr(Iso),
      running: Schema.Boolean,
      error: exact(Schema.String)
    })
  )
})

// ---------------------------------------------------------------------------
// POST /v1/requests
// ---------------------------------------------------------------------------

/** `POST /v1/requests`: a body that is a string is sent as is; any other JSON value is sent as JSON. */
export const DispatchBody = Schema.Struct({
  serviceId: Schema.NonEmptyString,
  method: Schema.Literal("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"),
  path: Schema.String,
  headers: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  body: Schema.optional(Schema.Unknown)
})

export const DispatchAnswer = Schema.Struct({
  status: Schema.Number,
  headers: Schema.Record({ key: Schema.String, value: Schema.Union(Schema.String, Schema.Array(Schema.String)) }),
  body: Schema.Unknown.annotations({
    description: "parsed JSON for JSON answers, text for textual ones, base64 otherwise; null when empty"
  }),
  bodyEncoding: exact(Schema.Literal("base64"))
}).annotations({ identifier: "DispatchAnswer", description: "the upstream's answer; the HTTP status is its status" })

// ---------------------------------------------------------------------------
// Text answers
// ---------------------------------------------------------------------------

export const EventStream = Schema.String.pipe(
  HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/event-stream" })
).annotations({ description: "Server-Sent Events" })

export const PrometheusText = Schema.String.pipe(
  HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/plain; version=0.0.4; charset=utf-8" })
).annotations({ description: "Prometheus text format 0.0.4" })

export const Html = Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/html" }))

const ServiceIds = Schema.Array(Schema.String)

/** `POST /v1/config/reload`: what the reload changed. */
export const ReloadAnswer = Schema.Struct({
  reloaded: Schema.Struct({
    source: Schema.String.annotations({ description: "the file (or the embedded default) read" }),
    trigger: Schema.Literal("file", "api", "signal"),
    added: ServiceIds,
    removed: ServiceIds.annotations({ description: "drained, stopped and never started again" }),
    changed: ServiceIds.annotations({ description: "take their new settings (a running one is restarted if needed)" }),
    restartNeeded: Schema.Array(Schema.String).annotations({
      description: "keys that changed but only take effect when the gateway restarts"
    })
  })
})

export const OpenApiDocument = Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({
  description: "this document"
})

// ---------------------------------------------------------------------------
// The schemas describe the gateway's own types exactly (checked by tsc: no field missing, none extra).
// ---------------------------------------------------------------------------

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
type Same<A, B> = Equals<DeepReadonly<A>, DeepReadonly<B>>
type DeepReadonly<T> =
  T extends ReadonlyArray<infer E>
    ? ReadonlyArray<DeepReadonly<E>>
    : T extends object
      ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
      : T
type Holds<T extends true> = T

export type SchemaChecks = [
  Holds<Same<typeof ServiceStatus.Type, ServiceStatusView>>,
  Holds<Same<typeof Automation.Type, AutomationView>>,
  Holds<Same<typeof Container.Type, ContainerView>>,
  Holds<Same<(typeof Health.Type)["store"], StoreStatus>>,
  Holds<Same<typeof ActivityRow.Type, ActivityEntry>>,
  Holds<Same<typeof MetricJson.Type, JsonMetric>>,
  Holds<Same<typeof History.Type, ServiceHistory>>,
  Holds<Same<typeof StrategyList.Type, StrategiesView>>,
  Holds<Same<(typeof ReloadAnswer.Type)["reloaded"], ReloadOutcome>>
]
