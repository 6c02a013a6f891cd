import { Effect } from "effect"
import type { OrchestratorShape } from "../Orchestrator.ts"

/** A service that runs on its own: nothing to start or stop, readiness alone decides. */
export const make: OrchestratorShape = {
  start: () => Effect.succeed({ exited: Effect.never, pid: undefined }),
  stop: () => Effect.void
}
