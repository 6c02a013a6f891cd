import { Clock, Duration, Effect, Metric, MetricState, Queue, Schedule } from "effect"
import { LiveConfig } from "../config/LiveConfig.ts"
import { type LifecycleEvent, LifecycleEvents } from "../registry/LifecycleEvents.ts"

const REQUESTS_TOTAL = "hestia_requests_total"

/** How often request counters are sampled, and how far back the history reaches. */
export const SAMPLE_INTERVAL = Duration.seconds(10)
export const HISTORY_WINDOW = Duration.hours(1)
/** Samples kept per service: one window's worth, plus the one before it (a rate needs two). */
export const MAX_SAMPLES = Math.ceil(Duration.toMillis(HISTORY_WINDOW) / Duration.toMillis(SAMPLE_INTERVAL)) + 1
/** Cold starts kept per service (within the window). */
export const MAX_COLD_STARTS = 100

export interface RequestRate {
  /** End of the interval, ms. */
  readonly at: number
  readonly perSecond: number
}

export interface ColdStartPoint {
  readonly at: number
  readonly durationMs: number
  readonly outcome: "success" | "failure"
  readonly machine: string | null
}

export interface ServiceHistory {
  readonly requests: ReadonlyArray<RequestRate>
  readonly coldStarts: ReadonlyArray<ColdStartPoint>
}

interface Series {
  /** [clock ms, requests counted so far], oldest first. */
  readonly samples: Array<readonly [number, number]>
  readonly coldStarts: Array<ColdStartPoint>
}

/** Keep the newest `max` entries. */
const bound = <A>(items: Array<A>, max: number) => {
  if (items.length > max) items.splice(0, items.length - max)
}

/**
 * The last hour of the gateway's own metrics, in memory, for the dashboard's charts: each service's request counter
 * (`hestia_requests_total`, every status class) sampled every SAMPLE_INTERVAL on Effect's Clock, and its cold-start
 * durations from the lifecycle events that also feed `hestia_cold_start_duration_seconds`. Bounded per service.
 */
export class MetricsHistory extends Effect.Service<MetricsHistory>()("hestia/MetricsHistory", {
  scoped: Effect.gen(function* () {
    const live = yield* LiveConfig
    const events = yield* LifecycleEvents
    const series = new Map<string, Series>(
      Array.from(live.current().services.keys(), (id) => [id, { samples: [], coldStarts: [] }] as const)
    )
    // A reload adds the new services' series and drops the removed ones', so the map stays bounded by the config.
    yield* live.follow({
      apply: (next) =>
        Effect.sync(() => {
          for (const id of series.keys()) if (!next.services.has(id)) series.delete(id)
          for (const id of next.services.keys()) if (!series.has(id)) series.set(id, { samples: [], coldStarts: [] })
        })
    })

    /** Requests counted so far per service: the sum of every status class. */
    const counted = Effect.map(Metric.snapshot, (pairs) => {
      const totals = new Map<string, number>()
      for (const pair of pairs) {
        if (pair.metricKey.name !== REQUESTS_TOTAL) continue
        if (!MetricState.isCounterState(pair.metricState)) continue
        const service = pair.metricKey.tags.find((tag) => tag.key === "service")?.value
        if (service === undefined || !series.has(service)) continue
        totals.set(service, (totals.get(service) ?? 0) + Number(pair.metricState.count))
      }
      return totals
    })

    const sample = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const totals = yield* counted
      for (const [id, entry] of series) {
        entry.samples.push([now, totals.get(id) ?? 0])
        bound(entry.samples, MAX_SAMPLES)
      }
    })
    yield* sample.pipe(Effect.repeat(Schedule.spaced(SAMPLE_INTERVAL)), Effect.forkScoped)

    const recordColdStart = (event: LifecycleEvent) => {
      if (event.type !== "ready" && event.type !== "start_failed") return
      const entry = series.get(event.serviceId)
      if (entry === undefined) return
      entry.coldStarts.push({
        at: event.at,
        durationMs: event.durationMs,
        outcome: event.type === "ready" ? "success" : "failure",
        machine: event.machineId ?? null
      })
      bound(entry.coldStarts, MAX_COLD_STARTS)
    }
    const subscription = yield* events.subscribe
    yield* Queue.take(subscription).pipe(Effect.map(recordColdStart), Effect.forever, Effect.forkScoped)

    /**
     * One service's last hour: requests per second per interval, and each cold start, oldest first. The last point
     * covers the interval in progress (from the last sample to now, once it is a second long), so a chart moves at once.
     */
    const history = (serviceId: string, now: number, current: number): ServiceHistory => {
      const entry = series.get(serviceId)
      if (entry === undefined) return { requests: [], coldStarts: [] }
      const since = now - Duration.toMillis(HISTORY_WINDOW)
      const requests: Array<RequestRate> = []
      for (let i = 1; i < entry.samples.length; i++) {
        const [at, total] = entry.samples[i]!
        const [before, previous] = entry.samples[i - 1]!
        if (at <= since || at <= before) continue
        requests.push({ at, perSecond: Math.max(0, total - previous) / ((at - before) / 1000) })
      }
      const last = entry.samples.at(-1)
      if (last !== undefined && now - last[0] >= 1_000) {
        requests.push({ at: now, perSecond: Math.max(0, current - last[1]) / ((now - last[0]) / 1000) })
      }
      return { requests, coldStarts: entry.coldStarts.filter((point) => point.at > since) }
    }

    return {
      /** Every service's history, or one's (`GET /v1/metrics/history`). */
      read: (serviceId?: string) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const totals = yield* counted
          const ids = serviceId === undefined ? [...series.keys()] : [serviceId]
          return {
            intervalMs: Duration.toMillis(SAMPLE_INTERVAL),
            windowMs: Duration.toMillis(HISTORY_WINDOW),
            services: Object.fromEntries(ids.map((id) => [id, history(id, now, totals.get(id) ?? 0)]))
          }
        })
    }
  }),
  dependencies: [LifecycleEvents.Default, LiveConfig.Default]
}) {}
