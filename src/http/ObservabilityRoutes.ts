import { HttpRouter, HttpServerResponse } from "@effect/platform"
import { Clock, type Duration, Effect, Queue, Ref, Schedule, Schema, Stream } from "effect"
import { LiveConfig } from "../config/LiveConfig.ts"
import { TooManySubscribers, UnknownService } from "../domain/Errors.ts"
import { Metrics } from "../observability/Metrics.ts"
import { MetricsHistory } from "../observability/MetricsHistory.ts"
import { type LifecycleEvent, LifecycleEvents } from "../registry/LifecycleEvents.ts"
import { ServiceRegistry } from "../registry/ServiceRegistry.ts"
import { decodeSearchParams } from "./SearchParams.ts"
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

const ServiceParams = Schema.Struct({ id: Schema.String })

/** `?serviceId=`: one service's history, else every service's. */
const HistoryParams = Schema.Struct({
  serviceId: Schema.optional(Schema.NonEmptyString.annotations({ message: () => "serviceId must not be empty" }))
})

export const routes = HttpRouter.empty.pipe(
  HttpRouter.get(
    "/metrics",
    Effect.gen(function* () {
      const metrics = yield* Metrics
      return HttpServerResponse.text(yield* metrics.prometheus, {
        contentType: "text/plain; version=0.0.4; charset=utf-8"
      })
    })
  ),
  HttpRouter.get(
    "/v1/metrics",
    Effect.gen(function* () {
      const metrics = yield* Metrics
      return yield* HttpServerResponse.json(yield* metrics.json())
    })
  ),
  HttpRouter.get(
    "/v1/metrics/history",
    Effect.gen(function* () {
      const { serviceId } = yield* decodeSearchParams(HistoryParams)
      const config = (yield* LiveConfig).current()
      if (serviceId !== undefined && !config.services.has(serviceId)) return yield* new UnknownService({ serviceId })
      const history = yield* MetricsHistory
      return yield* HttpServerResponse.json(yield* history.read(serviceId))
    })
  ),
  HttpRouter.get(
    "/v1/services/:id/metrics",
    Effect.gen(function* () {
      const { id } = yield* HttpRouter.schemaPathParams(ServiceParams)
      const registry = yield* ServiceRegistry
      yield* registry.status(id) // UnknownService → 404
      const metrics = yield* Metrics
      return yield* HttpServerResponse.json(yield* metrics.json(id))
    })
  ),
  HttpRouter.get(
    "/v1/events",
    Effect.gen(function* () {
      // The request's scope closes once the stream has ended (or the client left): the place is given back then.
      yield* Effect.flatMap(EventSubscribers, (subscribers) => subscribers.admit)
      const context = yield* Effect.context<LifecycleEvents | ServiceRegistry>()
      // A stopping gateway ends the stream at once (an EventSource reconnects to the next one).
      const draining = yield* Draining
      const frames = eventStream().pipe(Stream.interruptWhen(draining.begun), Stream.encodeText)
      return HttpServerResponse.stream(frames.pipe(Stream.provideContext(context)), {
        contentType: "text/event-stream",
        headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
      })
    })
  )
)
