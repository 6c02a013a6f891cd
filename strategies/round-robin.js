// @ts-check
// Round robin across a service's healthy instances: each call picks the next one after the last pick, skipping
// those marked unhealthy. No healthy instance is "no decision" (undefined): the default rule applies. Plain
// JavaScript, typed through JSDoc; the position per service lives in this module (a reload starts it over).

/** @type {Map<string, number>} service id → index of the last pick */
const last = new Map()

/** @type {import("../src/strategies/StrategyApi.ts").BalanceStrategy} */
const strategy = {
  name: "round-robin",
  kind: "balance",
  description: "the next healthy instance, in turn",
  balance: (service, instances) => {
    const start = (last.get(service.id) ?? -1) + 1
    for (let step = 0; step < instances.length; step++) {
      const index = (start + step) % instances.length
      const instance = instances[index]
      if (instance?.healthy) {
        last.set(service.id, index)
        return instance
      }
    }
    return undefined
  }
}

export default strategy
