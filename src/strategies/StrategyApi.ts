// The plugin API: what a file in `strategies_dir` default-exports, and what Hestia hands it. Types only and no
// imports, so a strategy can `import type { RoutingStrategy } from "../src/strategies/StrategyApi.ts"` (or a copy of
// this file) without pulling anything of the gateway in. Every value a strategy receives or returns crosses a
// thread boundary (structured clone): plain data only, no functions, no class instances.

export type StrategyKind = "routing" | "placement" | "balance"

/** A value or a promise of it: every strategy function may be `async`. */
export type Awaitable<A> = A | PromiseLike<A>

/** A request to be routed. */
export interface RoutingRequest {
  readonly method: string
  /** The path (and query) the client asked for, below the endpoint that routes it. */
  readonly path: string
  /** Header names in lower case; a header sent several times is one value joined with ", ". */
  readonly headers: Readonly<Record<string, string>>
  /** The body as UTF-8 text, when the endpoint reads it (absent otherwise). */
  readonly body?: string
}

/** A service's settings, as a strategy sees them (no `command`, `env` or credentials). */
export interface StrategyService {
  readonly id: string
  /** How it is started: a local `process`, a `semaphore` task, or `external` (nothing is started). */
  readonly kind: "process" | "semaphore" | "container" | "external"
  readonly baseUrl: string
  readonly healthUrl: string | undefined
  /** Its own `machines:` list (empty: the routing rules decide). */
  readonly machines: ReadonlyArray<string>
  readonly fallbackUrl: string | undefined
  /** The `strategy:` it names. */
  readonly strategy: string | undefined
  readonly idleTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly queueSize: number
}

/** A machine a start may pick, from `machines:`. */
export interface StrategyMachine {
  readonly id: string
  readonly host: string
  readonly labels: Readonly<Record<string, string | number | boolean>>
}

/** What a placement may know besides the service and the candidates. */
export interface PlacementContext {
  /** Epoch milliseconds, from the gateway's clock. */
  readonly now: number
  /** The services hot right now and the machine each runs on (undefined: where its URLs point). */
  readonly hot: ReadonlyArray<{ readonly serviceId: string; readonly machineId: string | undefined }>
  /** Machine id → epoch ms of the last start (of any service) that picked it; a machine never picked is absent. */
  readonly lastStartedOn: Readonly<Record<string, number>>
}

/** One of a service's `instances:`. */
export interface BalanceInstance {
  readonly url: string
  /** False while the instance is taken out (its connection was refused, its health URL not yet answering again). */
  readonly healthy: boolean
  /** Requests being forwarded to it right now. */
  readonly inFlight: number
  /** The keys of its `instances:` entry besides url and health_url (`region: us-east`). */
  readonly labels: Readonly<Record<string, string | number | boolean>>
}

interface StrategyBase {
  /** Unique across the folder; a service names it in `strategy:`. Letters, digits, `.`, `_`, `-`; at most 64. */
  readonly name: string
  readonly description?: string
}

/** Picks the service for a request: its id, or undefined for "no decision" (the default rule). */
export interface RoutingStrategy extends StrategyBase {
  readonly kind: "routing"
  readonly route: (request: RoutingRequest) => Awaitable<string | undefined>
}

/**
 * Orders the machines a start tries: ids of `machines`, in preference order (a subset is fine, each id once), or
 * undefined for the default rule.
 */
export interface PlacementStrategy extends StrategyBase {
  readonly kind: "placement"
  readonly place: (
    service: StrategyService,
    machines: ReadonlyArray<StrategyMachine>,
    context: PlacementContext
  ) => Awaitable<ReadonlyArray<string> | undefined>
}

/** Picks the instance that gets a request: one of `instances` (matched by `url`), or undefined for the default rule. */
export interface BalanceStrategy extends StrategyBase {
  readonly kind: "balance"
  readonly balance: (
    service: StrategyService,
    instances: ReadonlyArray<BalanceInstance>
  ) => Awaitable<BalanceInstance | undefined>
}

export type Strategy = RoutingStrategy | PlacementStrategy | BalanceStrategy
