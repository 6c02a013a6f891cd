import type { PlacementStrategy } from "../src/strategies/StrategyApi.ts"

// Least recently used first: the machine a start picked longest ago (or never) comes first, so that starts spread
// over the candidates instead of piling onto the first one. Which machine each start picked comes from the context
// (`lastStartedOn`, kept by the gateway), so the order survives a reload of this file. Ties keep the given order.

const strategy: PlacementStrategy = {
  name: "lru-placement",
  kind: "placement",
  description: "the machine used least recently first",
  place: (_service, machines, context) =>
    machines
      .map((machine, index) => ({ id: machine.id, index, last: context.lastStartedOn[machine.id] ?? -Infinity }))
      .sort((a, b) => a.last - b.last || a.index - b.index)
      .map((machine) => machine.id)
}

export default strategy
