import { Effect, PubSub, type Queue, type Scope } from "effect"
import type { StartAttempt } from "../domain/Errors.ts"
import type { ServiceStatus, StartTrigger, StopReason } from "./ServiceState.ts"

export type { ServiceStatus, StartTrigger }

interface Base {
  readonly serviceId: string
  /** Clock time, ms. */
  readonly at: number
  readonly machineId?: string | undefined
  readonly requestId?: string | undefined
}

/** Everything that happens in a service's lifecycle: logged, published to subscribers (SSE, store, metrics). */
export type LifecycleEvent =
  | (Base & { readonly type: "state"; readonly from: ServiceStatus; readonly to: ServiceStatus })
  | (Base & {
      readonly type: "start_requested"
      readonly trigger: StartTrigger
      /** The routing decision: machines to try, in order. */
      readonly machines: ReadonlyArray<string>
    })
  | (Base & { readonly type: "attempt_started"; readonly attempt: number })
  | (Base & {
      readonly type: "attempt_failed"
      readonly attempt: number
      readonly error: string
      readonly message: string
    })
  | (Base & { readonly type: "ready"; readonly durationMs: number; readonly released: number })
  | (Base & {
      readonly type: "start_failed"
      readonly durationMs: number
      readonly attempts: ReadonlyArray<StartAttempt>
      readonly rejected: number
    })
  | (Base & { readonly type: "idle_stop"; readonly idleMs: number })
  /** Stopped to make room for `by` in its exclusive group, after waiting `waitedMs` for its requests to end. */
  | (Base & { readonly type: "evicted"; readonly by: string; readonly waitedMs: number; readonly cut: number })
  | (Base & { readonly type: "stopped"; readonly reason: StopReason })
  | (Base & { readonly type: "stop_failed"; readonly message: string })
  | (Base & { readonly type: "upstream_gone"; readonly reason: string })
  /** One of a service's `instances:` refused or reset a connection: taken out until its health answers again. */
  | (Base & { readonly type: "instance_down"; readonly url: string; readonly reason: string })
  | (Base & { readonly type: "instance_up"; readonly url: string; readonly downMs: number })
  | (Base & { readonly type: "adopted"; readonly lastActivity: number })
  | (Base & { readonly type: "request_queued"; readonly position: number; readonly joined?: boolean | undefined })
  | (Base & { readonly type: "request_released"; readonly waitedMs: number })
  | (Base & { readonly type: "request_rejected"; readonly error: string })

export type LifecycleEventType = LifecycleEvent["type"]

const levels: Partial<Record<LifecycleEventType, "warning" | "error" | "debug">> = {
  attempt_failed: "warning",
  start_failed: "error",
  stop_failed: "error",
  upstream_gone: "warning",
  instance_down: "warning",
  request_queued: "debug",
  request_released: "debug",
  request_rejected: "warning"
}

const describe = (event: LifecycleEvent): string => {
  switch (event.type) {
    case "state":
      return `${event.serviceId}: ${event.from} → ${event.to}`
    case "start_requested":
      return `${event.serviceId}: start requested (${event.trigger}), will try ${event.machines.join(", ")}`
    case "attempt_started":
      return `${event.serviceId}: attempt ${event.attempt} on ${event.machineId}`
    case "attempt_failed":
      return `${event.serviceId}: attempt ${event.attempt} on ${event.machineId} failed: ${event.message}`
    case "ready":
      return `${event.serviceId}: ready on ${event.machineId} after ${event.durationMs} ms`
    case "start_failed":
      return `${event.serviceId}: start failed after ${event.attempts.length} attempt(s)`
    case "idle_stop":
      return `${event.serviceId}: idle for ${event.idleMs} ms, stopping`
    case "evicted":
      return `${event.serviceId}: evicted for ${event.by} after waiting ${event.waitedMs} ms for its requests${event.cut > 0 ? ` (${event.cut} still open, cut off)` : ""}`
    case "stopped":
      return `${event.serviceId}: stopped (${event.reason})`
    case "stop_failed":
      return `${event.serviceId}: stop failed: ${event.message}`
    case "upstream_gone":
      return `${event.serviceId}: upstream gone (${event.reason})`
    case "instance_down":
      return `${event.serviceId}: instance ${event.url} taken out (${event.reason})`
    case "instance_up":
      return `${event.serviceId}: instance ${event.url} back in after ${event.downMs} ms`
    case "adopted":
      return `${event.serviceId}: adopted as hot on ${event.machineId}`
    case "request_queued":
      return `${event.serviceId}: request queued at position ${event.position}${event.joined ? " (joined the start in flight)" : ""}`
    case "request_released":
      return `${event.serviceId}: request released after waiting ${event.waitedMs} ms`
    case "request_rejected":
      return `${event.serviceId}: request rejected (${event.error})`
  }
}

/** The lifecycle event bus: the registry publishes, any number of subscribers read. */
export class LifecycleEvents extends Effect.Service<LifecycleEvents>()("hestia/LifecycleEvents", {
  scoped: Effect.gen(function* () {
    const hub = yield* PubSub.unbounded<LifecycleEvent>()
    yield* Effect.addFinalizer(() => PubSub.shutdown(hub))

    /** Log the event (one JSON line, fields flat) and hand it to every subscriber. */
    const emit = (event: LifecycleEvent) => {
      const { at: _at, type, ...fields } = event
      const message = describe(event)
      const level = levels[event.type]
      const log =
        level === "error"
          ? Effect.logError(message)
          : level === "warning"
            ? Effect.logWarning(message)
            : level === "debug"
              ? Effect.logDebug(message)
              : Effect.logInfo(message)
      return log.pipe(
        Effect.annotateLogs({ ...fields, event: type }),
        Effect.zipRight(PubSub.publish(hub, event)),
        Effect.asVoid
      )
    }

    /** A subscription that sees every event published after it was made. */
    const subscribe: Effect.Effect<Queue.Dequeue<LifecycleEvent>, never, Scope.Scope> = PubSub.subscribe(hub)

    return { emit, subscribe }
  })
}) {}
