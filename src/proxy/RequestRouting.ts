import { Context, Effect } from "effect"

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
