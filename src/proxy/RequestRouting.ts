import type { IncomingMessage } from "node:http"
import { Context, Effect, type Tracer } from "effect"
import { UnknownService } from "../domain/Errors.ts"
import type { ServicePath } from "./ForwardingRules.ts"
import type { ServiceUpstream } from "./UpstreamPools.ts"

/** A request as a routing strategy is asked about it (headers as node gives them; see Strategies.route). */
export interface RoutedRequest {
  readonly method: string
  /** Path and query below the endpoint that routes it (`/{rest}?query` below `/services/{id}`). */
  readonly path: string
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  /** Only where the endpoint reads the body anyway (the model endpoints); the proxy streams it. */
  readonly body?: string | Uint8Array | undefined
}

export interface RequestRoutingShape {
  /** Whether `strategy` names a loaded routing strategy now: one lookup, and nothing else for every other service. */
  readonly routes: (strategy: string) => boolean
  /** The service id it answers, or undefined (no decision, a failure or a timeout): the default rule. Never fails. */
  readonly route: (strategy: string, request: RoutedRequest) => Effect.Effect<string | undefined>
  /** It answered `to`, which is no configured service: said in the log (within a budget), with its name. */
  readonly unknown: (strategy: string, from: string, to: string) => Effect.Effect<void>
}

/** Which service a request is for, when a routing strategy may say. Without a strategy layer: the one asked for. */
export class RequestRouting extends Context.Reference<RequestRouting>()("hestia/RequestRouting", {
  defaultValue: (): RequestRoutingShape => ({
    routes: () => false,
    route: () => Effect.succeed(undefined),
    unknown: () => Effect.void
  })
}) {}

/** An exchange a routing strategy may move to another service (the proxy's and the websocket listener's). */
export interface Routable {
  readonly req: IncomingMessage
  service: ServiceUpstream
  serviceLabel: string
  readonly span: Tracer.Span | undefined
  readonly requestId: string
}

/**
 * A request for a service with a routing strategy: the strategy names the service it goes to (once: that service's
 * own strategy is not asked), which then takes it as if the client had asked for it — cold start, queue, gates,
 * metrics and activity its own. The path to send (the exchange moved to the new service), or `parsed` unchanged when
 * there is no decision (a failure, a timeout) or it names the same service; an id that is not configured is
 * 404 UnknownService, as a client's would be.
 */
export const routeExchange = (
  routing: RequestRoutingShape,
  upstreamOf: (serviceId: string) => ServiceUpstream | undefined,
  exchange: Routable,
  parsed: ServicePath,
  strategy: string
): Effect.Effect<ServicePath, UnknownService> =>
  Effect.gen(function* () {
    // Shown the path below the service (`/` at least); the proxy streams the body, so none is given.
    const to = yield* routing.route(strategy, {
      method: exchange.req.method ?? "GET",
      path: (parsed.path === "" ? "/" : parsed.path) + parsed.query,
      headers: exchange.req.headers
    })
    if (to === undefined || to === parsed.serviceId) return parsed
    const target = upstreamOf(to)
    if (target === undefined) {
      yield* routing.unknown(strategy, parsed.serviceId, to)
      return yield* new UnknownService({ serviceId: to })
    }
    exchange.service = target
    exchange.serviceLabel = target.serviceId
    exchange.span?.attribute("hestia.service.id", to)
    exchange.span?.attribute("hestia.routed.from", parsed.serviceId)
    yield* Effect.logDebug(`${parsed.serviceId}: routed to ${to} by ${strategy}`).pipe(
      Effect.annotateLogs({ event: "routed", serviceId: parsed.serviceId, to, strategy, requestId: exchange.requestId })
    )
    return { serviceId: to, path: parsed.path, query: parsed.query }
  })
