import { Context, type Effect, type Option } from "effect"
import type { ServiceConfig } from "../config/HestiaConfig.ts"
import type { StartError, StopError } from "../domain/Errors.ts"
import type { Target } from "../domain/Placement.ts"

/** What a successful start hands back to the registry. */
export interface Instance {
  /** Fails when the started thing dies on its own (a process exiting); never succeeds. */
  readonly exited: Effect.Effect<never, StartError>
  /** The process id, for processes. */
  readonly pid: number | undefined
}

export interface OrchestratorShape {
  readonly start: (service: ServiceConfig, target: Target) => Effect.Effect<Instance, StartError>
  readonly stop: (service: ServiceConfig, target: Target) => Effect.Effect<void, StopError>
  /**
   * After a gateway restart, for a service found recorded on `target`: take over what an earlier run started there,
   * so that a later stop stops it (`none`: nothing of it runs). Adapters whose services run on their own answer
   * `some(unmanaged)`.
   */
  readonly adopt: (service: ServiceConfig, target: Target) => Effect.Effect<Option.Option<Instance>>
  /**
   * After a gateway restart, for a service not adopted: stop whatever an earlier run started for it and did not stop
   * (true when there was such a thing, even if it had died since). `false` where an adapter leaves nothing behind.
   */
  readonly reclaim: (service: ServiceConfig) => Effect.Effect<boolean>
}

/** The port through which services are started and stopped on a machine. Each adapter module exports its layer. */
export class Orchestrator extends Context.Tag("hestia/Orchestrator")<Orchestrator, OrchestratorShape>() {}
