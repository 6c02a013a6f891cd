import { Effect, Schedule, type Tracer } from "effect"
import type { ServiceConfig } from "../config/HestiaConfig.ts"
import { type StartAttempt, type StartError, StartupFailed } from "../domain/Errors.ts"
import type { Target } from "../domain/Placement.ts"
import { tagError } from "../observability/Telemetry.ts"
import { type Instance, Orchestrator } from "../orchestrators/Orchestrator.ts"
import { Readiness } from "../readiness/Readiness.ts"

/** Where a start succeeded and what runs there. */
export interface Started {
  readonly target: Target
  readonly instance: Instance
}

/** What the policy tells its owner as it goes (events, status); none of these may fail. */
export interface PolicyHooks {
  /** Attempt `attempt` of `of` begins on `target`. */
  readonly attemptStarted: (target: Target, attempt: number, of: number) => Effect.Effect<void>
  /** The orchestrator has started it; readiness decides now. */
  readonly probing: (target: Target, attempt: number, of: number) => Effect.Effect<void>
  /** Each health probe's result, as it comes (synchronous: called from the probe loop). */
  readonly probed: (probes: number, last: string) => void
  readonly attemptFailed: (failure: StartAttempt) => Effect.Effect<void>
  /** Cleaning up a failed attempt failed too: nothing may be dropped silently. */
  readonly cleanupFailed: (target: Target, error: StartError) => Effect.Effect<void>
}

const describe = (machine: string, attempt: number, error: StartError): StartAttempt => ({
  machine,
  attempt,
  error: error._tag,
  message: error.message
})

/** A started instance that has already died (e.g. of EADDRINUSE while another process answered its health URL). */
const alreadyExited = (instance: Instance) =>
  Effect.raceFirst(Effect.flip(instance.exited), Effect.as(Effect.yieldNow(), undefined))

/** One try on one machine: orchestrator start, then readiness raced against the instance dying. */
const attemptOnce = (service: ServiceConfig, target: Target, attempt: number, of: number, hooks: PolicyHooks) =>
  Effect.gen(function* () {
    const orchestrator = yield* Orchestrator
    const readiness = yield* Readiness
    yield* Effect.annotateCurrentSpan("hestia.attempt", attempt)
    yield* hooks.attemptStarted(target, attempt, of)
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
    yield* hooks.probing(target, attempt, of)
    yield* Effect.raceFirst(readiness.wait(service, target, hooks.probed), instance.exited)
    const died = yield* alreadyExited(instance)
    if (died !== undefined) return yield* Effect.fail(died)
    return instance
  }).pipe(
    // A failed or abandoned attempt must not leave anything running behind it; a failed cleanup is reported.
    Effect.onError(() =>
      Effect.flatMap(Orchestrator, (orchestrator) => orchestrator.stop(service, target)).pipe(
        Effect.catchAll((error) => hooks.cleanupFailed(target, error))
      )
    ),
    Effect.tapError((error) =>
      Effect.zipRight(tagError(error), hooks.attemptFailed(describe(target.machineId, attempt, error)))
    ),
    Effect.withSpan("ServiceRegistry.attempt", {
      attributes: { "hestia.service.id": service.id, "hestia.machine.id": target.machineId }
    })
  )

/** `retry_count + 1` attempts on one machine, `retry_delay_ms` apart. */
const onMachine = (service: ServiceConfig, target: Target, hooks: PolicyHooks) => {
  const of = service.retryCount + 1
  let attempt = 0
  return Effect.suspend(() => attemptOnce(service, target, ++attempt, of, hooks)).pipe(
    Effect.retry(Schedule.spaced(service.retryDelayMs).pipe(Schedule.intersect(Schedule.recurs(service.retryCount)))),
    Effect.tapError(tagError),
    Effect.withSpan("ServiceRegistry.machine", {
      attributes: { "hestia.service.id": service.id, "hestia.machine.id": target.machineId }
    })
  )
}

/**
 * The startup policy: each machine in preference order, `retry_count + 1` attempts each, then the next machine;
 * when every machine has failed, `StartupFailed` with every attempt. Runs under `coldStart`, the start's root span.
 */
export const run = (
  service: ServiceConfig,
  targets: ReadonlyArray<Target>,
  coldStart: Tracer.Span,
  hooks: PolicyHooks
): Effect.Effect<Started, StartupFailed, Orchestrator | Readiness> =>
  Effect.gen(function* () {
    const attempts: Array<StartAttempt> = []
    const collecting: PolicyHooks = {
      ...hooks,
      attemptFailed: (failure) =>
        Effect.zipRight(
          Effect.sync(() => attempts.push(failure)),
          hooks.attemptFailed(failure)
        )
    }
    coldStart.attribute("hestia.placement", targets.map((target) => target.machineId).join(","))
    for (const target of targets) {
      const result = yield* Effect.either(onMachine(service, target, collecting))
      if (result._tag === "Right") {
        coldStart.attribute("hestia.attempts", attempts.length + 1)
        return { target, instance: result.right }
      }
    }
    coldStart.attribute("hestia.attempts", attempts.length)
    return yield* new StartupFailed({ serviceId: service.id, attempts })
  }).pipe(Effect.withParentSpan(coldStart))
