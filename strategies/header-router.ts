import type { RoutingStrategy } from "../src/strategies/StrategyApi.ts"

// Routes a request by its `X-Hestia-Service` header, else by the first segment of its path: a client that can set a
// header (or pick a path) chooses the service behind one endpoint configured with `strategy: header-router`.
// Anything else is "no decision" (undefined): the endpoint's default rule applies.

/** Path prefixes → service ids; edit to taste. A prefix ends with "/" so that "/chatty" is not "/chat". */
const PREFIXES: Readonly<Record<string, string>> = {
  "/chat/": "llama",
  "/code/": "coder"
}

/** Service ids as the config allows them. */
const SERVICE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]*$/

const strategy: RoutingStrategy = {
  name: "header-router",
  kind: "routing",
  description: "X-Hestia-Service header, else a path prefix",
  route: (request) => {
    // Header names arrive in lower case.
    const named = request.headers["x-hestia-service"]?.trim()
    if (named !== undefined && SERVICE_ID.test(named)) return named
    const path = request.path.split("?")[0]!
    for (const [prefix, serviceId] of Object.entries(PREFIXES)) {
      if (path.startsWith(prefix) || `${path}/` === prefix) return serviceId
    }
    return undefined
  }
}

export default strategy
