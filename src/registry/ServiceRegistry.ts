import {
  Cause,
  Deferred,
  Effect,
  Equal,
  Exit,
  Fiber,
  Option,
  Queue,
  Schedule,
  type Scope,
  SubscriptionRef,
  type Tracer
} from "effect"
import { HestiaConfig, type ServiceConfig } from "../config/HestiaConfig.ts"
import {
  QueueFull,
  QueueTimeout,
  type StartAttempt,
  type StartError,
  StartupFailed,
  UnknownService
} from "../domain/Errors.ts"
import { type Target, targetsFor } from "../domain/Placement.ts"
import { tagError } from "../observability/Telemetry.ts"
import { type Instance, Orchestrator } from "../orchestrators/Orchestrator.ts"
import { type AutomationView, SemaphoreTasks } from "../orchestrators/SemaphoreTasks.ts"
import { Readiness } from "../readiness/Readiness.ts"
import { type PersistedService, Store } from "../store/Store.ts"
import { type LifecycleEvent, LifecycleEvents, type ServiceStatus, type StartTrigger } from "./LifecycleEvents.ts"

export type { ServiceStatus, StartTrigger }

export interface ServiceState {
  readonly status: ServiceStatus
  readonly machineId: string | undefined
  readonly baseUrl: string | undefined
  readonly lastError: StartupFailed | undefined
  /** Clock time of the last transition. */
  readonly since: number
}

/** Permission to send one request to a hot service; `release` when its response has ended (idempotent). */
export interface Lease {
  readonly target: Target
  readonly release: () => void
}

export interface ServiceStatusView {
  readonly serviceId: string
  readonly state: ServiceStatus
  readonly readiness: "ready" | "not_ready"
  readonly machineId: string | null
  readonly baseUrl: string
  readonly queuePending: number
  readonly queueCapacity: number
  readonly inFlight: number
  readonly lastActivity: string | null
  readonly lastError: {
    readonly error: string
    readonly message: string
    readonly attempts: ReadonlyArray<StartAttempt>
  } | null
  /** For Semaphore services: the current and last task. */
  readonly automation?: AutomationView
}

type Ticket = Deferred.Deferred<Lease, StartupFailed>

/** One service's lifecycle. Every transition happens under `owner`; the plain fields mirror `state` for the hot path. */
interface Entry {
  readonly service: ServiceConfig
  readonly targets: ReadonlyArray<Target>
  readonly state: SubscriptionRef.SubscriptionRef<ServiceState>
  readonly owner: Effect.Semaphore
  /** Requests waiting for a start, in arrival order; bounded by `queue_size`. */
  readonly waiters: Queue.Queue<Ticket>
  status: ServiceStatus
  current: Target | undefined
  inFlight: number
  lastActivity: number
  /** Bumped on every start, so late news about an older instance is ignored. */
  generation: number
  startRequested: boolean
  starter: Fiber.RuntimeFiber<unknown, unknown> | undefined
  watchers: Array<Fiber.RuntimeFiber<unknown, unknown>>
  /** The span of the start in flight, so the requests that wait for it can point at it. */
  coldStart: Tracer.Span | undefined
}

const describeError = (error: StartError): Pick<StartAttempt, "error" | "message"> => ({
  error: error._tag,
  message: error.message
})

export class ServiceRegistry extends Effect.Service<ServiceRegistry>()("hestia/ServiceRegistry", {
  scoped: Effect.gen(function* () {
    const config = yield* HestiaConfig
    const orchestrator = yield* Orchestrator
    const readiness = yield* Readiness
    const events = yield* LifecycleEvents
    const semaphoreTasks = yield* SemaphoreTasks
    const store = yield* Store
    const clock = yield* Effect.clock
    const scope: Scope.Scope = yield* Effect.scope

    const entries = new Map<string, Entry>()
    for (const service of config.services.values()) {
      entries.set(service.id, {
        service,
        targets: targetsFor(service, config),
        state: yield* SubscriptionRef.make<ServiceState>({
          status: "cold",
          machineId: undefined,
          baseUrl: undefined,
          lastError: undefined,
          since: clock.unsafeCurrentTimeMillis()
        }),
        owner: yield* Effect.makeSemaphore(1),
        waiters: yield* Queue.dropping<Ticket>(service.queueSize),
        status: "cold",
        current: undefined,
        inFlight: 0,
        lastActivity: 0,
        generation: 0,
        startRequested: false,
        starter: undefined,
        watchers: [],
        coldStart: undefined
      })
    }

    const lookup = (serviceId: string) => {
      const entry = entries.get(serviceId)
      return entry === undefined ? Effect.fail(new UnknownService({ serviceId })) : Effect.succeed(entry)
    }

    const locked = <A, E, R>(entry: Entry, effect: Effect.Effect<A, E, R>) => entry.owner.withPermits(1)(effect)

    type EventFields<E> = E extends LifecycleEvent ? Omit<E, "serviceId" | "at"> : never
    const emit = (entry: Entry, event: EventFields<LifecycleEvent>) =>
      events.emit({ ...event, serviceId: entry.service.id, at: clock.unsafeCurrentTimeMillis() } as LifecycleEvent)

    const transition = (entry: Entry, status: ServiceStatus, patch: Partial<ServiceState> = {}) =>
      Effect.gen(function* () {
        const from = entry.status
        entry.status = status
        const next = yield* SubscriptionRef.updateAndGet(entry.state, (state) => ({
          ...state,
          ...patch,
          status,
          since: clock.unsafeCurrentTimeMillis()
        }))
        yield* emit(entry, { type: "state", from, to: status, machineId: next.machineId })
      })

    const lease = (entry: Entry): Lease => {
      entry.inFlight++
      let released = false
      return {
        target: entry.current!,
        release: () => {
          if (released) return
          released = true
          entry.inFlight--
          entry.lastActivity = clock.unsafeCurrentTimeMillis()
          // A flag for the Store's batched writer, not a write.
          store.lastActivityChanged()
        }
      }
    }

    // -------------------------------------------------------------------------
    // Startup policy: per machine in order, retry_count + 1 attempts retry_delay_ms apart.
    // -------------------------------------------------------------------------

    const attemptOn = (entry: Entry, target: Target, attempts: Array<StartAttempt>) => {
      const service = entry.service
      let attempt = 0
      const once = Effect.gen(function* () {
        attempt++
        yield* Effect.annotateCurrentSpan("hestia.attempt", attempt)
        yield* emit(entry, { type: "attempt_started", machineId: target.machineId, attempt })
        const instance = yield* orchestrator.start(service, target).pipe(
          Effect.tap((started) =>
            started.pid === undefined ? Effect.void : Effect.annotateCurrentSpan("process.pid", started.pid)
          ),
          Effect.tapError(tagError),
          // The Semaphore orchestrator adds semaphore.task.id and the task's final status to this span.
          Effect.withSpan("Orchestrator.start", {
            attributes: {
              "hestia.service.id": service.id,
              "hestia.machine.id": target.machineId,
              "hestia.orchestrator": target.kind
            }
          })
        )
        yield* Effect.raceFirst(readiness.wait(service, target), instance.exited)
        return instance
      }).pipe(
        // A failed or abandoned attempt must not leave anything running behind it.
        Effect.onError(() => orchestrator.stop(service, target).pipe(Effect.ignore)),
        Effect.tapError((error) =>
          Effect.gen(function* () {
            yield* tagError(error)
            attempts.push({ machine: target.machineId, attempt, ...describeError(error) })
            yield* emit(entry, {
              type: "attempt_failed",
              machineId: target.machineId,
              attempt,
              ...describeError(error)
            })
          })
        ),
        Effect.withSpan("ServiceRegistry.attempt", {
          attributes: { "hestia.service.id": service.id, "hestia.machine.id": target.machineId }
        })
      )
      return once.pipe(
        Effect.retry(
          Schedule.spaced(service.retryDelayMs).pipe(Schedule.intersect(Schedule.recurs(service.retryCount)))
        ),
        Effect.tapError(tagError),
        Effect.withSpan("ServiceRegistry.machine", {
          attributes: { "hestia.service.id": service.id, "hestia.machine.id": target.machineId }
        })
      )
    }

    const startupPolicy = (entry: Entry, coldStart: Tracer.Span) =>
      Effect.gen(function* () {
        const attempts: Array<StartAttempt> = []
        coldStart.attribute("hestia.placement", entry.targets.map((target) => target.machineId).join(","))
        for (const target of entry.targets) {
          const result = yield* Effect.either(attemptOn(entry, target, attempts))
          if (result._tag === "Right") {
            coldStart.attribute("hestia.attempts", attempts.length + 1)
            return { target, instance: result.right }
          }
        }
        coldStart.attribute("hestia.attempts", attempts.length)
        return yield* new StartupFailed({ serviceId: entry.service.id, attempts })
      }).pipe(Effect.withParentSpan(coldStart))

    /**
     * One trace per start: `ServiceRegistry.coldStart` is a root span (linked to whatever asked for the start), made
     * before the policy is forked so that requests joining at once already find it on the entry.
     */
    const openColdStart = (entry: Entry, trigger: StartTrigger) =>
      Effect.gen(function* () {
        const cause = yield* Effect.option(Effect.currentSpan)
        const span = yield* Effect.makeSpan("ServiceRegistry.coldStart", {
          root: true,
          attributes: { "hestia.service.id": entry.service.id, "hestia.trigger": trigger },
          links: Option.isSome(cause) ? [{ _tag: "SpanLink", span: cause.value, attributes: {} }] : []
        })
        entry.coldStart = span
        return span
      })

    const closeColdStart = (entry: Entry, exit: Exit.Exit<{ target: Target }, StartupFailed>) => {
      const span = entry.coldStart
      if (span === undefined) return
      entry.coldStart = undefined
      if (Exit.isSuccess(exit)) {
        span.attribute("hestia.outcome", "ready")
        span.attribute("hestia.machine.id", exit.value.target.machineId)
      } else if (Exit.isInterrupted(exit)) {
        span.attribute("hestia.outcome", "cancelled")
      } else {
        span.attribute("hestia.outcome", "failed")
        span.attribute("error.type", "StartupFailed")
      }
      span.end(clock.unsafeCurrentTimeNanos(), exit)
    }

    /** A waiting request and the start it waits for point at each other: an event on the start, a link from the request. */
    const noteWaiter = (entry: Entry, requestId: string | undefined, position: number, joined: boolean) =>
      Effect.gen(function* () {
        const coldStart = entry.coldStart
        if (coldStart === undefined) return
        coldStart.event(joined ? "hestia.request.joined" : "hestia.request.triggered", clock.unsafeCurrentTimeNanos(), {
          ...(requestId === undefined ? {} : { "hestia.request.id": requestId }),
          "hestia.queue.position": position
        })
        const current = yield* Effect.option(Effect.currentSpan)
        if (Option.isSome(current)) current.value.addLinks([{ _tag: "SpanLink", span: coldStart, attributes: {} }])
      })

    /** Under the owner: leave `cold` and run the policy in the background. */
    const beginStart = (entry: Entry, trigger: StartTrigger, requestId?: string) =>
      Effect.gen(function* () {
        entry.generation++
        entry.startRequested = false
        // The routing decision: the machines this start will try, in order.
        const machines = entry.targets.map((target) => target.machineId)
        yield* emit(entry, { type: "start_requested", trigger, requestId, machines })
        yield* transition(entry, "starting", { machineId: undefined, baseUrl: undefined })
        const startedAt = clock.unsafeCurrentTimeMillis()
        const coldStart = yield* openColdStart(entry, trigger)
        // The policy runs in its own fiber so a stop request can interrupt it while settle still answers the waiters.
        const policy = yield* Effect.forkIn(startupPolicy(entry, coldStart), scope)
        entry.starter = policy
        // Settling belongs to the start's trace: its log lines (ready, start_failed) carry that trace id.
        yield* Effect.forkIn(
          settleStartup(entry, entry.generation, policy, startedAt).pipe(Effect.withParentSpan(coldStart)),
          scope
        )
      })

    const settleStartup = (
      entry: Entry,
      generation: number,
      policy: Fiber.RuntimeFiber<{ target: Target; instance: Instance }, StartupFailed>,
      startedAt: number
    ): Effect.Effect<void> =>
      Effect.gen(function* () {
        const exit = yield* Fiber.await(policy)
        yield* locked(
          entry,
          Effect.gen(function* () {
            entry.starter = undefined
            closeColdStart(entry, exit)
            if (entry.generation !== generation) return
            const waiting = yield* Queue.takeAll(entry.waiters)
            if (Exit.isSuccess(exit)) {
              const { target, instance } = exit.value
              entry.current = target
              entry.lastActivity = clock.unsafeCurrentTimeMillis()
              yield* transition(entry, "hot", {
                machineId: target.machineId,
                baseUrl: target.baseUrl,
                lastError: undefined
              })
              yield* emit(entry, {
                type: "ready",
                machineId: target.machineId,
                durationMs: entry.lastActivity - startedAt,
                released: waiting.length
              })
              // Arrival order: each waiter is granted its lease in turn.
              for (const ticket of waiting) yield* Deferred.succeed(ticket, lease(entry))
              yield* watch(entry, generation, instance)
            } else {
              const error =
                Option.getOrUndefined(Cause.failureOption(exit.cause)) ??
                new StartupFailed({
                  serviceId: entry.service.id,
                  attempts: [
                    { machine: "-", attempt: 0, error: "Interrupted", message: "start cancelled by a stop request" }
                  ]
                })
              entry.current = undefined
              yield* transition(entry, "cold", { machineId: undefined, baseUrl: undefined, lastError: error })
              yield* emit(entry, {
                type: "start_failed",
                durationMs: clock.unsafeCurrentTimeMillis() - startedAt,
                attempts: error.attempts,
                rejected: waiting.length
              })
              for (const ticket of waiting) yield* Deferred.fail(ticket, error)
            }
          })
        )
      })

    /** While hot: the idle reaper, and a watch on the instance dying by itself. */
    const watch = (entry: Entry, generation: number, instance: Instance) =>
      Effect.gen(function* () {
        const crashWatch = instance.exited.pipe(
          Effect.catchAll((error) => markGone(entry, generation, `${error._tag}: ${error.message}`))
        )
        entry.watchers = [yield* Effect.forkIn(crashWatch, scope)]
        if (entry.service.idleTimeoutMs > 0) entry.watchers.push(yield* Effect.forkIn(reaper(entry, generation), scope))
      })

    const reaper = (entry: Entry, generation: number) => {
      const idleMs = entry.service.idleTimeoutMs
      const loop: Effect.Effect<void> = Effect.gen(function* () {
        if (entry.generation !== generation || entry.status !== "hot") return
        if (entry.inFlight > 0) {
          // A request or stream is open; its end stamps lastActivity, so check again later.
          yield* Effect.sleep(idleMs)
          return yield* loop
        }
        const idleFor = clock.unsafeCurrentTimeMillis() - entry.lastActivity
        if (idleFor < idleMs) {
          yield* Effect.sleep(idleMs - idleFor)
          return yield* loop
        }
        const stopping = yield* locked(
          entry,
          Effect.gen(function* () {
            const stillIdle =
              entry.generation === generation &&
              entry.status === "hot" &&
              entry.inFlight === 0 &&
              clock.unsafeCurrentTimeMillis() - entry.lastActivity >= idleMs
            if (stillIdle) {
              yield* emit(entry, { type: "idle_stop", machineId: entry.current?.machineId, idleMs })
              yield* beginStop(entry, "idle")
            }
            return stillIdle
          })
        )
        if (!stopping) return yield* loop
      })
      return loop
    }

    /** Under the owner: leave `hot` and stop in the background. */
    const beginStop = (entry: Entry, reason: "idle" | "api" | "gone") =>
      Effect.gen(function* () {
        const target = entry.current!
        const generation = entry.generation
        // The watcher running this (reaper or crash watch) ends by itself; interrupting it here would cut this short.
        const self = yield* Effect.fiberId
        const others = entry.watchers.filter((watcher) => !Equal.equals(watcher.id(), self))
        entry.watchers = []
        yield* Effect.forkIn(Fiber.interruptAll(others), scope)
        yield* transition(entry, "stopping")
        yield* Effect.forkIn(runStop(entry, target, generation, reason), scope)
      })

    const runStop = (entry: Entry, target: Target, generation: number, reason: "idle" | "api" | "gone") =>
      Effect.gen(function* () {
        const exit = yield* Effect.exit(orchestrator.stop(entry.service, target))
        if (Exit.isFailure(exit)) {
          yield* emit(entry, { type: "stop_failed", machineId: target.machineId, message: Cause.pretty(exit.cause) })
        }
        yield* locked(
          entry,
          Effect.gen(function* () {
            if (entry.generation !== generation || entry.status !== "stopping") return
            entry.current = undefined
            yield* transition(entry, "cold", { machineId: undefined, baseUrl: undefined })
            yield* emit(entry, { type: "stopped", machineId: target.machineId, reason })
            // Requests that arrived while it was stopping start it again.
            const pending = yield* Queue.size(entry.waiters)
            if (pending > 0 || entry.startRequested) yield* beginStart(entry, pending > 0 ? "request" : "api")
          })
        )
      })

    /** The running instance went away on its own (crash, refused connection): back to cold. */
    const markGone = (entry: Entry, generation: number, reason: string) =>
      locked(
        entry,
        Effect.gen(function* () {
          if (entry.generation !== generation || entry.status !== "hot") return
          yield* emit(entry, { type: "upstream_gone", machineId: entry.current?.machineId, reason })
          yield* beginStop(entry, "gone")
        })
      )

    // -------------------------------------------------------------------------
    // Requests
    // -------------------------------------------------------------------------

    /** Drop a ticket whose request gave up (timed out, disconnected); give back a lease granted meanwhile. */
    const abandon = (entry: Entry, ticket: Ticket) =>
      locked(
        entry,
        Effect.gen(function* () {
          const done = yield* Deferred.poll(ticket)
          if (Option.isSome(done)) {
            const exit = yield* Effect.exit(done.value)
            if (Exit.isSuccess(exit)) exit.value.release()
            return
          }
          const waiting = yield* Queue.takeAll(entry.waiters)
          yield* Queue.offerAll(
            entry.waiters,
            Array.from(waiting).filter((t) => t !== ticket)
          )
          yield* Deferred.interrupt(ticket)
        })
      )

    const enqueue = (entry: Entry, requestId: string | undefined) =>
      locked(
        entry,
        Effect.gen(function* () {
          if (entry.status === "hot") return { _tag: "Leased", lease: lease(entry) } as const
          const ticket = yield* Deferred.make<Lease, StartupFailed>()
          const admitted = yield* Queue.offer(entry.waiters, ticket)
          if (!admitted) {
            yield* emit(entry, { type: "request_rejected", error: "QueueFull", requestId })
            return yield* new QueueFull({ serviceId: entry.service.id, capacity: entry.service.queueSize })
          }
          const joined = entry.status === "starting"
          if (entry.status === "cold") yield* beginStart(entry, "request", requestId)
          const position = yield* Queue.size(entry.waiters)
          yield* emit(entry, { type: "request_queued", position, requestId, joined })
          yield* noteWaiter(entry, requestId, position, joined)
          return { _tag: "Queued", ticket } as const
        })
      )

    const acquire = Effect.fn("ServiceRegistry.acquire")(function* (serviceId: string, requestId?: string) {
      const entry = yield* lookup(serviceId)
      if (entry.status === "hot") return lease(entry)
      const admission = yield* enqueue(entry, requestId)
      if (admission._tag === "Leased") return admission.lease
      const ticket = admission.ticket
      const waitMs = entry.service.requestTimeoutMs
      const queuedAt = clock.unsafeCurrentTimeMillis()
      return yield* Deferred.await(ticket).pipe(
        Effect.timeoutFail({
          duration: waitMs,
          onTimeout: () => new QueueTimeout({ serviceId, waitedMs: waitMs })
        }),
        Effect.tap(() =>
          emit(entry, { type: "request_released", waitedMs: clock.unsafeCurrentTimeMillis() - queuedAt, requestId })
        ),
        Effect.tapErrorTag("QueueTimeout", () =>
          emit(entry, { type: "request_rejected", error: "QueueTimeout", requestId })
        ),
        Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : abandon(entry, ticket)))
      )
    }, Effect.tapError(tagError))

    /** The proxy's fast path: a lease when the service is hot, without a fiber. */
    const tryAcquireHot = (serviceId: string): Lease | undefined => {
      const entry = entries.get(serviceId)
      return entry !== undefined && entry.status === "hot" ? lease(entry) : undefined
    }

    /** The proxy saw the hot upstream refuse a connection: it is gone, the next request restarts it. */
    const reportUnavailable = (serviceId: string, target: Target, reason: string) => {
      const entry = entries.get(serviceId)
      if (entry === undefined || entry.current !== target) return Effect.void
      return markGone(entry, entry.generation, reason)
    }

    // -------------------------------------------------------------------------
    // Control
    // -------------------------------------------------------------------------

    const start = Effect.fn("ServiceRegistry.start")(function* (serviceId: string) {
      const entry = yield* lookup(serviceId)
      return yield* locked(
        entry,
        Effect.gen(function* () {
          const before = entry.status
          if (before === "cold") yield* beginStart(entry, "api")
          if (before === "stopping") entry.startRequested = true
          return before
        })
      )
    })

    const stop = Effect.fn("ServiceRegistry.stop")(function* (serviceId: string) {
      const entry = yield* lookup(serviceId)
      return yield* locked(
        entry,
        Effect.gen(function* () {
          const before = entry.status
          entry.startRequested = false
          if (before === "hot") yield* beginStop(entry, "api")
          if (before === "starting" && entry.starter !== undefined) {
            const starter = entry.starter
            // Interrupting the policy stops the attempt in progress; runStartup then fails the waiters.
            yield* Effect.forkIn(Fiber.interrupt(starter), scope)
          }
          return before
        })
      )
    })

    const view = (entry: Entry) =>
      Effect.gen(function* () {
        const state = yield* SubscriptionRef.get(entry.state)
        const lastError = state.lastError
        const automation = yield* semaphoreTasks.automation(entry.service.id)
        return {
          ...(automation === undefined ? {} : { automation }),
          serviceId: entry.service.id,
          state: state.status,
          readiness: state.status === "hot" ? "ready" : "not_ready",
          machineId: state.machineId ?? null,
          baseUrl: state.baseUrl ?? entry.targets[0]!.baseUrl,
          queuePending: yield* Queue.size(entry.waiters),
          queueCapacity: entry.service.queueSize,
          inFlight: entry.inFlight,
          lastActivity: entry.lastActivity === 0 ? null : new Date(entry.lastActivity).toISOString(),
          lastError:
            lastError === undefined
              ? null
              : { error: lastError._tag, message: lastError.message, attempts: lastError.attempts }
        } satisfies ServiceStatusView
      })

    // -------------------------------------------------------------------------
    // Restart: carry on from what the previous run recorded (see Store)
    // -------------------------------------------------------------------------

    /** How long a service recorded as running may take to answer its health check at start-up. */
    const RESTORE_PROBE_MS = 3_000

    /** Take over what still runs on `target`, if its health URL (when it has one) answers. */
    const adoptIfHealthy = (service: ServiceConfig, target: Target) =>
      Effect.gen(function* () {
        const taken = yield* orchestrator.adopt(service, target)
        if (Option.isNone(taken) || target.healthUrl === undefined) return taken
        const healthy = yield* Effect.isSuccess(
          readiness.wait({ ...service, startupTimeoutMs: RESTORE_PROBE_MS }, target)
        )
        return healthy ? taken : Option.none()
      })

    /** Recorded hot or starting and healthy: hot again, idle timer from the persisted last activity. Else cold. */
    const restore = (entry: Entry, saved: PersistedService | undefined) =>
      Effect.gen(function* () {
        const service = entry.service
        if (saved?.lastActivity != null) entry.lastActivity = saved.lastActivity
        if (saved?.lastError?.error === "StartupFailed") {
          const lastError = new StartupFailed({ serviceId: service.id, attempts: saved.lastError.attempts })
          yield* SubscriptionRef.update(entry.state, (state) => ({ ...state, lastError }))
        }
        const was = saved?.state ?? "cold"
        const target = entry.targets.find((t) => t.machineId === saved?.machineId)
        // Without a health URL only a start that had finished is trusted: nothing says a `starting` one ever would.
        const checkable = was === "hot" || (was === "starting" && target?.healthUrl !== undefined)
        if (checkable && target !== undefined) {
          const adopted = yield* adoptIfHealthy(service, target)
          if (Option.isSome(adopted)) {
            entry.generation++
            entry.current = target
            if (entry.lastActivity === 0) entry.lastActivity = clock.unsafeCurrentTimeMillis()
            yield* transition(entry, "hot", {
              machineId: target.machineId,
              baseUrl: target.baseUrl,
              lastError: undefined
            })
            yield* emit(entry, { type: "adopted", machineId: target.machineId, lastActivity: entry.lastActivity })
            yield* watch(entry, entry.generation, adopted.value)
            return
          }
        }
        // Whatever an earlier run spawned for it and did not stop is stopped now.
        const leftover = yield* orchestrator.reclaim(service)
        if (was === "cold") return
        const machineId = saved?.machineId ?? undefined
        yield* emit(entry, { type: "state", from: was, to: "cold", machineId: undefined })
        if (was === "starting") {
          const lastError = new StartupFailed({
            serviceId: service.id,
            attempts: [
              {
                machine: machineId ?? "-",
                attempt: 0,
                error: "GatewayRestarted",
                message: "the gateway stopped while this start was in progress"
              }
            ]
          })
          yield* SubscriptionRef.update(entry.state, (state) => ({ ...state, lastError }))
          const now = clock.unsafeCurrentTimeMillis()
          yield* emit(entry, {
            type: "start_failed",
            machineId,
            durationMs: now - (saved?.stateSince ?? now),
            attempts: lastError.attempts,
            rejected: 0
          })
        } else if (leftover || target?.kind !== "process") {
          yield* emit(entry, {
            type: "upstream_gone",
            machineId,
            reason: `${was} when the gateway stopped, not running after its restart`
          })
        }
        // Else a process the previous run stopped itself on a clean exit: only the state row changes.
      })

    const persisted = yield* store.services()
    yield* Effect.forEach(entries.values(), (entry) => restore(entry, persisted.get(entry.service.id)), {
      concurrency: "unbounded",
      discard: true
    })
    yield* store.trackLastActivity(() => Array.from(entries.values(), (e) => [e.service.id, e.lastActivity] as const))

    const status = Effect.fn("ServiceRegistry.status")(function* (serviceId: string) {
      return yield* view(yield* lookup(serviceId))
    })

    // Suspended: an iterator made once would be exhausted after the first listing.
    const list = Effect.suspend(() => Effect.forEach(entries.values(), view))

    return {
      acquire,
      tryAcquireHot,
      reportUnavailable,
      start,
      stop,
      status,
      list,
      has: (serviceId: string) => entries.has(serviceId)
    }
  }),
  dependencies: [Readiness.Default, LifecycleEvents.Default, Store.Default]
}) {}
