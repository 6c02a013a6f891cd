import { Effect } from "effect"
import type { StartProgress } from "./ServiceState.ts"

/**
 * Admits a service's starts. A service of its own is always admitted; the members of an exclusive group are
 * admitted one at a time (see ExclusiveGroup), which is the one decision an owner shares with other owners.
 */
export interface StartGate {
  /**
   * In the start's policy fiber, before its first attempt: completes when the service may run. It may have to wait
   * for another member to drain and stop; `progress.waitingFor` names that member meanwhile.
   */
  readonly enter: (serviceId: string, progress: StartProgress) => Effect.Effect<void>
  /** Under the lock, when the service has become cold: its place is free again. */
  readonly leave: (serviceId: string) => Effect.Effect<void>
  /**
   * Under the lock, when a restart finds the service running: takes its place, or answers the member that holds it
   * already (then this one must stop).
   */
  readonly claim: (serviceId: string) => Effect.Effect<string | undefined>
}

/** A service decided alone. */
export const open: StartGate = {
  enter: () => Effect.void,
  leave: () => Effect.void,
  claim: () => Effect.succeed(undefined)
}
