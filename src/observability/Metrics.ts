import { Effect, Metric, MetricBoundaries, MetricLabel, MetricState, Option, Queue } from "effect"
import type * as MetricPair from "effect/MetricPair"
import { LiveConfig } from "../config/LiveConfig.ts"
import { type LifecycleEvent, LifecycleEvents, type ServiceStatus } from "../registry/LifecycleEvents.ts"
import { ServiceRegistry } from "../registry/ServiceRegistry.ts"

// ---------------------------------------------------------------------------
// The metrics. Effect's global Metric registry holds them; each is defined once here (a metric's key includes its
// description, so a second definition would be a second series).
// ---------------------------------------------------------------------------

const REQUEST_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
const START_SECONDS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600]

export const requestsTotal = Metric.counter("hestia_requests_total", {
  description: "Requests to services by service and status class (499: the client left before any answer)."
})
export const requestDuration = Metric.histogram(
  "hestia_request_duration_seconds",
  MetricBoundaries.fromIterable(REQUEST_SECONDS),
  "Time from a request's arrival to the end of its response, cold-start wait included, by service."
)
export const coldStartsTotal = Metric.counter("hestia_cold_starts_total", {
  description: "Cold starts by service and outcome (success, failure)."
})
export const coldStartDuration = Metric.histogram(
  "hestia_cold_start_duration_seconds",
  MetricBoundaries.fromIterable(START_SECONDS),
  "Time from start requested to ready (or to giving up), by service and outcome."
)
export const queueWait = Metric.histogram(
  "hestia_queue_wait_seconds",
  MetricBoundaries.fromIterable(START_SECONDS),
  "Time a request waited for its service to become ready before being forwarded, by service."
)
export const queueDepth = Metric.gauge("hestia_queue_depth", {
  description: "Requests waiting for their service to become ready."
})
export const inFlight = Metric.gauge("hestia_in_flight", {
  description: "Requests being forwarded to the service right now (open streams included)."
})
export const websocketsOpen = Metric.gauge("hestia_websockets_open", {
  description: "Websockets open through the gateway, by service (each holds its service from its idle stop)."
})
export const instanceHealthy = Metric.gauge("hestia_instance_healthy", {
  description:
    "1 while an instance of a service with instances: is in rotation, 0 while it is taken out (refused or reset a connection, its health not back yet)."
})
export const serviceState = Metric.gauge("hestia_service_state", {
  description: "1 for the state each service is in (cold, starting, hot, stopping), 0 for the others."
})
export const idleStopsTotal = Metric.counter("hestia_idle_stops_total", {
  description: "Services stopped after idle_timeout_ms without requests."
})
export const evictionsTotal = Metric.counter("hestia_evictions_total", {
  description: "Services stopped to make room for another member of their exclusive group."
})
export const startupAttemptsTotal = Metric.counter("hestia_startup_attempts_total", {
  description: "Start attempts (orchestrator start + readiness) by service, machine and outcome (success, failure)."
})

const STATES: ReadonlyArray<ServiceStatus> = ["cold", "starting", "hot", "stopping"]

/** The label value for requests to something that is not a configured service: bounded, never the raw id. */
export const UNKNOWN_SERVICE = "_unknown"

const CLASSES = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"] as const

/** 200 → "2xx": requests are labelled by status class, never by exact code or path, so series stay few. */
export const statusClass = (status: number) => (status >= 100 && status < 600 ? CLASSES[(status / 100) | 0]! : "none")

const label = MetricLabel.make

// ---------------------------------------------------------------------------
// Request metrics for the proxy's node:http listener: synchronous updates on precomputed label arrays (each
// array's identity is the metric's cache key, so an update is a WeakMap hit and an addition).
// ---------------------------------------------------------------------------

export interface RequestRecorder {
  readonly observe: (serviceId: string, status: number, seconds: number) => void
}

interface ServiceLabels {
  readonly byClass: Readonly<Record<string, ReadonlyArray<MetricLabel.MetricLabel>>>
  readonly service: ReadonlyArray<MetricLabel.MetricLabel>
}

const labelsFor = (serviceId: string): ServiceLabels => ({
  byClass: Object.fromEntries(
    CLASSES.map((code) => [code, [label("service", serviceId), label("code", code)]] as const)
  ),
  service: [label("service", serviceId)]
})

/** `isService` tells configured ids from anything else a client typed, which all count as `_unknown`. */
export const requestRecorder = (isService: (serviceId: string) => boolean): RequestRecorder => {
  const known = new Map<string, ServiceLabels>()
  const unknown = labelsFor(UNKNOWN_SERVICE)
  const labels = (serviceId: string) => {
    let found = known.get(serviceId)
    if (found === undefined) {
      if (!isService(serviceId)) return unknown
      found = labelsFor(serviceId)
      known.set(serviceId, found)
    }
    return found
  }
  return {
    observe: (serviceId, status, seconds) => {
      const { byClass, service } = labels(serviceId)
      requestsTotal.unsafeUpdate(1, byClass[statusClass(status)]!)
      requestDuration.unsafeUpdate(seconds, service)
    }
  }
}

// ---------------------------------------------------------------------------
// Exposition: Prometheus text format 0.0.4, and JSON.
// ---------------------------------------------------------------------------

const METRIC_NAME = /[^a-zA-Z0-9_:]/g
const LABEL_NAME = /[^a-zA-Z0-9_]/g

const metricName = (name: string) => name.replace(METRIC_NAME, "_").replace(/^(?=\d)/, "_")
const labelName = (name: string) => name.replace(LABEL_NAME, "_").replace(/^(?=\d)/, "_")
const escapeLabel = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')
const escapeHelp = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

const number = (value: number | bigint) => {
  if (typeof value === "bigint") return value.toString()
  if (Number.isNaN(value)) return "NaN"
  if (value === Number.POSITIVE_INFINITY) return "+Inf"
  if (value === Number.NEGATIVE_INFINITY) return "-Inf"
  return String(value)
}

const labelText = (labels: ReadonlyArray<readonly [string, string]>) =>
  labels.length === 0 ? "" : `{${labels.map(([key, value]) => `${labelName(key)}="${escapeLabel(value)}"`).join(",")}}`

type PromType = "counter" | "gauge" | "histogram" | "summary"

const promType = (state: unknown): PromType | undefined => {
  if (MetricState.isCounterState(state) || MetricState.isFrequencyState(state)) return "counter"
  if (MetricState.isGaugeState(state)) return "gauge"
  if (MetricState.isHistogramState(state)) return "histogram"
  if (MetricState.isSummaryState(state)) return "summary"
  return undefined
}

const samplesOf = (name: string, labels: Array<readonly [string, string]>, state: unknown): Array<string> => {
  const line = (suffix: string, extra: Array<readonly [string, string]>, value: number | bigint) =>
    `${name}${suffix}${labelText([...labels, ...extra])} ${number(value)}`
  if (MetricState.isCounterState(state)) return [line("", [], state.count)]
  if (MetricState.isGaugeState(state)) return [line("", [], state.value)]
  if (MetricState.isFrequencyState(state)) {
    return Array.from(state.occurrences, ([key, count]) => line("", [["key", key]], count))
  }
  if (MetricState.isHistogramState(state)) {
    return [
      ...state.buckets.map(([le, count]) => line("_bucket", [["le", number(le)]], count)),
      line("_sum", [], state.sum),
      line("_count", [], state.count)
    ]
  }
  if (MetricState.isSummaryState(state)) {
    return [
      ...state.quantiles.map(([q, value]) =>
        line(
          "",
          [["quantile", number(q)]],
          Option.getOrElse(value, () => NaN)
        )
      ),
      line("_sum", [], state.sum),
      line("_count", [], state.count)
    ]
  }
  return []
}

const labelsOf = (pair: MetricPair.MetricPair.Untyped) =>
  pair.metricKey.tags.map((tag) => [tag.key, tag.value] as const).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))

/** Every metric in Effect's registry as Prometheus text: one HELP and TYPE per family, its samples grouped. */
export const renderPrometheus = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>) => {
  const families = new Map<string, { type: PromType; help: string | undefined; series: Array<Array<string>> }>()
  for (const pair of pairs) {
    const type = promType(pair.metricState)
    if (type === undefined) continue
    const name = metricName(pair.metricKey.name)
    let family = families.get(name)
    if (family === undefined) {
      family = { type, help: Option.getOrUndefined(pair.metricKey.description), series: [] }
      families.set(name, family)
    } else if (family.type !== type) continue // one name, one type: a clash is left out rather than made invalid
    const labels = labelsOf(pair)
    family.series.push([labelText(labels), ...samplesOf(name, labels, pair.metricState)])
  }
  const out: Array<string> = []
  for (const name of [...families.keys()].sort()) {
    const family = families.get(name)!
    if (family.help !== undefined) out.push(`# HELP ${name} ${escapeHelp(family.help)}`)
    out.push(`# TYPE ${name} ${family.type}`)
    family.series.sort((a, b) => (a[0]! < b[0]! ? -1 : a[0]! > b[0]! ? 1 : 0))
    for (const [, ...lines] of family.series) out.push(...lines)
  }
  return out.length === 0 ? "" : `${out.join("\n")}\n`
}

/** The gateway's own metrics. Effect's runtime ones (e.g. effect_fiber_active, a "counter" that goes down) stay out. */
export const PREFIX = "hestia_"

/** The registry as Prometheus text, as it is now: every metric whose name starts with `prefix`. */
export const prometheusText = (prefix = "") =>
  Effect.map(Metric.snapshot, (pairs) =>
    renderPrometheus(pairs.filter((pair) => pair.metricKey.name.startsWith(prefix)))
  )

export interface JsonMetric {
  readonly name: string
  readonly type: PromType
  readonly help?: string
  readonly labels: Readonly<Record<string, string>>
  readonly value?: number
  readonly count?: number
  readonly sum?: number
  readonly min?: number
  readonly max?: number
  /** Cumulative: [upper bound, observations at or below it]; the last bound is "+Inf". */
  readonly buckets?: ReadonlyArray<readonly [number | "+Inf", number]>
  readonly quantiles?: ReadonlyArray<readonly [number, number | null]>
  readonly occurrences?: Readonly<Record<string, number>>
}

const toJson = (pair: MetricPair.MetricPair.Untyped): JsonMetric | undefined => {
  const state: unknown = pair.metricState
  const type = promType(state)
  if (type === undefined) return undefined
  const description = Option.getOrUndefined(pair.metricKey.description)
  const base = {
    name: metricName(pair.metricKey.name),
    type,
    ...(description === undefined ? {} : { help: description }),
    labels: Object.fromEntries(labelsOf(pair))
  }
  if (MetricState.isCounterState(state)) return { ...base, value: Number(state.count) }
  if (MetricState.isGaugeState(state)) return { ...base, value: Number(state.value) }
  if (MetricState.isFrequencyState(state)) return { ...base, occurrences: Object.fromEntries(state.occurrences) }
  const observed = (s: { count: number; sum: number; min: number; max: number }) =>
    s.count === 0 ? { count: 0, sum: 0 } : { count: s.count, sum: s.sum, min: s.min, max: s.max }
  if (MetricState.isHistogramState(state)) {
    return {
      ...base,
      ...observed(state),
      buckets: state.buckets.map(([le, count]) => [le === Number.POSITIVE_INFINITY ? "+Inf" : le, count] as const)
    }
  }
  if (MetricState.isSummaryState(state)) {
    return {
      ...base,
      ...observed(state),
      quantiles: state.quantiles.map(([q, value]) => [q, Option.getOrNull(value)] as const)
    }
  }
  return undefined
}

// ---------------------------------------------------------------------------
// The service: lifecycle metrics follow the event bus; gauges are sampled from the registry when read.
// ---------------------------------------------------------------------------

const record = (event: LifecycleEvent) => {
  const service = label("service", event.serviceId)
  switch (event.type) {
    case "ready":
      return Effect.all(
        [
          Metric.increment(Metric.taggedWithLabels(coldStartsTotal, [service, label("outcome", "success")])),
          Metric.update(
            Metric.taggedWithLabels(coldStartDuration, [service, label("outcome", "success")]),
            event.durationMs / 1000
          ),
          Metric.increment(
            Metric.taggedWithLabels(startupAttemptsTotal, [
              service,
              label("machine", event.machineId ?? "unknown"),
              label("outcome", "success")
            ])
          )
        ],
        { discard: true }
      )
    case "start_failed":
      return Effect.all(
        [
          Metric.increment(Metric.taggedWithLabels(coldStartsTotal, [service, label("outcome", "failure")])),
          Metric.update(
            Metric.taggedWithLabels(coldStartDuration, [service, label("outcome", "failure")]),
            event.durationMs / 1000
          )
        ],
        { discard: true }
      )
    case "attempt_failed":
      return Metric.increment(
        Metric.taggedWithLabels(startupAttemptsTotal, [
          service,
          label("machine", event.machineId ?? "unknown"),
          label("outcome", "failure")
        ])
      )
    case "idle_stop":
      return Metric.increment(Metric.taggedWithLabels(idleStopsTotal, [service]))
    case "evicted":
      return Metric.increment(Metric.taggedWithLabels(evictionsTotal, [service]))
    case "request_released":
      return Metric.update(Metric.taggedWithLabels(queueWait, [service]), event.waitedMs / 1000)
    default:
      return Effect.void
  }
}

/**
 * Queue depth, in-flight requests, state and the instances' health are the registry's own counters: read at scrape
 * time, they cannot drift.
 */
const sampleGauges = Effect.gen(function* () {
  const registry = yield* ServiceRegistry
  for (const view of yield* registry.list) {
    const service = label("service", view.serviceId)
    yield* Metric.set(Metric.taggedWithLabels(queueDepth, [service]), view.queuePending)
    yield* Metric.set(Metric.taggedWithLabels(inFlight, [service]), view.inFlight)
    for (const instance of view.instances ?? []) {
      yield* Metric.set(
        Metric.taggedWithLabels(instanceHealthy, [service, label("instance", instance.url)]),
        instance.healthy ? 1 : 0
      )
    }
    for (const state of STATES) {
      yield* Metric.set(
        Metric.taggedWithLabels(serviceState, [service, label("state", state)]),
        view.state === state ? 1 : 0
      )
    }
  }
})

export class Metrics extends Effect.Service<Metrics>()("hestia/Metrics", {
  scoped: Effect.gen(function* () {
    const live = yield* LiveConfig
    const events = yield* LifecycleEvents
    const subscription = yield* events.subscribe
    // Counters every service has from the start (or from the reload that added it), so a rate over them is defined
    // before the first event.
    const zeroed = (ids: Iterable<string>) =>
      Effect.forEach(
        ids,
        (id) => {
          const service = label("service", id)
          return Effect.all(
            [
              ...["success", "failure"].map((outcome) =>
                Metric.incrementBy(Metric.taggedWithLabels(coldStartsTotal, [service, label("outcome", outcome)]), 0)
              ),
              Metric.incrementBy(Metric.taggedWithLabels(idleStopsTotal, [service]), 0)
            ],
            { discard: true }
          )
        },
        { discard: true }
      )
    yield* zeroed(live.current().services.keys())
    yield* live.follow({
      apply: (next, previous) => zeroed([...next.services.keys()].filter((id) => !previous.services.has(id)))
    })
    yield* Queue.take(subscription).pipe(Effect.flatMap(record), Effect.forever, Effect.forkScoped)

    return {
      /** `GET /metrics`. */
      prometheus: Effect.zipRight(sampleGauges, prometheusText(PREFIX)),
      /** `GET /v1/metrics` (all) and `GET /v1/services/{id}/metrics` (the series labelled with that service). */
      json: (serviceId?: string) =>
        Effect.gen(function* () {
          yield* sampleGauges
          const metrics: Array<JsonMetric> = []
          for (const pair of yield* Metric.snapshot) {
            if (!pair.metricKey.name.startsWith(PREFIX)) continue
            const metric = toJson(pair)
            if (metric === undefined) continue
            if (serviceId !== undefined && metric.labels.service !== serviceId) continue
            metrics.push(metric)
          }
          metrics.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
          return serviceId === undefined ? { metrics } : { serviceId, metrics }
        })
    }
  }),
  dependencies: [LifecycleEvents.Default, LiveConfig.Default]
}) {}
