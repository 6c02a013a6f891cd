import { Effect, Option } from "effect"
import type { ServiceConfig } from "../config/HestiaConfig.ts"
import { StartupFailed } from "../domain/Errors.ts"
import type { Target } from "../domain/Placement.ts"
import { type Instance, Orchestrator } from "../orchestrators/Orchestrator.ts"
import { Readiness } from "../readiness/Readiness.ts"
import type { PersistedService } from "../store/ServiceRows.ts"
import type { EventFields } from "./ServiceOwner.ts"

/** How long a service recorded as running may take to answer its health check at start-up. */
const RESTORE_PROBE_MS = 3_000

/** What a service is after a gateway restart: taken over as it runs, or cold. */
export type Restored =
  | { readonly _tag: "Adopted"; readonly target: Target; readonly instance: Instance }
  | { readonly _tag: "Cold"; readonly lastError: StartupFailed | undefined }

/** Take over what still runs on `target`, if its health URL (when it has one) answers. */
const adoptIfHealthy = (service: ServiceConfig, target: Target) =>
  Effect.gen(function* () {
    const orchestrator = yield* Orchestrator
    const readiness = yield* Readiness
    const taken = yield* orchestrator.adopt(service, target)
    if (Option.isNone(taken) || target.healthUrl === undefined) return taken
    const healthy = yield* Effect.isSuccess(readiness.wait({ ...service, startupTimeoutMs: RESTORE_PROBE_MS }, target))
    return healthy ? taken : Option.none()
  })

/**
 * Carry on from what the previous run recorded: a service recorded hot (or starting, with a health URL to ask)
 * that answers is adopted; otherwise it is cold, whatever an earlier run left of it is stopped, and the timeline
 * says why (`emit` writes the events the services row and the activity log need).
 */
export const restore = (
  service: ServiceConfig,
  targets: ReadonlyArray<Target>,
  saved: PersistedService | undefined,
  emit: (event: EventFields) => Effect.Effect<void>,
  now: number
): Effect.Effect<Restored, never, Orchestrator | Readiness> =>
  Effect.gen(function* () {
    const orchestrator = yield* Orchestrator
    const recordedError =
      saved?.lastError?.error === "StartupFailed"
        ? new StartupFailed({ serviceId: service.id, attempts: saved.lastError.attempts })
        : undefined
    const was = saved?.state ?? "cold"
    const target = targets.find((t) => t.machineId === saved?.machineId)
    // Without a health URL only a start that had finished is trusted: nothing says a `starting` one ever would.
    const checkable = was === "hot" || (was === "starting" && target?.healthUrl !== undefined)
    if (checkable && target !== undefined) {
      const adopted = yield* adoptIfHealthy(service, target)
      if (Option.isSome(adopted)) return { _tag: "Adopted", target, instance: adopted.value } as const
    }
    // Whatever an earlier run spawned for it and did not stop is stopped now.
    const leftover = yield* orchestrator.reclaim(service)
    if (was === "cold") return { _tag: "Cold", lastError: recordedError } as const
    const machineId = saved?.machineId ?? undefined
    yield* emit({ type: "state", from: was, to: "cold", machineId: undefined })
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
      yield* emit({
        type: "start_failed",
        machineId,
        durationMs: now - (saved?.stateSince ?? now),
        attempts: lastError.attempts,
        rejected: 0
      })
      return { _tag: "Cold", lastError } as const
    }
    if (leftover || target?.kind !== "process") {
      yield* emit({
        type: "upstream_gone",
        machineId,
        reason: `${was} when the gateway stopped, not running after its restart`
      })
    }
    // Else a process the previous run stopped itself on a clean exit: only the state row changes.
    return { _tag: "Cold", lastError: recordedError } as const
  })
