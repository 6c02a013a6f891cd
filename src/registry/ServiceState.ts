import type { Deferred, Scope, Tracer } from "effect"
import type { StartAttempt, StartError, StartupFailed, UpstreamUnavailable } from "../domain/Errors.ts"
import type { Target } from "../domain/Placement.ts"

/** The four states as the API, the store and the events name them. */
export type ServiceStatus = "cold" | "starting" | "hot" | "stopping"

/** What started a cold start. */
export type StartTrigger = "request" | "api" | "restart"

/** Why a service left `hot`. */
export type StopReason = "idle" | "api" | "gone" | "evicted" | "reconfigured" | "removed"

/** The attempt a start is making right now, for status and for a request that gives up waiting. */
export interface AttemptProgress {
  readonly machine: string
  readonly number: number
  /** Attempts this machine gets (`retry_count + 1`). */
  readonly of: number
  readonly phase: "starting" | "probing"
  /** Clock millis when this phase began. */
  readonly since: number
  /** While probing: how many health probes so far, and what the last one answered. */
  readonly probes?: number
  readonly lastProbe?: string
}

/** What a start in flight has done so far; written by the startup policy, read by status. */
export interface StartProgress {
  current: AttemptProgress | undefined
  readonly failed: Array<StartAttempt>
  /** Waiting for its exclusive group: the member that must stop first. */
  waitingFor: string | undefined
}

/**
 * Why a service is cold, when something went wrong: its last start failed (every attempt), or the running instance
 * died on its own (a process or container that exited, an upstream that refused connections).
 */
export type LastError = StartupFailed | StartError | UpstreamUnavailable

export interface Cold {
  readonly _tag: "Cold"
  readonly since: number
  readonly lastError: LastError | undefined
}

export interface Starting {
  readonly _tag: "Starting"
  readonly since: number
  /** Every request waiting for this start awaits this one Deferred. */
  readonly ready: Deferred.Deferred<void, StartupFailed>
  /** Holds the startup policy's fiber: closing it cancels the start (and cleans up the attempt in progress). */
  readonly scope: Scope.CloseableScope
  /** `ServiceRegistry.coldStart`, the root of this start's trace. */
  readonly span: Tracer.Span
  readonly progress: StartProgress
  readonly lastError: LastError | undefined
}

export interface Hot {
  readonly _tag: "Hot"
  readonly since: number
  readonly target: Target
  /** Holds the crash watch and the idle reaper: both end when the service leaves this state. */
  readonly scope: Scope.CloseableScope
}

/**
 * Still running and serving the requests it has, but taking no new ones: an eviction (another member of its exclusive
 * group needs the machine) waits for them to end. New requests wait and start it again later.
 */
export interface Draining {
  readonly _tag: "Draining"
  readonly since: number
  /** The hot state it came from: its scope (crash watch, reaper) lives on until the stop. */
  readonly hot: Hot
  /** The member it makes room for. */
  readonly by: string
  /** Completed when it leaves this state. */
  readonly done: Deferred.Deferred<void>
}

export interface Stopping {
  readonly _tag: "Stopping"
  readonly since: number
  readonly target: Target
  readonly reason: StopReason
  /** Gone on its own: what it died of, the error the service is left with. */
  readonly cause: LastError | undefined
  /** Completed when the stop has ended (the service is cold, or starting again for requests that came meanwhile). */
  readonly done: Deferred.Deferred<void>
}

/** One service's lifecycle state: what belongs to a state lives in it and ends with it. */
export type ServiceState = Cold | Starting | Hot | Draining | Stopping

export const statusOf = (state: ServiceState): ServiceStatus => {
  switch (state._tag) {
    case "Cold":
      return "cold"
    case "Starting":
      return "starting"
    case "Hot":
    case "Draining":
      return "hot"
    case "Stopping":
      return "stopping"
  }
}
