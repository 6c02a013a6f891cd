import { Effect } from "effect"
import { SemaphoreUnreachable } from "../domain/Errors.ts"
import type { OrchestratorShape } from "../Orchestrator.ts"

// Placeholder until the Semaphore client lands (issue 3).
export const make: Effect.Effect<OrchestratorShape> = Effect.succeed({
  start: () =>
    Effect.fail(new SemaphoreUnreachable({ url: "", reason: "the Semaphore orchestrator is not built yet" })),
  stop: () => Effect.fail(new SemaphoreUnreachable({ url: "", reason: "the Semaphore orchestrator is not built yet" }))
})
