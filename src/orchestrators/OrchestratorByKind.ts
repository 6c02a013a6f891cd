import { Effect, Layer } from "effect"
import type { Target } from "../domain/Placement.ts"
import { Store } from "../store/Store.ts"
import * as External from "./External.ts"
import { Orchestrator, type OrchestratorShape } from "./Orchestrator.ts"
import * as Process from "./Process.ts"
import * as Semaphore from "./Semaphore.ts"
import { SemaphoreClient } from "./SemaphoreClient.ts"
import { SemaphoreTasks } from "./SemaphoreTasks.ts"

/**
 * The gateway's Orchestrator: each target goes to the adapter its kind names (local process, Semaphore task, or
 * nothing to start). Also provides SemaphoreTasks, the record of Semaphore tasks that service status reports.
 */
export const layer = Layer.scoped(
  Orchestrator,
  Effect.gen(function* () {
    const process = yield* Process.make
    const semaphore = yield* Semaphore.make
    const byKind: Record<Target["kind"], OrchestratorShape> = { process, semaphore, external: External.make }
    return {
      start: (service, target) => byKind[target.kind].start(service, target),
      stop: (service, target) => byKind[target.kind].stop(service, target),
      adopt: (service, target) => byKind[target.kind].adopt(service, target),
      // Only processes leave anything behind that the gateway must clean up.
      reclaim: process.reclaim
    } satisfies OrchestratorShape
  })
).pipe(Layer.provide([Store.Default, SemaphoreClient.Default]), Layer.provideMerge(SemaphoreTasks.layer))
