import { Effect, Layer } from "effect"
import { InstanceBalance } from "../registry/InstanceBalance.ts"
import { Strategies } from "./Strategies.ts"

/**
 * Balancing by plugin: a service with `instances:` whose `strategy:` is a loaded balance strategy has each request's
 * instance picked by it (shown `{url, healthy, inFlight, labels}` of each). No decision, a failure or a timeout: the
 * default rule (InstanceSet.pick).
 */
export const layerWithoutDependencies = Layer.effect(
  InstanceBalance,
  Effect.map(Strategies, (strategies) =>
    InstanceBalance.of({
      balances: (service) => service.strategy !== undefined && strategies.kindOf(service.strategy) === "balance",
      pick: (service, instances) => strategies.balance(service.strategy!, service, instances)
    })
  )
)
