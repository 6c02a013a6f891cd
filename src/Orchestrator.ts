import { Context, Effect, Layer, Option } from "effect"
import type { StartError, StopError } from "./domain/Errors.ts"
import type { Target } from "./domain/Placement.ts"
import type { ServiceConfig } from "./HestiaConfig.ts"
import * as External from "./orchestrators/External.ts"
import * as Process from "./orchestrators/Process.ts"
import * as Semaphore from "./orchestrators/Semaphore.ts"
import * as Simulated from "./orchestrators/Simulated.ts"
import { SemaphoreTasks } from "./SemaphoreTasks.ts"
import { Store } from "./Store.ts"

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
   * After a gateway restart, for a service found healthy on `target`: take over what an earlier run started there,
   * so that a later stop stops it (none: nothing of it runs). Absent: nothing to take over, it runs on its own.
   */
  readonly adopt?: (service: ServiceConfig, target: Target) => Effect.Effect<Option.Option<Instance>>
  /**
   * After a gateway restart, for a service not adopted: stop whatever an earlier run started for it and did not stop
   * (true when there was such a thing, even if it had died since).
   */
  readonly reclaim?: (service: ServiceConfig) => Effect.Effect<boolean>
}

/** What runs on its own: nothing to watch or to stop. */
export const unmanaged: Instance = { exited: Effect.never, pid: undefined }

/** The port through which services are started and stopped on a machine. */
export class Orchestrator extends Context.Tag("hestia/Orchestrator")<Orchestrator, OrchestratorShape>() {
  static readonly layerExternal = Layer.succeed(Orchestrator, External.make)
  static readonly layerProcess = Layer.scoped(Orchestrator, Process.make).pipe(Layer.provide(Store.Default))
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
        stop: (service, target) => byKind[target.kind].stop(service, target),
        adopt: (service, target) =>
          byKind[target.kind].adopt?.(service, target) ?? Effect.succeed(Option.some(unmanaged)),
        // Only processes leave anything behind that the gateway must clean up.
        reclaim: process.reclaim
      } satisfies OrchestratorShape
    })
  ).pipe(Layer.provide(Store.Default), Layer.provideMerge(SemaphoreTasks.layer))
}
