import { Effect, Layer } from "effect"
import { RequestRouting } from "../proxy/RequestRouting.ts"
import { makeLogBudget } from "./LogBudget.ts"
import { Strategies } from "./Strategies.ts"

/** One line per strategy per window for answers naming no service (a router that does so per request). */
const UNKNOWN_LOG_WINDOW_MS = 10_000

/**
 * Routing by plugin: a service (or the model endpoints, `model_strategy`) whose strategy is a loaded routing strategy
 * has each request offered to it first. Its answer is a service id or no decision (a failure, a timeout: logged and
 * counted by Strategies); which id it names is checked by the caller, as a client's would be.
 */
export const layerWithoutDependencies = Layer.effect(
  RequestRouting,
  Effect.gen(function* () {
    const strategies = yield* Strategies
    const budget = makeLogBudget({ perWindow: 1, windowMs: UNKNOWN_LOG_WINDOW_MS, maxKeys: 256 })
    return RequestRouting.of({
      routes: (name) => strategies.kindOf(name) === "routing",
      route: (name, request) => strategies.route(name, request),
      unknown: (strategy, from, to) =>
        Effect.gen(function* () {
          const { allowed, suppressed } = yield* budget.take(strategy)
          if (!allowed) return
          yield* Effect.logWarning(
            `strategy "${strategy}" routed a request for ${from} to "${to}", which is no configured service: 404 UnknownService`
          ).pipe(
            Effect.annotateLogs({
              event: "routed_unknown",
              strategy,
              serviceId: from,
              to,
              ...(suppressed > 0 ? { suppressed } : {})
            })
          )
        })
    })
  })
)
