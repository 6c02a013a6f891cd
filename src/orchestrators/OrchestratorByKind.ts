import { Effect, Layer } from "effect"
import type { Target } from "../domain/Placement.ts"
import { ServiceLogs } from "../observability/ServiceLogs.ts"
import { ContainerRows } from "../store/ContainerRows.ts"
import { ProcessRecords } from "../store/ProcessRecords.ts"
import * as Container from "./Container.ts"
import { ContainerRecords } from "./ContainerRecords.ts"
import * as External from "./External.ts"
import { Orchestrator, type OrchestratorShape } from "./Orchestrator.ts"
import * as Process from "./Process.ts"
import * as Semaphore from "./Semaphore.ts"
import { SemaphoreClient } from "./SemaphoreClient.ts"
import { SemaphoreTasks } from "./SemaphoreTasks.ts"

/**
 * The gateway's Orchestrator: each target goes to the adapter its kind names (local process, Semaphore task,
 * container, or nothing to start). Also provides SemaphoreTasks and ContainerRecords, the records of Semaphore tasks
 * and containers that service status reports.
 */
export const layerWithoutDependencies = Layer.scoped(
  Orchestrator,
  Effect.gen(function* () {
    const process = yield* Process.make
    const semaphore = yield* Semaphore.make
    const container = yield* Container.make
    const byKind: Record<Target["kind"], OrchestratorShape> = {
      process,
      semaphore,
      container,
      external: External.make
    }
    return {
      start: (service, target) => byKind[target.kind].start(service, target),
      stop: (service, target) => byKind[target.kind].stop(service, target),
      adopt: (service, target) => byKind[target.kind].adopt(service, target),
      // Processes and containers are what an earlier run can leave behind.
      reclaim: (service) => Effect.zipWith(process.reclaim(service), container.reclaim(service), (a, b) => a || b)
    } satisfies OrchestratorShape
  })
).pipe(Layer.provideMerge(Layer.merge(SemaphoreTasks.layer, ContainerRecords.layer)))

/** With its stores, its Semaphore client (over undici) and the services' log rings: for tests and tools. */
export const layer = layerWithoutDependencies.pipe(
  Layer.provide(Layer.mergeAll(ProcessRecords.Default, ContainerRows.Default, SemaphoreClient.Default)),
  // The same ServiceLogs.Default the HttpGateway serves from: layers are shared by reference, so one ring per service.
  Layer.provide(ServiceLogs.Default)
)
