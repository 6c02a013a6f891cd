import type { IncomingMessage } from "node:http"
import { Effect, FiberSet, Metric, MetricLabel } from "effect"
import { Pool } from "undici"
import type { ServiceConfig, Settings } from "../config/HestiaConfig.ts"
import { LiveConfig } from "../config/LiveConfig.ts"
import {
  NoHealthyInstance,
  ServiceBusy,
  UpstreamPoolFull,
  UpstreamTimeout,
  UpstreamUnavailable
} from "../domain/Errors.ts"
import type { GatewayError } from "../domain/HttpErrors.ts"
import type { Target } from "../domain/Placement.ts"
import { UNKNOWN_SERVICE } from "../observability/Metrics.ts"
import type { Lease } from "../registry/ServiceRegistry.ts"
import { ServiceRegistry } from "../registry/ServiceRegistry.ts"
import { ConcurrencyGate } from "./ConcurrencyGate.ts"
import { clientHeaders, type ServicePath, upstreamBase, upstreamPath } from "./ForwardingRules.ts"

/** Connections per upstream origin (undici keep-alive pool). */
export const POOL_CONNECTIONS = 256
/** A request that finds every connection of its origin busy waits this long for one, then gets 503 UpstreamPoolFull. */
export const POOL_WAIT_MS = 5_000
/** At most this many requests wait for a connection of one origin; more are refused at once. */
export const POOL_QUEUE = 1024
/** Over `max_concurrent_requests`, as many requests again may wait this long for a turn, then 503 ServiceBusy. */
export const SERVICE_WAIT_MS = 5_000

export const upstreamRejections = Metric.counter("hestia_upstream_rejections_total", {
  description:
    "Requests refused before reaching the upstream, by service and reason (pool_full: every connection busy; service_busy: max_concurrent_requests)."
})

/** One request as it is sent upstream; the origin is the pool's. */
export interface UpstreamRequest {
  readonly method: string
  readonly path: string
  /** Flat [name, value, ...]. */
  readonly headers: Array<string>
  readonly body: IncomingMessage | Buffer | string | null
  /** `websocket` for an upgrade: undici sends `Connection: upgrade` and calls the exchange's `onUpgrade` on a 101. */
  readonly upgrade?: string
  /** The path below the service: what a request refused by one of a service's instances is sent again with. */
  readonly servicePath?: ServicePath
}

/** What the exchange needs of a service, computed once. */
export interface ServiceUpstream {
  readonly serviceId: string
  /** `max_concurrent_requests`; undefined when there is no limit. */
  readonly gate: ConcurrencyGate | undefined
  readonly headersTimeout: number
  readonly bodyTimeout: number
  readonly bodyIdleTimeoutMs: number
  /** The hot upstream refused a connection: it is gone (a supervised fork into the registry). */
  readonly reportRefused: (target: Target) => void
  /** Its `strategy:` (a routing strategy is asked before each request; see RequestRouting). */
  readonly strategy: string | undefined
}

/** A placeholder for requests and handshakes answered before any service is known (bad path, unknown service, denied). */
export const NO_SERVICE: ServiceUpstream = {
  serviceId: UNKNOWN_SERVICE,
  gate: undefined,
  headersTimeout: 0,
  bodyTimeout: 0,
  bodyIdleTimeoutMs: 0,
  reportRefused: () => {},
  strategy: undefined
}

interface OriginPool {
  readonly pool: Pool
  readonly gate: ConcurrencyGate
}

/** The status counted for a client that left before any answer (nginx's convention). */
export const CLIENT_CLOSED = 499

/** How an exchange was ended from our side; the client leaving is not an error anyone is told about. */
export const CLIENT_GONE = Object.freeze({ _tag: "ClientGone" as const })
type AbortReason = GatewayError | typeof CLIENT_GONE

/**
 * What failing over to another instance answers: sent again (true), or not possible (false: the other origin's pool
 * is full).
 */
type Resend = (exchange: UpstreamExchange, target: Target) => boolean

/** Methods a request may be sent again with after a connection reset (RFC 9110 §9.2.2): it may have been received. */
const IDEMPOTENT: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"])

/** A connection refused or cut before any answer: the instance behind it is taken out. */
const REFUSALS: Readonly<Record<string, string>> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  EPIPE: "connection reset",
  UND_ERR_SOCKET: "connection closed before any answer"
}

const isAbortReason = (error: unknown): error is AbortReason =>
  typeof error === "object" && error !== null && typeof (error as { _tag?: unknown })._tag === "string"

// A DOMException (an AbortError) has a numeric code; only undici's string codes mean anything here.
const errorCode = (error: unknown) => {
  const code = (error as { code?: unknown }).code
  return typeof code === "string" ? code : undefined
}

/**
 * One upstream exchange, in one object per request: undici's dispatch handler (no AbortController, no stream
 * plumbing, no closures), the typed error for whatever goes wrong, and the bookkeeping (lease, gates) released once
 * when it ends. Subclasses say where the answer goes: the client's response (the proxy) or a bounded buffer (the
 * dispatcher).
 */
export abstract class UpstreamExchange {
  lease: Lease | undefined = undefined
  /** The gates this exchange holds a slot of, left when it ends. */
  serviceGate: ConcurrencyGate | undefined = undefined
  poolGate: ConcurrencyGate | undefined = undefined
  finished = false
  /** Handed to undici: from now on undici's callbacks end the exchange (and release it). */
  sent = false
  /** The response head arrived: a failure from now on is never a refusal to fail over from. */
  answered = false
  /** As last sent (kept for a failover). */
  request: UpstreamRequest | undefined = undefined
  /** Sent again once already, to another instance. */
  retried = false
  resend: Resend | undefined = undefined
  private abortUpstream: ((reason: Error) => void) | undefined = undefined
  private abortReason: AbortReason | undefined = undefined
  private resumeUpstream: (() => void) | undefined = undefined

  constructor(
    /** The service it is for; a routing strategy may name another before anything is sent. */
    public service: ServiceUpstream,
    readonly requestId: string
  ) {}

  /** Whether the response head gets this request's X-Request-ID (the proxy) or stays the upstream's (the dispatcher). */
  protected readonly setsRequestId: boolean = true

  /** The response head, hop-by-hop headers removed and X-Request-ID set; false stops the exchange (it was aborted). */
  protected abstract onResponseHead(status: number, headers: Array<string>): boolean
  /** A body chunk; false asks the upstream to wait until `resume()`. */
  protected abstract onResponseData(chunk: Buffer): boolean
  protected abstract onResponseEnd(): void
  /** The exchange failed (never called when the client left). */
  protected abstract onFailure(error: GatewayError): void
  /** The request is being handed to undici (its body starts to be read). */
  onSent(): void {}

  /** Ends the exchange from our side; `reason` reaches `onFailure` unless it is CLIENT_GONE. */
  abort(reason: AbortReason) {
    if (this.finished || this.abortReason !== undefined) return
    this.abortReason = reason
    // Not connected yet: undici hands over its abort function in onConnect, which uses the reason then.
    this.abortUpstream?.(reason as unknown as Error)
  }

  /** Lets a paused upstream body flow again (the client drained). */
  resume() {
    this.resumeUpstream?.()
  }

  /** Releases what the exchange holds, once; also for an exchange that never reached the upstream. */
  release() {
    if (this.finished) return
    this.finished = true
    this.lease?.release()
    this.serviceGate?.leave()
    this.poolGate?.leave()
  }

  // --- undici's dispatch handler -------------------------------------------------------------------------------

  onConnect(abort: (reason: Error) => void) {
    if (this.abortReason !== undefined) abort(this.abortReason as unknown as Error)
    else this.abortUpstream = abort
  }

  onHeaders(statusCode: number, rawHeaders: Array<Buffer>, resume: () => void) {
    this.answered = true
    this.resumeUpstream = resume
    return this.onResponseHead(statusCode, clientHeaders(rawHeaders, this.setsRequestId ? this.requestId : undefined))
  }

  onData(chunk: Buffer) {
    return this.onResponseData(chunk)
  }

  onComplete() {
    this.onResponseEnd()
    this.release()
  }

  onError(error: Error) {
    if (this.finished) return
    const refusal = this.lease?.refused === undefined || this.answered ? undefined : REFUSALS[errorCode(error) ?? ""]
    const failure =
      refusal !== undefined && this.abortReason === undefined ? this.failOver(error, refusal) : this.classify(error)
    if (failure === null) return
    if (failure !== undefined) this.onFailure(failure)
    this.release()
  }

  /**
   * One of the service's instances refused (or reset) the connection before answering: it is taken out, and a
   * request without a body is sent once to another healthy instance (after a reset, only an idempotent one: the
   * first may have received it). null: sent again; otherwise the failure to answer.
   */
  private failOver(error: Error, reason: string): GatewayError | null {
    const request = this.request
    const serviceId = this.service.serviceId
    const retry =
      !this.retried &&
      request !== undefined &&
      request.body === null &&
      request.servicePath !== undefined &&
      (errorCode(error) === "ECONNREFUSED" || IDEMPOTENT.has(request.method))
    const next = this.lease!.refused!(reason, retry)
    if (next === undefined) return new UpstreamUnavailable({ serviceId, reason })
    if (next instanceof NoHealthyInstance) return next
    this.retried = true
    this.abortUpstream = undefined
    this.resumeUpstream = undefined
    return this.resend?.(this, next) === true
      ? null
      : new UpstreamPoolFull({ serviceId, connections: POOL_CONNECTIONS, waitedMs: 0 })
  }

  private classify(error: unknown): GatewayError | undefined {
    const reason = this.abortReason
    if (reason !== undefined) return reason._tag === "ClientGone" ? undefined : reason
    if (isAbortReason(error)) return error._tag === "ClientGone" ? undefined : error
    const serviceId = this.service.serviceId
    switch (errorCode(error)) {
      case "ECONNREFUSED":
        if (this.lease !== undefined) this.service.reportRefused(this.lease.target)
        return new UpstreamUnavailable({ serviceId, reason: "connection refused" })
      case "UND_ERR_HEADERS_TIMEOUT":
        return new UpstreamTimeout({ serviceId, timeoutMs: this.service.headersTimeout })
      case "UND_ERR_BODY_TIMEOUT":
        return new UpstreamTimeout({ serviceId, timeoutMs: this.service.bodyTimeout })
      case "UND_ERR_CONNECT_TIMEOUT":
        return new UpstreamTimeout({ serviceId })
      case "UND_ERR_ABORTED":
        return undefined
      default:
        return new UpstreamUnavailable({
          serviceId,
          reason: errorCode(error) ?? (error instanceof Error ? error.message : String(error))
        })
    }
  }
}

/**
 * The upstream connection pools (one undici keep-alive Pool per origin, bounded by its gate) and the one way to send
 * an exchange through them, shared by the proxy's listener and the dispatcher.
 */
export class UpstreamPools extends Effect.Service<UpstreamPools>()("hestia/UpstreamPools", {
  scoped: Effect.gen(function* () {
    const live = yield* LiveConfig
    const registry = yield* ServiceRegistry
    const runFork = yield* FiberSet.makeRuntime<never>()

    const pools = new Map<string, OriginPool>()
    const originPool = (origin: string) => {
      let entry = pools.get(origin)
      if (entry === undefined) {
        // Timeouts are per request (the service's settings); these are only undici's defaults.
        const pool = new Pool(origin, { connections: POOL_CONNECTIONS, keepAliveTimeout: 30_000, bodyTimeout: 0 })
        entry = { pool, gate: new ConcurrencyGate(POOL_CONNECTIONS, POOL_QUEUE, POOL_WAIT_MS) }
        pools.set(origin, entry)
      }
      return entry
    }
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => Promise.allSettled(Array.from(pools.values(), ({ pool }) => pool.destroy())))
    )

    const services = new Map<string, ServiceUpstream>()
    const upstreamOf = (service: ServiceConfig, previous: ServiceUpstream | undefined): ServiceUpstream => ({
      serviceId: service.id,
      // A gate of the same size is kept across a reload: the requests it counts are still open.
      gate:
        service.maxConcurrentRequests === 0
          ? undefined
          : previous?.gate?.limit === service.maxConcurrentRequests
            ? previous.gate
            : new ConcurrencyGate(service.maxConcurrentRequests, service.maxConcurrentRequests, SERVICE_WAIT_MS),
      headersTimeout: service.upstreamTimeoutMs,
      bodyTimeout: service.streamIdleTimeoutMs,
      bodyIdleTimeoutMs: service.bodyIdleTimeoutMs,
      strategy: service.strategy,
      reportRefused: (target) => {
        runFork(registry.reportUnavailable(service.id, target, "connection refused"))
      }
    })
    const follow = (settings: Settings) =>
      Effect.sync(() => {
        for (const id of services.keys()) if (!settings.services.has(id)) services.delete(id)
        for (const service of settings.services.values()) {
          services.set(service.id, upstreamOf(service, services.get(service.id)))
        }
      })
    yield* follow(live.current())
    yield* live.follow({ apply: follow })

    /** To another instance of the service, after a refusal: a connection of its origin now, or not at all. */
    const resend: Resend = (exchange, target) => {
      const request = exchange.request!
      const base = upstreamBase(target)
      const origin = originPool(base.origin)
      if (!origin.gate.tryEnter()) return false
      exchange.poolGate?.leave()
      exchange.poolGate = origin.gate
      const below = request.servicePath!
      send(exchange, origin.pool, { ...request, path: upstreamPath(base, below.path, below.query) })
      return true
    }

    const send = (exchange: UpstreamExchange, pool: Pool, request: UpstreamRequest) => {
      exchange.request = request
      exchange.resend = resend
      exchange.sent = true
      exchange.onSent()
      try {
        pool.dispatch(
          {
            method: request.method as "GET",
            path: request.path,
            headers: request.headers,
            body: request.body,
            upgrade: request.upgrade ?? null,
            headersTimeout: exchange.service.headersTimeout,
            bodyTimeout: exchange.service.bodyTimeout
          },
          exchange as never
        )
      } catch (error) {
        exchange.onError(error as Error)
      }
    }

    /**
     * The hot path: sends at once when the service and the origin both have room, without a fiber; false when one is
     * full (nothing is held then: the caller waits with `start`).
     */
    const tryStart = (exchange: UpstreamExchange, request: UpstreamRequest): boolean => {
      const origin = originPool(upstreamBase(exchange.lease!.target).origin)
      const gate = exchange.service.gate
      if (gate !== undefined && !gate.tryEnter()) return false
      if (!origin.gate.tryEnter()) {
        gate?.leave()
        return false
      }
      exchange.serviceGate = gate
      exchange.poolGate = origin.gate
      send(exchange, origin.pool, request)
      return true
    }

    const rejected = (serviceId: string, reason: string) =>
      Metric.increment(
        Metric.taggedWithLabels(upstreamRejections, [
          MetricLabel.make("service", serviceId),
          MetricLabel.make("reason", reason)
        ])
      )

    /**
     * The slow path: waits (bounded) for the service's turn and a connection, then sends (inside the `leave` that
     * frees the connection, see ConcurrencyGate.enter). Once this succeeds the exchange is undici's.
     */
    const start = (exchange: UpstreamExchange, request: UpstreamRequest) =>
      Effect.gen(function* () {
        const serviceId = exchange.service.serviceId
        const origin = originPool(upstreamBase(exchange.lease!.target).origin)
        const gate = exchange.service.gate
        if (gate !== undefined && exchange.serviceGate === undefined) {
          yield* gate
            .enter(
              () => {
                exchange.serviceGate = gate
              },
              (waitedMs) => new ServiceBusy({ serviceId, limit: gate.limit, waitedMs })
            )
            .pipe(Effect.tapError(() => rejected(serviceId, "service_busy")))
        }
        yield* origin.gate
          .enter(
            () => {
              exchange.poolGate = origin.gate
              send(exchange, origin.pool, request)
            },
            (waitedMs) => new UpstreamPoolFull({ serviceId, connections: origin.gate.limit, waitedMs })
          )
          .pipe(Effect.tapError(() => rejected(serviceId, "pool_full")))
      })

    return {
      /** The service's upstream settings; undefined for an id that is not configured. */
      service: (serviceId: string) => services.get(serviceId),
      tryStart,
      start
    }
  }),
  dependencies: [ServiceRegistry.Default, LiveConfig.Default]
}) {}
