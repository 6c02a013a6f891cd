import { Context, Effect, Layer } from "effect"
import type { StartError, StopError } from "./domain/Errors.ts"
import type { Target } from "./domain/Placement.ts"
import type { ServiceConfig } from "./HestiaConfig.ts"
import * as External from "./orchestrators/External.ts"
import * as Process from "./orchestrators/Process.ts"
import * as Semaphore from "./orchestrators/Semaphore.ts"
import * as Simulated from "./orchestrators/Simulated.ts"
import { SemaphoreTasks } from "./SemaphoreTasks.ts"

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
}

/** The port through which services are started and stopped on a machine. */
export class Orchestrator extends Context.Tag("hestia/Orchestrator")<Orchestrator, OrchestratorShape>() {
  static readonly layerExternal = Layer.succeed(Orchestrator, External.make)
  static readonly layerProcess = Layer.scoped(Orchestrator, Process.make)
  static readonly layerSemaphore = Layer.effect(Orchestrator, Semaphore.make)
  /** Tests: scripted machines on the Clock (a getter: Simulated.ts imports this module). */
  static get layerSimulated() {
    return Simulated.layer
  }

  /**
   * Each target goes to the implementation its kind names: local process, Semaphore task, or nothing to start.
   * Also provides SemaphoreTasks, the record of Semaphore tasks that service status reports.
   */
  static readonly layer = Layer.scoped(
    Orchestrator,
    Effect.gen(function* () {
      const process = yield* Process.make
      const semaphore = yield* Semaphore.make
      const byKind: Record<Target["kind"], OrchestratorShape> = { process, semaphore, external: External.make }
      return {
        start: (service, target) => byKind[target.kind].start(service, target),
        stop: (service, target) => byKind[target.kind].stop(service, target)
      }
    })
  ).pipe(Layer.provideMerge(SemaphoreTasks.layer))
}
