import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Clock, type Duration, Effect, Queue, Ref, Schedule, Stream } from "effect"
import { LiveConfig } from "../config/LiveConfig.ts"
import { TooManySubscribers, UnknownService } from "../domain/Errors.ts"
import { Metrics } from "../observability/Metrics.ts"
import { MetricsHistory } from "../observability/MetricsHistory.ts"
import { type LifecycleEvent, LifecycleEvents } from "../registry/LifecycleEvents.ts"
import { ServiceRegistry } from "../registry/ServiceRegistry.ts"
import { ControlApi } from "./ControlApi.ts"
import { Draining } from "./Shutdown.ts"

// ---------------------------------------------------------------------------
// Live events: `GET /v1/events` as Server-Sent Events.
// ---------------------------------------------------------------------------

export interface EventStreamOptions {
  /** Events held for one subscriber that reads too slowly; past it the subscriber is dropped. */
  readonly capacity?: number
  /** A comment line this often, so proxies and clients keep a quiet connection open. */
  readonly heartbeat?: Duration.DurationInput
}

const RECONNECT_MS = 3_000

const sseFrame = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

const iso = (ms: number) => new Date(ms).toISOString()

/** One lifecycle event as a frame: its type is the SSE event name; `machineId` is `machine`, `at` an ISO time. */
export const eventFrame = (event: LifecycleEvent) => {
  const { type, at, machineId, ...fields } = event
  return sseFrame(type, { ...fields, machine: machineId ?? null, at: iso(at) })
}

/**
 * The frames one subscriber receives: a `snapshot` of every service, then each lifecycle event as it happens, with
 * heartbeats. The bus hands events to a bounded buffer of `capacity`; a subscriber that lets it fill is sent a
 * `dropped` frame and closed (an EventSource reconnects and gets a fresh snapshot), so it never holds anyone up.
 */
export const eventStream = (
  options: EventStreamOptions = {}
): Stream.Stream<string, never, LifecycleEvents | ServiceRegistry> =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      const events = yield* LifecycleEvents
      const registry = yield* ServiceRegistry
      const capacity = options.capacity ?? 256
      const source = yield* events.subscribe
      const buffer = yield* Queue.dropping<LifecycleEvent>(capacity)
      const dropped = yield* Ref.make(false)
      // The bus's subscription queue is unbounded; this fiber keeps it empty and the bound is the buffer's.
      yield* Queue.take(source).pipe(
        Effect.flatMap((event) => Queue.offer(buffer, event)),
        Effect.repeat({ while: (accepted) => accepted }),
        Effect.zipRight(Ref.set(dropped, true)),
        Effect.zipRight(Queue.shutdown(buffer)),
        Effect.forkScoped
      )
      // Taken after subscribing: nothing falls between the snapshot and the first event.
      const services = yield* registry.list
      const snapshot = `retry: ${RECONNECT_MS}\n${sseFrame("snapshot", {
        services: services.map((view) => ({ serviceId: view.serviceId, state: view.state, machine: view.machineId })),
        at: iso(yield* Clock.currentTimeMillis)
      })}`
      const live = Stream.fromQueue(buffer).pipe(Stream.map(eventFrame))
      const heartbeats = Stream.fromSchedule(Schedule.spaced(options.heartbeat ?? "15 seconds")).pipe(
        Stream.as(": heartbeat\n\n")
      )
      const farewell = Stream.fromEffect(Ref.get(dropped)).pipe(
        Stream.filter((wasDropped) => wasDropped),
        Stream.as(sseFrame("dropped", { reason: "subscriber too slow", capacity }))
      )
      return Stream.make(snapshot).pipe(
        Stream.concat(Stream.merge(live, heartbeats, { haltStrategy: "left" })),
        Stream.concat(farewell)
      )
    })
  )

/** Open `/v1/events` streams at most; each holds a buffer and a fiber (about 175 KiB), so their number is bounded. */
export const MAX_EVENT_SUBSCRIBERS = 256

/** The count of open `/v1/events` streams, per gateway. */
export class EventSubscribers extends Effect.Service<EventSubscribers>()("hestia/EventSubscribers", {
  sync: () => {
    let open = 0
    return {
      /** Takes a place (released when the scope closes), or TooManySubscribers when all are taken. */
      admit: Effect.suspend(() => {
        if (open >= MAX_EVENT_SUBSCRIBERS) return Effect.fail(new TooManySubscribers({ limit: MAX_EVENT_SUBSCRIBERS }))
        open++
        return Effect.addFinalizer(() =>
          Effect.sync(() => {
            open--
          })
        )
      }),
      open: () => open
    }
  }
}) {}

// ---------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------

/** `GET /metrics` (Prometheus text), `/v1/metrics`, `/v1/metrics/history`, `/v1/services/{id}/metrics` (JSON). */
export const MetricsHandlers = HttpApiBuilder.group(ControlApi, "metrics", (handlers) =>
  Effect.gen(function* () {
    const live = yield* LiveConfig
    const metrics = yield* Metrics
    const history = yield* MetricsHistory
    const registry = yield* ServiceRegistry
    return handlers
      .handle("prometheus", () => metrics.prometheus)
      .handle("json", () => metrics.json())
      .handle("history", ({ urlParams: { serviceId } }) =>
        serviceId !== undefined && !live.current().services.has(serviceId)
          ? Effect.fail(new UnknownService({ serviceId }))
          : history.read(serviceId)
      )
      .handle("service", ({ path }) =>
        // UnknownService → 404
        Effect.zipRight(
          registry.status(path.id),
          Effect.map(metrics.json(path.id), ({ metrics }) => ({ serviceId: path.id, metrics }))
        )
      )
  })
)

/** `GET /v1/events`: raw Server-Sent Events; the request's scope holds the subscriber's place until it ends. */
export const EventHandlers = HttpApiBuilder.group(ControlApi, "events", (handlers) =>
  Effect.gen(function* () {
    const subscribers = yield* EventSubscribers
    const context = yield* Effect.context<LifecycleEvents | ServiceRegistry>()
    const draining = yield* Draining
    // A stopping gateway ends the stream at once (an EventSource reconnects to the next one).
    const frames = () => eventStream().pipe(Stream.interruptWhen(draining.begun), Stream.encodeText)
    return handlers.handle("stream", () =>
      Effect.map(subscribers.admit, () =>
        HttpServerResponse.stream(frames().pipe(Stream.provideContext(context)), {
          contentType: "text/event-stream",
          headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
        })
      )
    )
  })
)
