import { Effect, Layer } from "effect"
import { LiveConfig } from "../config/LiveConfig.ts"
import { FALLBACK_MACHINE } from "../domain/Placement.ts"
import { StartPlacement } from "../registry/StartPlacement.ts"
import { Strategies } from "./Strategies.ts"

/**
 * Placement by plugin: a service whose `strategy:` names a placement strategy has its machines ordered by it at each
 * start. The strategy sees the configured candidates (never the fallback, which stays last) and answers their ids in
 * preference order; an id it leaves out is not tried, an unknown one is ignored. No answer (failure, timeout,
 * nothing) is the configured order, as if there were no strategy.
 */
export const layerWithoutDependencies = Layer.effect(
  StartPlacement,
  Effect.gen(function* () {
    const strategies = yield* Strategies
    const live = yield* LiveConfig
    return StartPlacement.of({
      order: (service, targets, context) =>
        Effect.gen(function* () {
          const name = service.strategy
          if (name === undefined || strategies.kindOf(name) !== "placement") return targets
          const machines = live.current().machines
          const candidates = targets.filter((target) => machines.has(target.machineId))
          if (candidates.length === 0) return targets
          const fallback = targets.filter((target) => target.machineId === FALLBACK_MACHINE)
          const ids = yield* strategies.place(
            name,
            service,
            candidates.map((target) => machines.get(target.machineId)!),
            context
          )
          if (ids === undefined) return targets
          const byId = new Map(candidates.map((target) => [target.machineId, target] as const))
          const chosen = [...new Set(ids)].flatMap((id) => byId.get(id) ?? [])
          return chosen.length === 0 ? targets : [...chosen, ...fallback]
        })
    })
  })
)
