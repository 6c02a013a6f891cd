import { Effect, Layer, Option } from "effect"
import { type Instance, Orchestrator, type OrchestratorShape } from "./Orchestrator.ts"

/** What runs on its own: nothing to watch or to stop. */
export const unmanaged: Instance = { exited: Effect.never, pid: undefined }

/** A service that runs on its own: nothing to start or stop, readiness alone decides. */
export const make: OrchestratorShape = {
  start: () => Effect.succeed(unmanaged),
  stop: () => Effect.void,
  adopt: () => Effect.succeed(Option.some(unmanaged)),
  reclaim: () => Effect.succeed(false)
}

export const layer = Layer.succeed(Orchestrator, make)
