import {
  Cause,
  Context,
  Deferred,
  Effect,
  ExecutionStrategy,
  Exit,
  Fiber,
  FiberId,
  FiberSet,
  Option,
  Scope,
  type Tracer
} from "effect"
import type { ServiceConfig, ServiceSource } from "../config/HestiaConfig.ts"
import {
  NoHealthyInstance,
  QueueFull,
  QueueTimeout,
  type StartAttempt,
  type StartError,
  StartupFailed,
  UpstreamUnavailable
} from "../domain/Errors.ts"
import type { Target } from "../domain/Placement.ts"
import type { ContainerView } from "../orchestrators/ContainerRecords.ts"
import { unmanaged } from "../orchestrators/External.ts"
import { type Instance, Orchestrator } from "../orchestrators/Orchestrator.ts"
import type { AutomationView } from "../orchestrators/SemaphoreTasks.ts"
import { Readiness } from "../readiness/Readiness.ts"
import type { PersistedService } from "../store/ServiceRows.ts"
import type { InstanceBalanceShape } from "./InstanceBalance.ts"
import { type InstanceChange, InstanceSet, type InstanceState, type InstanceView } from "./InstanceSet.ts"
import type { LifecycleEvent, LifecycleEvents } from "./LifecycleEvents.ts"
import { restore } from "./Restore.ts"
import {
  type AttemptProgress,
  type Cold,
  type Draining,
  type Hot,
  type LastError,
  type ServiceState,
  type ServiceStatus,
  type Starting,
  type StartTrigger,
  type Stopping,
  type StopReason,
  statusOf
} from "./ServiceState.ts"
import type { StartGate } from "./StartGate.ts"
import * as StartupPolicy from "./StartupPolicy.ts"

/** Permission to send one request to a hot service; `release` when its response has ended (idempotent). */
export interface Lease {
  readonly target: Target
  readonly release: () => void
  /**
   * Only for a service with `instances:`: the instance of `target` refused or reset the connection before any answer
   * (`reason`). It is taken out; with `retry`, the lease moves to another healthy instance (the default rule) and
   * `target` is that one's, returned, or NoHealthyInstance when none is left; undefined when no retry was asked.
   */
  readonly refused?: (reason: string, retry: boolean) => Target | NoHealthyInstance | undefined
}

/** An event as the owner emits it: its service and time are filled in. */
export type EventFields<E = LifecycleEvent> = E extends LifecycleEvent ? Omit<E, "serviceId" | "at"> : never

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
  /** The group it belongs to (the first that names it). */
  readonly group?: string
  /** Starting, but waiting for its exclusive group: the member that must stop first. */
  readonly waitingFor?: string
  /** Hot, but being evicted: it finishes the requests it has, takes no new ones, then stops. */
  readonly draining?: { readonly by: string; readonly since: string }
  /** While starting: the attempt in progress. */
  readonly attempt?: {
    readonly machine: string
    readonly number: number
    readonly of: number
    readonly phase: AttemptProgress["phase"]
    readonly since: string
  }
  /** For Semaphore services: the current and last task. */
  readonly automation?: AutomationView
  /** For container services: the container, its image and engine. */
  readonly container?: ContainerView
  /** For a service with `instances:`: each one, whether it is in (healthy) or out, and its requests in flight. */
  readonly instances?: ReadonlyArray<InstanceView>
  /** Where it was declared: the config file, or a container's labels. */
  readonly source: ServiceSource
}

/** What an owner runs with: a configuration reload gives it a new one. */
export interface Placement {
  readonly service: ServiceConfig
  readonly targets: ReadonlyArray<Target>
  readonly lock: Effect.Semaphore
  readonly gate: StartGate
  readonly group: string | undefined
}

/** What an owner needs from the registry that holds it. */
export interface OwnerContext {
  readonly service: ServiceConfig
  readonly targets: ReadonlyArray<Target>
  /**
   * Held for every transition. Services that must be decided together (an exclusive group) share one lock, so one
   * owner can take a decision across them.
   */
  readonly lock: Effect.Semaphore
  readonly events: LifecycleEvents
  /** The registry's scope: each state's own scope is a child of it, so a gateway stop ends everything. */
  readonly scope: Scope.Scope
  /** Supervises the work that outlives a transition (stopping, cleaning up a cancelled start). */
  readonly fibers: FiberSet.FiberSet
  /** What the startup policy and restart adoption run with. */
  readonly context: Context.Context<Orchestrator | Readiness>
  readonly automation: (serviceId: string) => Effect.Effect<AutomationView | undefined>
  readonly container: (serviceId: string) => Effect.Effect<ContainerView | undefined>
  /** Admits starts: always for a service of its own; in an exclusive group, one running member at a time. */
  readonly gate: StartGate
  /** The group it belongs to, for status. */
  readonly group: string | undefined
  /** A lease was released: the last-activity stamp changed (a flag for the batched writer, not a write). */
  readonly activityChanged: () => void
  /** The machines a start tries, in order (a placement strategy may reorder the configured ones). */
  readonly placeStart: (service: ServiceConfig, targets: ReadonlyArray<Target>) => Effect.Effect<ReadonlyArray<Target>>
  /** Which of its `instances:` a request gets (a balance strategy, else the default rule). */
  readonly balance: InstanceBalanceShape
}

/**
 * The single owner of one service's lifecycle: a state machine (`ServiceState`) whose every transition happens
 * under `lock` and is published as an event. The hot path reads the state synchronously.
 */
export interface ServiceOwner {
  readonly service: ServiceConfig
  readonly targets: ReadonlyArray<Target>
  /** The current state, read without a fiber. */
  readonly state: () => ServiceState
  /** A lease when the service is hot, without a fiber (the proxy's fast path). */
  readonly tryLeaseHot: () => Lease | undefined
  /** A lease on a hot service, starting it (and waiting, within `request_timeout_seconds`) if needed. */
  readonly acquire: (
    requestId?: string
  ) => Effect.Effect<Lease, QueueFull | QueueTimeout | StartupFailed | NoHealthyInstance>
  /** `POST .../start` (the control request's id in its events); the state it was in. */
  readonly start: (requestId?: string) => Effect.Effect<ServiceStatus>
  /** Completes when the service is hot (starting it if cold), or fails with the start's typed error. */
  readonly awaitHot: Effect.Effect<void, StartupFailed>
  /** `POST .../stop` (a start in progress is cancelled); the state it was in. */
  readonly stop: Effect.Effect<ServiceStatus>
  /** The hot upstream refused a connection: it is gone, the next request starts it again. */
  readonly reportUnavailable: (target: Target, reason: string) => Effect.Effect<void>
  /** After a gateway restart: carry on from what the previous run recorded. */
  readonly restore: (saved: PersistedService | undefined) => Effect.Effect<void>
  readonly view: Effect.Effect<ServiceStatusView>
  /** Clock millis of the last request's end (0: none yet). */
  readonly lastActivity: () => number
  /** For the group that evicts it: waits until it runs (or is gone), makes it drain, then stops it. */
  readonly eviction: Eviction
  /**
   * A configuration reload. What does not concern the running instance (timeouts, limits, queue) applies at once;
   * what it was started from (command, URLs, machines, group) applies from its next start: a running service finishes
   * its open requests (new ones wait), stops, and those waiting start it with the new settings.
   */
  readonly reconfigure: (next: Placement) => Effect.Effect<void>
  /** Removed from the configuration: drained like a reconfigured service, stopped, and never started again. */
  readonly retire: Effect.Effect<void>
}

/** What an exclusive group does to the member that must make room. Each step takes the lock itself. */
export interface Eviction {
  /** Completes once the service runs (hot) or has nothing to evict any more (cold, stopping); true when it runs. */
  readonly running: Effect.Effect<boolean>
  /** Clock millis since when it has been hot (undefined when it is not). */
  readonly hotSince: () => number | undefined
  /** Hot → draining: no new requests; true when it was hot. */
  readonly drain: (by: string) => Effect.Effect<boolean>
  /** Completes when no request or stream is open. */
  readonly idle: Effect.Effect<void>
  /** Draining → stopping, with the `evicted` event. */
  readonly evict: (by: string, waitedMs: number) => Effect.Effect<void>
}

const iso = (millis: number) => new Date(millis).toISOString()

/** An external service's health, asked by status reads: at most this often, each probe this long at most. */
const EXTERNAL_PROBE_EVERY_MS = 1_000
const EXTERNAL_PROBE_MS = 1_000
/** How long a status read waits for that probe before it answers what it knows. */
const EXTERNAL_PROBE_WAIT_MS = 250

/** How often a start in progress says so in the log. */
const STILL_STARTING_EVERY = "5 seconds"

/** How long a reconfigured or removed service may take to finish its open requests before it is stopped anyway. */
const RECONFIGURE_DRAIN_MS = 600_000

export const make = (ctx: OwnerContext): Effect.Effect<ServiceOwner> =>
  Effect.gen(function* () {
    const { events } = ctx
    const id = ctx.service.id
    /** What the owner runs with; a configuration reload replaces it, at once or when the service is next cold. */
    let placed: Placement = {
      service: ctx.service,
      targets: ctx.targets,
      lock: ctx.lock,
      gate: ctx.gate,
      group: ctx.group
    }
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()

    let state: ServiceState = { _tag: "Cold", since: now(), lastError: undefined }
    let inFlight = 0
    let lastActivity = 0
    /** Requests admitted to wait for a start and not yet released or gone; bounded by `queue_size`. */
    let pending = 0
    /** A start asked for while stopping: begun as soon as the stop has ended. */
    let startAfterStop = false
    /** The cleanup of a cancelled start; the next start waits for it, so two instances never overlap. */
    let cleanup: Deferred.Deferred<void> | undefined
    /** Completed when the last open request ends (an eviction waits on it). */
    let idleSignal: Deferred.Deferred<void> | undefined
    /** What a reload gave it, applied when it is next cold. */
    let pendingPlacement: Placement | undefined
    /** Removed from the configuration: it never starts again. */
    let retired = false
    /** Until it is first started (or found running): afterwards cold means stopped, and a status read leaves it so. */
    let neverRan = true

    const emit = (event: EventFields) => events.emit({ ...event, serviceId: id, at: now() } as LifecycleEvent)

    /**
     * Runs `effect` as one transition: under the lock, not cut short by an interruption. A reload may have given the
     * service another lock (it joined a group) while this waited: then it takes that one.
     */
    const locked = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.suspend(() => {
        const lock = placed.lock
        return lock.withPermits(1)(
          Effect.suspend(() => (lock === placed.lock ? Effect.uninterruptible(effect) : locked(effect)))
        )
      })

    /** Where it runs: hot, draining or stopping. */
    const targetOf = (of: ServiceState) =>
      of._tag === "Hot" || of._tag === "Stopping" ? of.target : of._tag === "Draining" ? of.hot.target : undefined

    /** The hot state a running service is in (draining keeps the one it came from). */
    const runningOf = (of: ServiceState) => (of._tag === "Hot" ? of : of._tag === "Draining" ? of.hot : undefined)

    /**
     * The one place the state changes. A change of status is a `state` event (draining stays `hot`: its own events
     * say more); a service that becomes cold gives its place in its group back.
     */
    const transition = (next: ServiceState) =>
      Effect.suspend(() => {
        const from = statusOf(state)
        const left = state
        state = next
        if (next._tag !== "Cold") neverRan = false
        if (left._tag === "Draining") Deferred.unsafeDone(left.done, Exit.void)
        const published =
          from === statusOf(next)
            ? Effect.void
            : emit({ type: "state", from, to: statusOf(next), machineId: targetOf(next)?.machineId })
        if (next._tag !== "Cold") return published
        // Its place in the group it was in goes back first; then what a reload gave it takes effect.
        return Effect.zipRight(
          Effect.zipRight(published, placed.gate.leave(id)),
          Effect.sync(() => {
            if (pendingPlacement !== undefined) placed = pendingPlacement
            pendingPlacement = undefined
          })
        )
      })

    const childScope = Scope.fork(ctx.scope, ExecutionStrategy.sequential)

    // Transitions run uninterruptible and a fork inherits that: what they fork must be interruptible again, so that
    // leaving a state (or stopping the gateway) can end it.
    const forkIn = <A, E>(effect: Effect.Effect<A, E>, scope: Scope.Scope) =>
      Effect.forkIn(Effect.interruptible(effect), scope)
    const supervise = <A, E>(effect: Effect.Effect<A, E>) => FiberSet.run(ctx.fibers, Effect.interruptible(effect))

    /** A request's end: what every lease's release does once. */
    const ended = () => {
      inFlight--
      lastActivity = now()
      ctx.activityChanged()
      if (inFlight === 0 && idleSignal !== undefined) {
        Deferred.unsafeDone(idleSignal, Exit.void)
        idleSignal = undefined
      }
    }

    const lease = (hot: Hot): Lease => {
      inFlight++
      let released = false
      return {
        target: hot.target,
        release: () => {
          if (released) return
          released = true
          ended()
        }
      }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Instances (`instances:`): each lease is on one of them
    // ---------------------------------------------------------------------------------------------------------------

    const runFork = yield* FiberSet.runtime(ctx.fibers)<never>()
    const readiness = Context.get(ctx.context, Readiness)
    const instanceContext = {
      serviceId: id,
      // Each probe bounded like a readiness probe's (2 s at most).
      probe: (check: { readonly url: string; readonly anyAnswer: boolean }) =>
        Effect.map(readiness.probe(check.url, check.anyAnswer), (result) => result.ok),
      run: <A, E>(effect: Effect.Effect<A, E>) => runFork(Effect.interruptible(effect)),
      changed: (change: InstanceChange) => emit(change),
      now
    }
    const instancesOf = (p: Placement, previous: InstanceSet | undefined): InstanceSet | undefined => {
      if (p.service.instances.length === 0) {
        previous?.close()
        return undefined
      }
      if (previous === undefined) return new InstanceSet(instanceContext, p.service, p.targets[0]!)
      previous.update(p.service, p.targets[0]!)
      return previous
    }
    let instanceSet = instancesOf(placed, undefined)

    /** A lease on one instance: its requests in flight counted, and the failover of a refused connection. */
    const instanceLease = (hot: Hot, set: InstanceSet, first: InstanceState): Lease => {
      inFlight++
      first.inFlight++
      let instance = first
      let released = false
      return {
        get target() {
          return instance.target
        },
        release: () => {
          if (released) return
          released = true
          instance.inFlight--
          ended()
        },
        refused: (reason, retry) => {
          set.takeOut(instance, reason)
          if (!retry || released || state !== hot) return undefined
          const next = set.pick()
          if (next === undefined) return noHealthy(set)
          instance.inFlight--
          next.inFlight++
          instance = next
          return next.target
        }
      }
    }

    const noHealthy = (set: InstanceSet) => new NoHealthyInstance({ serviceId: id, instances: set.instances.length })

    /**
     * A lease on a hot service with instances: the balance strategy's pick (one it was told is out counts as no
     * decision), else the default rule. The state may change while a strategy answers: then `again`.
     */
    const leaseInstance = <E>(
      hot: Hot,
      set: InstanceSet,
      again: Effect.Effect<Lease, E>
    ): Effect.Effect<Lease, E | NoHealthyInstance> =>
      Effect.gen(function* () {
        if (set.healthy() === 0) return yield* noHealthy(set)
        const service = placed.service
        let chosen = ctx.balance.balances(service) ? yield* ctx.balance.pick(service, set.instances) : undefined
        if (state !== hot || instanceSet !== set) return yield* again
        if (chosen !== undefined && (!chosen.healthy || !set.has(chosen))) chosen = undefined
        chosen ??= set.pick()
        if (chosen === undefined) return yield* noHealthy(set)
        return instanceLease(hot, set, chosen)
      })

    /** Hot: a lease at once, or undefined when it needs more (a strategy's answer, or no healthy instance). */
    const tryLeaseHot = () => {
      if (state._tag !== "Hot") return undefined
      if (instanceSet === undefined) return lease(state)
      if (ctx.balance.balances(placed.service)) return undefined
      const instance = instanceSet.pick()
      return instance === undefined ? undefined : instanceLease(state, instanceSet, instance)
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Starting
    // ---------------------------------------------------------------------------------------------------------------

    /** One trace per start: a root span, linked to whatever asked for it. */
    const openColdStart = (trigger: StartTrigger) =>
      Effect.gen(function* () {
        const cause = yield* Effect.option(Effect.currentSpan)
        return yield* Effect.makeSpan("ServiceRegistry.coldStart", {
          root: true,
          attributes: { "hestia.service.id": id, "hestia.trigger": trigger },
          links: Option.isSome(cause) ? [{ _tag: "SpanLink", span: cause.value, attributes: {} }] : []
        })
      })

    const closeColdStart = (span: Tracer.Span, exit: Exit.Exit<StartupPolicy.Started, StartupFailed>) => {
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
    const noteWaiter = (requestId: string | undefined, position: number, joined: boolean) =>
      Effect.gen(function* () {
        if (state._tag !== "Starting") return
        const coldStart = state.span
        coldStart.event(joined ? "hestia.request.joined" : "hestia.request.triggered", clock.unsafeCurrentTimeNanos(), {
          ...(requestId === undefined ? {} : { "hestia.request.id": requestId }),
          "hestia.queue.position": position
        })
        const current = yield* Effect.option(Effect.currentSpan)
        if (Option.isSome(current)) current.value.addLinks([{ _tag: "SpanLink", span: coldStart, attributes: {} }])
      })

    const hooksFor = (starting: Starting): StartupPolicy.PolicyHooks => {
      const phase = (target: Target, attempt: number, of: number, phase: AttemptProgress["phase"]) =>
        Effect.sync(() => {
          starting.progress.current = { machine: target.machineId, number: attempt, of, phase, since: now() }
        })
      return {
        attemptStarted: (target, attempt, of) =>
          Effect.zipRight(
            phase(target, attempt, of, "starting"),
            emit({ type: "attempt_started", machineId: target.machineId, attempt })
          ),
        probing: (target, attempt, of) => phase(target, attempt, of, "probing"),
        probed: (probes, last) => {
          const current = starting.progress.current
          if (current !== undefined) starting.progress.current = { ...current, probes, lastProbe: last }
        },
        attemptFailed: (failure) =>
          Effect.zipRight(
            Effect.sync(() => starting.progress.failed.push(failure)),
            emit({
              type: "attempt_failed",
              machineId: failure.machine,
              attempt: failure.attempt,
              error: failure.error,
              message: failure.message
            })
          ),
        cleanupFailed: (target, error: StartError) =>
          emit({
            type: "stop_failed",
            machineId: target.machineId,
            message: `cleanup after a failed attempt: ${error.message}`
          })
      }
    }

    /** The policy's outcome, under the lock: hot and the waiters released, or cold with the error they all get. */
    const settle = (starting: Starting, exit: Exit.Exit<StartupPolicy.Started, StartupFailed>): Effect.Effect<void> =>
      locked(
        Effect.gen(function* () {
          // Cancelled meanwhile: the stop request has done the rest.
          if (state !== starting) return
          // Ended first: the log lines below still carry its trace id, but are not events of the span.
          closeColdStart(starting.span, exit)
          if (Exit.isSuccess(exit)) {
            const { target, instance } = exit.value
            lastActivity = now()
            const hot: Hot = { _tag: "Hot", since: now(), target, scope: yield* childScope }
            yield* transition(hot)
            yield* emit({
              type: "ready",
              machineId: target.machineId,
              durationMs: lastActivity - starting.since,
              released: pending
            })
            yield* Deferred.succeed(starting.ready, undefined)
            yield* whileHot(hot, instance)
            // Reconfigured (or removed) while it started: it serves the requests that waited, then restarts.
            if (pendingPlacement !== undefined || retired)
              yield* supervise(restartWhenIdle(retired ? "removed" : "reconfigured"))
            return
          }
          const error = Option.getOrElse(
            Cause.failureOption(exit.cause),
            () =>
              new StartupFailed({
                serviceId: id,
                attempts: [
                  ...starting.progress.failed,
                  { machine: "-", attempt: 0, error: "Defect", message: Cause.pretty(exit.cause) }
                ]
              })
          )
          yield* failedStart(starting, error)
          yield* Deferred.fail(starting.ready, error)
        })
      )

    /** Under the lock: a start that failed (or was cancelled) is `cold` with its error, and says so. */
    const failedStart = (starting: Starting, error: StartupFailed) =>
      Effect.zipRight(
        transition({ _tag: "Cold", since: now(), lastError: error }),
        emit({ type: "start_failed", durationMs: now() - starting.since, attempts: error.attempts, rejected: pending })
      )

    /** Under the lock: leave `cold` (or `stopping`, once stopped) and run the startup policy in the new state's scope. */
    const beginStart = (trigger: StartTrigger, requestId?: string): Effect.Effect<void> =>
      Effect.gen(function* () {
        const lastError = state._tag === "Cold" ? state.lastError : undefined
        // The routing decision: the machines this start will try, in order.
        yield* emit({ type: "start_requested", trigger, requestId, machines: placed.targets.map((t) => t.machineId) })
        const starting: Starting = {
          _tag: "Starting",
          since: now(),
          ready: yield* Deferred.make<void, StartupFailed>(),
          scope: yield* childScope,
          span: yield* openColdStart(trigger),
          progress: { current: undefined, failed: [], waitingFor: undefined },
          lastError
        }
        yield* transition(starting)
        const previousCleanup = cleanup
        const policy = Effect.gen(function* () {
          if (previousCleanup !== undefined) yield* Deferred.await(previousCleanup)
          // In an exclusive group, the running member makes room first (part of this start's trace).
          yield* placed.gate.enter(id, starting.progress).pipe(Effect.withParentSpan(starting.span))
          // The machines to try, in order: a placement strategy may reorder the configured ones.
          const targets = yield* ctx.placeStart(placed.service, placed.targets)
          const exit = yield* Effect.exit(StartupPolicy.run(placed.service, targets, starting.span, hooksFor(starting)))
          // Settling belongs to the start's trace: its log lines (ready, start_failed) carry that trace id.
          yield* settle(starting, exit).pipe(Effect.withParentSpan(starting.span))
          // The state is left: what belonged to it ends (this fiber, closing its own scope, is skipped).
          yield* Scope.close(starting.scope, Exit.void)
        })
        yield* forkIn(Effect.provide(policy, ctx.context), starting.scope)
        // While it starts, a line every few seconds says how far it got (ends with the state).
        yield* forkIn(stillStarting(starting), starting.scope)
      })

    /** `demo  still starting: 12 s, attempt 1/3 on local, probing http://…/health (last: ECONNREFUSED)` */
    const stillStarting = (starting: Starting) =>
      Effect.suspend(() => {
        const seconds = Math.round((now() - starting.since) / 1000)
        const current = starting.progress.current
        const waiting = starting.progress.waitingFor
        const target = current && placed.targets.find((t) => t.machineId === current.machine)
        const doing =
          waiting !== undefined
            ? `waiting for ${waiting} to make room`
            : current === undefined
              ? "preparing"
              : `attempt ${current.number}/${current.of} on ${current.machine}, ${
                  current.phase === "starting"
                    ? "starting"
                    : target?.healthUrl === undefined
                      ? "warming up"
                      : `probing ${target.healthUrl} (last: ${current.lastProbe ?? "none yet"})`
                }`
        return Effect.logInfo(`${id}: still starting: ${seconds} s, ${doing}`).pipe(
          Effect.annotateLogs({
            event: "still_starting",
            serviceId: id,
            machineId: current?.machine,
            elapsedMs: now() - starting.since,
            ...(current === undefined ? {} : { attempt: current.number, phase: current.phase })
          })
        )
      }).pipe(Effect.delay(STILL_STARTING_EVERY), Effect.forever)

    /** Under the lock: a stop request while starting. The attempt in progress is cleaned up before the waiters hear. */
    const cancelStart = (starting: Starting): Effect.Effect<void> =>
      Effect.gen(function* () {
        const current = starting.progress.current
        const error = new StartupFailed({
          serviceId: id,
          attempts: [
            ...starting.progress.failed,
            {
              machine: current?.machine ?? "-",
              attempt: current?.number ?? 0,
              error: "Interrupted",
              message: "start cancelled by a stop request"
            }
          ]
        })
        yield* failedStart(starting, error)
        closeColdStart(starting.span, Exit.interrupt(FiberId.none))
        const done = yield* Deferred.make<void>()
        cleanup = done
        yield* supervise(
          // Closing the scope interrupts the policy; its attempt's own cleanup stops what it had started.
          Scope.close(starting.scope, Exit.void).pipe(
            Effect.zipRight(Deferred.fail(starting.ready, error)),
            Effect.ensuring(
              Effect.zipRight(
                Deferred.succeed(done, undefined),
                Effect.sync(() => {
                  if (cleanup === done) cleanup = undefined
                })
              )
            )
          )
        )
      })

    // ---------------------------------------------------------------------------------------------------------------
    // Hot
    // ---------------------------------------------------------------------------------------------------------------

    /** Forked into the hot state's scope: the crash watch and the idle reaper. */
    const whileHot = (hot: Hot, instance: Instance): Effect.Effect<void> =>
      Effect.gen(function* () {
        const crashWatch = instance.exited.pipe(
          Effect.catchAll((error) => markGone(hot, `${error._tag}: ${error.message}`, error))
        )
        yield* forkIn(crashWatch, hot.scope)
        if (placed.service.idleTimeoutMs > 0) yield* forkIn(reaper(hot), hot.scope)
      })

    /** Stops the service `idle_timeout_ms` after the last request or stream ended, never while one is open. */
    /**
     * Stops the service `idle_timeout_ms` after the last request or stream ended, never while one is open. The setting
     * is read at each check, so a reload's new value applies from the next one (0 ends the reaper).
     */
    const reaper = (hot: Hot): Effect.Effect<void> => {
      const loop: Effect.Effect<void> = Effect.suspend(() => {
        const idleMs = placed.service.idleTimeoutMs
        if (idleMs === 0 || state !== hot) return Effect.void
        // A request or stream is open; its end stamps lastActivity, so check again later.
        if (inFlight > 0) return Effect.zipRight(Effect.sleep(idleMs), loop)
        const idleFor = now() - lastActivity
        if (idleFor < idleMs) return Effect.zipRight(Effect.sleep(idleMs - idleFor), loop)
        return locked(
          Effect.gen(function* () {
            const stillIdle = state === hot && inFlight === 0 && now() - lastActivity >= idleMs
            if (stillIdle) {
              yield* emit({ type: "idle_stop", machineId: hot.target.machineId, idleMs })
              yield* beginStop(hot, "idle")
            }
            return stillIdle
          })
        ).pipe(Effect.flatMap((stopping) => (stopping ? Effect.void : loop)))
      })
      return loop
    }

    /** The running instance went away on its own (crash, refused connection): stop what is left, then cold. */
    const markGone = (hot: Hot, reason: string, cause: LastError): Effect.Effect<void> =>
      locked(
        Effect.gen(function* () {
          if (runningOf(state) !== hot) return
          yield* emit({ type: "upstream_gone", machineId: hot.target.machineId, reason })
          yield* beginStop(hot, "gone", cause)
        })
      )

    // ---------------------------------------------------------------------------------------------------------------
    // Stopping
    // ---------------------------------------------------------------------------------------------------------------

    /** Under the lock: leave `hot` and stop in the background. */
    const beginStop = (hot: Hot, reason: StopReason, cause?: LastError): Effect.Effect<void> =>
      Effect.gen(function* () {
        const stopping: Stopping = {
          _tag: "Stopping",
          since: now(),
          target: hot.target,
          reason,
          cause,
          done: yield* Deferred.make<void>()
        }
        yield* transition(stopping)
        yield* supervise(runStop(hot, stopping))
      })

    const runStop = (hot: Hot, stopping: Stopping): Effect.Effect<void> =>
      Effect.gen(function* () {
        // The reaper and the crash watch end with the state they belong to.
        yield* Scope.close(hot.scope, Exit.void)
        const exit = yield* Effect.exit(
          Effect.provide(
            Effect.flatMap(Orchestrator, (orchestrator) => orchestrator.stop(placed.service, hot.target)),
            ctx.context
          )
        )
        if (Exit.isFailure(exit)) {
          yield* emit({ type: "stop_failed", machineId: hot.target.machineId, message: Cause.pretty(exit.cause) })
        }
        yield* locked(
          Effect.gen(function* () {
            yield* transition({ _tag: "Cold", since: now(), lastError: stopping.cause })
            yield* emit({ type: "stopped", machineId: hot.target.machineId, reason: stopping.reason })
            // Requests that arrived while it was stopping start it again (not once it is removed).
            if ((pending > 0 || startAfterStop) && !retired) {
              const trigger = pending > 0 ? "request" : "api"
              startAfterStop = false
              yield* beginStart(trigger)
            }
            yield* Deferred.succeed(stopping.done, undefined)
          })
        )
      })

    // ---------------------------------------------------------------------------------------------------------------
    // Requests and control
    // ---------------------------------------------------------------------------------------------------------------

    type Admission =
      | { readonly _tag: "Leased"; readonly lease: Lease }
      | { readonly _tag: "Queued" }
      | { readonly _tag: "Hot" }

    const admit = (requestId: string | undefined) =>
      locked(
        Effect.gen(function* () {
          if (state._tag === "Hot") {
            // With instances, which one is picked outside the lock (a strategy may take a while).
            return (instanceSet === undefined ? { _tag: "Leased", lease: lease(state) } : { _tag: "Hot" }) as Admission
          }
          if (pending >= placed.service.queueSize) {
            yield* emit({ type: "request_rejected", error: "QueueFull", requestId })
            return yield* new QueueFull({ serviceId: id, capacity: placed.service.queueSize })
          }
          pending++
          const joined = state._tag === "Starting"
          if (state._tag === "Cold") yield* beginStart("request", requestId)
          yield* emit({ type: "request_queued", position: pending, requestId, joined })
          yield* noteWaiter(requestId, pending, joined)
          return { _tag: "Queued" } as Admission
        })
      )

    /** What a request that gives up waiting is told: how far the start has got. */
    const queueTimeout = (waitedMs: number) => {
      if (state._tag !== "Starting") return new QueueTimeout({ serviceId: id, waitedMs })
      const { current, failed } = state.progress
      return new QueueTimeout({
        serviceId: id,
        waitedMs,
        attempts: [...failed],
        ...(current === undefined ? {} : { attempt: { ...current, since: iso(current.since) } })
      })
    }

    /** Follows the state until it is hot: every waiter of a start awaits that start's one Deferred. */
    const untilHot: Effect.Effect<Lease, StartupFailed | NoHealthyInstance> = Effect.suspend(() => {
      switch (state._tag) {
        case "Hot":
          return instanceSet === undefined ? Effect.succeed(lease(state)) : leaseInstance(state, instanceSet, untilHot)
        case "Starting":
          return Effect.zipRight(Deferred.await(state.ready), untilHot)
        case "Draining":
        case "Stopping":
          return Effect.zipRight(Deferred.await(state.done), untilHot)
        case "Cold":
          if (retired) return Effect.fail(removed())
          return Effect.zipRight(
            locked(Effect.suspend(() => (state._tag === "Cold" ? beginStart("request") : Effect.void))),
            untilHot
          )
      }
    })

    const acquire = (
      requestId?: string
    ): Effect.Effect<Lease, QueueFull | QueueTimeout | StartupFailed | NoHealthyInstance> =>
      Effect.suspend(() => {
        const hot = tryLeaseHot()
        if (hot !== undefined) return Effect.succeed(hot)
        if (state._tag === "Hot" && instanceSet !== undefined) {
          return leaseInstance(state, instanceSet, acquire(requestId))
        }
        return Effect.flatMap(admit(requestId), (admission) => {
          if (admission._tag === "Leased") return Effect.succeed(admission.lease)
          if (admission._tag === "Hot") return acquire(requestId)
          const queuedAt = now()
          const waitMs = placed.service.requestTimeoutMs
          return untilHot.pipe(
            Effect.timeoutFail({ duration: waitMs, onTimeout: () => queueTimeout(waitMs) }),
            Effect.tap(() => emit({ type: "request_released", waitedMs: now() - queuedAt, requestId })),
            Effect.tapErrorTag("QueueTimeout", () =>
              emit({ type: "request_rejected", error: "QueueTimeout", requestId })
            ),
            Effect.ensuring(
              Effect.sync(() => {
                pending--
              })
            )
          )
        })
      })

    const start = (requestId?: string) =>
      locked(
        Effect.gen(function* () {
          const before = statusOf(state)
          if (state._tag === "Cold" && !retired) yield* beginStart("api", requestId)
          if (state._tag === "Stopping" || state._tag === "Draining") startAfterStop = true
          return before
        })
      )

    /** Follows the state until hot, without holding a lease (a start asked for by the API waits this way). */
    const awaitHot: Effect.Effect<void, StartupFailed> = Effect.suspend(() => {
      switch (state._tag) {
        case "Hot":
          return Effect.void
        case "Starting":
          return Effect.zipRight(Deferred.await(state.ready), awaitHot)
        case "Draining":
        case "Stopping":
          return Effect.zipRight(Deferred.await(state.done), awaitHot)
        case "Cold":
          return retired ? Effect.fail(removed()) : Effect.zipRight(start(), awaitHot)
      }
    })

    const stop = locked(
      Effect.gen(function* () {
        const before = statusOf(state)
        startAfterStop = false
        const running = runningOf(state)
        if (running !== undefined) yield* beginStop(running, "api")
        else if (state._tag === "Starting") yield* cancelStart(state)
        return before
      })
    )

    const reportUnavailable = (target: Target, reason: string) =>
      Effect.suspend(() => {
        const running = runningOf(state)
        return running !== undefined && running.target === target
          ? markGone(running, reason, new UpstreamUnavailable({ serviceId: id, reason }))
          : Effect.void
      })

    // ---------------------------------------------------------------------------------------------------------------
    // Restart and status
    // ---------------------------------------------------------------------------------------------------------------

    const restoreFrom = (saved: PersistedService | undefined) =>
      Effect.gen(function* () {
        if (saved?.lastActivity != null) lastActivity = saved.lastActivity
        const restored = yield* Effect.provide(restore(placed.service, placed.targets, saved, emit, now()), ctx.context)
        if (restored._tag === "Cold") {
          state = { _tag: "Cold", since: now(), lastError: restored.lastError } satisfies Cold
          return
        }
        yield* locked(
          Effect.gen(function* () {
            if (lastActivity === 0) lastActivity = now()
            const hot: Hot = { _tag: "Hot", since: now(), target: restored.target, scope: yield* childScope }
            yield* transition(hot)
            yield* emit({ type: "adopted", machineId: restored.target.machineId, lastActivity })
            yield* whileHot(hot, restored.instance)
            // Two members of one exclusive group found running after a restart: the later one makes room.
            const holder = yield* placed.gate.claim(id)
            if (holder !== undefined) {
              yield* emit({ type: "evicted", machineId: restored.target.machineId, by: holder, waitedMs: 0, cut: 0 })
              yield* beginStop(hot, "evicted")
            }
          })
        )
      })

    /** An external service found answering its health URL by a status read: hot without a request. */
    let probedAt = Number.NEGATIVE_INFINITY
    let probing: Fiber.RuntimeFiber<void> | undefined
    const probeExternal = Effect.gen(function* () {
      const target = placed.targets[0]
      if (!neverRan || state._tag !== "Cold" || retired || placed.service.kind !== "external" || target === undefined) {
        return
      }
      // Its health URL (or, with instances, theirs): nothing to ask means nothing to find.
      const probe = Context.get(ctx.context, Readiness).probeService(placed.service, target)
      if (probe === undefined) return
      // At most one probe a second; a status read waits for it briefly, never for a dead host's whole timeout.
      if (probing === undefined && now() - probedAt >= EXTERNAL_PROBE_EVERY_MS) {
        probedAt = now()
        probing = yield* supervise(
          probe.pipe(
            Effect.timeoutOption(EXTERNAL_PROBE_MS),
            Effect.flatMap((result) =>
              Option.isSome(result) && result.value.ok ? becameHotOnItsOwn(target) : Effect.void
            ),
            Effect.ensuring(
              Effect.sync(() => {
                probing = undefined
              })
            )
          )
        )
      }
      if (probing !== undefined) yield* Effect.ignore(Effect.timeout(Fiber.await(probing), EXTERNAL_PROBE_WAIT_MS))
    })

    const becameHotOnItsOwn = (target: Target) =>
      locked(
        Effect.gen(function* () {
          if (state._tag !== "Cold" || retired) return
          if (lastActivity === 0) lastActivity = now()
          const hot: Hot = { _tag: "Hot", since: now(), target, scope: yield* childScope }
          yield* transition(hot)
          yield* emit({ type: "adopted", machineId: target.machineId, lastActivity })
          yield* whileHot(hot, unmanaged)
        })
      )

    const view = Effect.gen(function* () {
      yield* probeExternal
      const current = state
      const automation = yield* ctx.automation(id)
      const container = yield* ctx.container(id)
      const lastError = current._tag === "Cold" || current._tag === "Starting" ? current.lastError : undefined
      const attempt = current._tag === "Starting" ? current.progress.current : undefined
      const where = targetOf(current)
      const attemptTarget =
        attempt === undefined ? undefined : placed.targets.find((t) => t.machineId === attempt.machine)
      return {
        ...(automation === undefined ? {} : { automation }),
        ...(container === undefined ? {} : { container }),
        serviceId: id,
        source: placed.service.source,
        state: statusOf(current),
        readiness: current._tag === "Hot" ? "ready" : "not_ready",
        machineId: where?.machineId ?? attempt?.machine ?? null,
        baseUrl: (where ?? attemptTarget ?? placed.targets[0]!).baseUrl,
        queuePending: pending,
        queueCapacity: placed.service.queueSize,
        inFlight,
        lastActivity: lastActivity === 0 ? null : iso(lastActivity),
        lastError:
          lastError === undefined
            ? null
            : {
                error: lastError._tag,
                message: lastError.message,
                attempts: lastError._tag === "StartupFailed" ? lastError.attempts : []
              },
        ...(placed.group === undefined ? {} : { group: placed.group }),
        ...(current._tag === "Starting" && current.progress.waitingFor !== undefined
          ? { waitingFor: current.progress.waitingFor }
          : {}),
        ...(current._tag === "Draining" ? { draining: { by: current.by, since: iso(current.since) } } : {}),
        ...(instanceSet === undefined ? {} : { instances: instanceSet.view() }),
        ...(attempt === undefined ? {} : { attempt: { ...attempt, since: iso(attempt.since) } })
      } satisfies ServiceStatusView
    })

    const removed = () =>
      new StartupFailed({
        serviceId: id,
        attempts: [
          {
            machine: "-",
            attempt: 0,
            error: "ServiceRemoved",
            message: "the service was removed from the configuration"
          }
        ]
      })

    /** What the running instance was started from: a change there needs a restart. */
    const startedFrom = (p: Placement) =>
      JSON.stringify([
        p.service.kind,
        p.service.baseUrl,
        p.service.healthUrl,
        p.service.command,
        p.service.cwd,
        p.service.env,
        p.service.container,
        p.service.semaphore,
        p.service.fallbackUrl,
        p.targets,
        p.group
      ])

    /** Finishes the open requests (new ones wait), then stops; bounded like an eviction's drain. */
    const restartWhenIdle = (reason: "reconfigured" | "removed") =>
      Effect.gen(function* () {
        if (!(yield* eviction.drain("configuration"))) return
        yield* Effect.timeoutOption(eviction.idle, RECONFIGURE_DRAIN_MS)
        yield* locked(
          Effect.suspend(() => {
            const running = runningOf(state)
            return running === undefined ? Effect.void : beginStop(running, reason)
          })
        )
      })

    const reconfigure = (next: Placement) =>
      locked(
        Effect.gen(function* () {
          // Its instances are what requests are sent to, not what it was started from: they change at once.
          instanceSet = instancesOf(next, instanceSet)
          const restartNeeded =
            startedFrom(next) !== startedFrom(placed) || next.lock !== placed.lock || next.gate !== placed.gate
          if (!restartNeeded || state._tag === "Cold") {
            const reaperWasOff = placed.service.idleTimeoutMs === 0
            placed = next
            pendingPlacement = undefined
            // An idle timeout turned on while it runs: that instance gets its reaper now.
            if (state._tag === "Hot" && reaperWasOff && next.service.idleTimeoutMs > 0) {
              yield* forkIn(reaper(state), state.scope)
            }
            return
          }
          pendingPlacement = next
          if (state._tag === "Hot") yield* supervise(restartWhenIdle("reconfigured"))
        })
      )

    const retire = locked(
      Effect.gen(function* () {
        retired = true
        instanceSet?.close()
        startAfterStop = false
        if (state._tag === "Starting") yield* cancelStart(state)
        else if (state._tag === "Hot") yield* supervise(restartWhenIdle("removed"))
      })
    )

    const eviction: Eviction = {
      running: Effect.suspend(function loop(): Effect.Effect<boolean> {
        switch (state._tag) {
          case "Hot":
          case "Draining":
            return Effect.succeed(true)
          case "Starting":
            return Effect.zipRight(Effect.exit(Deferred.await(state.ready)), Effect.suspend(loop))
          default:
            return Effect.succeed(false)
        }
      }),
      hotSince: () => runningOf(state)?.since,
      drain: (by) =>
        locked(
          Effect.gen(function* () {
            if (state._tag !== "Hot") return state._tag === "Draining"
            const draining: Draining = {
              _tag: "Draining",
              since: now(),
              hot: state,
              by,
              done: yield* Deferred.make<void>()
            }
            yield* transition(draining)
            return true
          })
        ),
      idle: Effect.suspend(() => {
        if (inFlight === 0) return Effect.void
        if (idleSignal === undefined) idleSignal = Deferred.unsafeMake<void>(FiberId.none)
        return Deferred.await(idleSignal)
      }),
      evict: (by, waitedMs) =>
        locked(
          Effect.gen(function* () {
            const running = runningOf(state)
            if (running === undefined) return
            yield* emit({ type: "evicted", machineId: running.target.machineId, by, waitedMs, cut: inFlight })
            yield* beginStop(running, "evicted")
          })
        )
    }

    return {
      get service() {
        return placed.service
      },
      get targets() {
        return placed.targets
      },
      eviction,
      reconfigure,
      retire,
      state: () => state,
      tryLeaseHot,
      acquire,
      start,
      awaitHot,
      stop,
      reportUnavailable,
      restore: restoreFrom,
      view,
      lastActivity: () => lastActivity
    }
  })
