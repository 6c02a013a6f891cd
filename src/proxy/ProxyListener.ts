import type { IncomingMessage, ServerResponse } from "node:http"
import { Effect, type Fiber, FiberId, FiberSet, type Tracer } from "effect"
import { Auth } from "../auth/Auth.ts"
import { BadRequest, RequestBodyTimeout, UnknownService } from "../domain/Errors.ts"
import { type ErrorResponse, type GatewayError, toErrorResponse } from "../domain/HttpErrors.ts"
import { isBrowserNavigation, WaitingPage } from "../http/WaitingPage.ts"
import { requestRecorder, UNKNOWN_SERVICE } from "../observability/Metrics.ts"
import * as Telemetry from "../observability/Telemetry.ts"
import { ServiceRegistry } from "../registry/ServiceRegistry.ts"
import {
  parseServicePath,
  requestIdOf,
  type ServicePath,
  upstreamBase,
  upstreamHeaders,
  upstreamPath,
  withContentLength
} from "./ForwardingRules.ts"
import { RequestRouting, routeExchange } from "./RequestRouting.ts"
import { runSlowPath } from "./SlowPath.ts"
import {
  CLIENT_CLOSED,
  CLIENT_GONE,
  NO_SERVICE,
  type ServiceUpstream,
  UpstreamExchange,
  UpstreamPools,
  type UpstreamRequest
} from "./UpstreamPools.ts"

/** How a typed error reads in the client's API: the gateway's own JSON, or a model API's (ModelApiErrors). */
export type RenderError = (error: GatewayError) => ErrorResponse

/** A typed error as the client's answer (or, once the head is out, a cut connection). Every answer has X-Request-ID. */
export const writeError = (
  res: ServerResponse,
  error: GatewayError,
  requestId: string,
  render: RenderError = toErrorResponse
) => {
  if (res.headersSent) {
    res.destroy()
    return
  }
  if (res.destroyed) return
  const { status, headers, body } = render(error)
  const payload = JSON.stringify(body)
  res.writeHead(status, {
    ...headers,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(payload),
    "x-request-id": requestId
  })
  res.end(payload)
}

const EXCHANGE = Symbol.for("hestia/ProxyExchange")
type WithExchange = { [EXCHANGE]?: ProxyExchange }

/** Listeners shared by every request (no closure per request): each finds its exchange on the emitter. */
function onResponseClose(this: ServerResponse) {
  ;(this as WithExchange)[EXCHANGE]?.closed()
}
function onResponseDrain(this: ServerResponse) {
  ;(this as WithExchange)[EXCHANGE]?.resume()
}
// The upload's idle timer is the socket's timeout, listened to on the response: node tells the response even once
// the request is complete (and a timeout nobody listens to would destroy the socket).
function onUploadIdle(this: ServerResponse) {
  const exchange = (this as WithExchange)[EXCHANGE]
  if (exchange === undefined) return
  if (exchange.req.complete) exchange.uploadDone()
  else exchange.bodyIdle()
}
function onUploadEnd(this: IncomingMessage) {
  ;(this as WithExchange)[EXCHANGE]?.uploadDone()
}

interface ListenerContext {
  readonly observe: (
    serviceId: string,
    status: number,
    startedAt: bigint,
    span: Tracer.Span | undefined,
    failure: GatewayError | undefined
  ) => void
}

/**
 * One proxied request from arrival to the end of its response: the state the close listener needs (metrics, span,
 * the client leaving), and the upstream exchange writing straight into the client's response.
 */
class ProxyExchange extends UpstreamExchange {
  failure: GatewayError | undefined = undefined
  /** The fiber of the slow path (a cold service, a full gate), interrupted when the client leaves. */
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined = undefined

  constructor(
    service: ServiceUpstream,
    requestId: string,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    /** Its service in the metrics (the one a routing strategy chose, once it has). */
    public serviceLabel: string,
    readonly startedAt: bigint,
    readonly span: Tracer.Span | undefined,
    readonly context: ListenerContext,
    /** The client's upload streams through (not read yet); false for no body, or one read already (`body`). */
    readonly hasBody: boolean,
    /** A body read already (the model endpoints read it to find the model), sent as it is. */
    readonly body: Buffer | undefined = undefined,
    readonly render: RenderError = toErrorResponse
  ) {
    super(service, requestId)
  }

  /** The upload is read from now on (not while the request waits for a start): a silent one is cut. */
  override onSent() {
    if (!this.hasBody || this.service.bodyIdleTimeoutMs === 0 || this.req.complete) return
    ;(this.req as WithExchange)[EXCHANGE] = this
    this.res.setTimeout(this.service.bodyIdleTimeoutMs, onUploadIdle)
    this.req.once("end", onUploadEnd)
  }

  /** The whole upload arrived: its idle timer stops (the socket's timeout is node's again). */
  uploadDone() {
    this.res.removeListener("timeout", onUploadIdle)
    this.req.removeListener("end", onUploadEnd)
    this.req.socket?.setTimeout(0)
  }

  protected onResponseHead(status: number, headers: Array<string>) {
    this.res.writeHead(status, headers)
    return true
  }

  protected onResponseData(chunk: Buffer) {
    if (this.res.write(chunk)) return true
    this.res.once("drain", onResponseDrain)
    return false
  }

  protected onResponseEnd() {
    this.res.end()
  }

  protected onFailure(error: GatewayError) {
    this.fail(error)
  }

  fail(error: GatewayError) {
    this.failure = error
    writeError(this.res, error, this.requestId, this.render)
  }

  /** An upload that went silent: the upstream request is aborted and the client told (408, connection closed). */
  bodyIdle() {
    this.uploadDone()
    this.abort(new RequestBodyTimeout({ serviceId: this.service.serviceId, idleMs: this.service.bodyIdleTimeoutMs }))
  }

  /** The response is over, or the client gone: count it, end the span, stop whatever still runs for it. */
  closed() {
    if (!this.res.writableFinished) {
      this.fiber?.unsafeInterruptAsFork(FiberId.none)
      this.abort(CLIENT_GONE)
    }
    const status = this.res.headersSent ? this.res.statusCode : CLIENT_CLOSED
    this.context.observe(this.serviceLabel, status, this.startedAt, this.span, this.failure)
  }
}

/** What `forward` is given by the listener that chose the service. */
export interface ForwardOptions {
  /** When the request arrived (Clock nanos): its duration and span start there. */
  readonly startedAt: bigint
  readonly requestId: string
  /** The request body, read already; sent as it is, with its Content-Length. */
  readonly body: Buffer
  readonly render: RenderError
}

/**
 * The node:http listener for `/services/...`. A hot service goes straight to its upstream pool: no Effect router, no
 * fiber, one object and one close listener per request. A service that is not hot (or whose gate is full) takes the
 * slow path: a fiber, supervised in this service's scope, that waits in the registry (and the gates), then forwards.
 */
export class ProxyListener extends Effect.Service<ProxyListener>()("hestia/ProxyListener", {
  scoped: Effect.gen(function* () {
    const registry = yield* ServiceRegistry
    const auth = yield* Auth
    const pools = yield* UpstreamPools
    const waitingPages = yield* WaitingPage
    const routing = yield* RequestRouting
    const runFork = yield* FiberSet.makeRuntime<never>()
    const clock = yield* Effect.clock
    const recorder = requestRecorder(registry.has)
    // Off (no OTLP endpoint): no span and no traceparent per request; the check below is the whole cost.
    const tracing = yield* Telemetry.TracingEnabled
    const tracer = yield* Effect.tracer
    // Gateway credentials to strip before forwarding; kept up to date by Auth (empty while auth is off).
    const strip = auth.strip

    const context: ListenerContext = {
      observe: (serviceId, status, startedAt, span, failure) => {
        const now = clock.unsafeCurrentTimeNanos()
        recorder.observe(serviceId, status, Number(now - startedAt) / 1e9)
        if (span !== undefined) Telemetry.endRequestSpan(span, status, now, failure)
      }
    }

    const requestSpan = (req: IncomingMessage, serviceId: string, startedAt: bigint) =>
      Telemetry.startRequestSpan(tracer, req.headers, startedAt, {
        "hestia.service.id": serviceId,
        "http.request.method": req.method ?? "GET"
      })

    const upstreamRequest = (exchange: ProxyExchange, parsed: ServicePath): UpstreamRequest => {
      const req = exchange.req
      const forwarded = upstreamHeaders(req.rawHeaders, strip, {
        clientIp: req.socket.remoteAddress,
        proto: "http",
        host: req.headers.host,
        requestId: exchange.requestId
      })
      const headers = exchange.body === undefined ? forwarded : withContentLength(forwarded, exchange.body.length)
      return {
        method: req.method ?? "GET",
        path: upstreamPath(upstreamBase(exchange.lease!.target), parsed.path, parsed.query),
        // With tracing on, the upstream sees our span as its parent (a client's traceparent is replaced).
        headers: exchange.span === undefined ? headers : Telemetry.withTraceparent(headers, exchange.span),
        body: exchange.body ?? (exchange.hasBody ? req : null),
        servicePath: parsed
      }
    }

    /** Wait for what is not there yet (a start, a turn, a connection), then forward. */
    const waitAndForward = (exchange: ProxyExchange, parsed: ServicePath) =>
      Effect.gen(function* () {
        if (exchange.lease === undefined) {
          const acquire = registry.acquire(parsed.serviceId, exchange.requestId)
          exchange.lease = yield* exchange.span === undefined ? acquire : Effect.withParentSpan(acquire, exchange.span)
        }
        yield* pools.start(exchange, upstreamRequest(exchange, parsed))
      })

    /**
     * A browser's navigation to a service with a waiting page that is not hot: the start is asked for, and the page
     * answers at once (it reloads into the service when hot). A service that turned hot meanwhile (or is hot but
     * draining) is waited for and forwarded as usual.
     */
    const waitingPath = (exchange: ProxyExchange, parsed: ServicePath, page: Buffer) =>
      Effect.gen(function* () {
        const start = registry.start(parsed.serviceId, exchange.requestId)
        const before = yield* exchange.span === undefined ? start : Effect.withParentSpan(start, exchange.span)
        if (before === "hot") return yield* waitAndForward(exchange, parsed)
        const res = exchange.res
        if (res.destroyed) return
        res.writeHead(200, {
          ...waitingPages.headers(),
          "content-length": page.length,
          "x-request-id": exchange.requestId
        })
        res.end(page)
        exchange.release()
        yield* Effect.logInfo(`${parsed.serviceId}: waiting page served (${before})`).pipe(
          Effect.annotateLogs({
            event: "waiting_page",
            serviceId: parsed.serviceId,
            requestId: exchange.requestId,
            state: before
          })
        )
      })

    /** A service with a routing strategy: the service it names takes the request (see routeExchange). */
    const routedPath = (exchange: ProxyExchange, parsed: ServicePath, strategy: string) =>
      Effect.map(routeExchange(routing, pools.service, exchange, parsed, strategy), (path) => send(exchange, path))

    const slowPath = (exchange: ProxyExchange, work: Effect.Effect<void, GatewayError>) =>
      runSlowPath(runFork, exchange, work)

    const handle = (req: IncomingMessage, res: ServerResponse) => {
      const startedAt = clock.unsafeCurrentTimeNanos()
      const url = req.url ?? "/"
      const parsed = parseServicePath(url)
      const service = parsed instanceof BadRequest ? undefined : pools.service(parsed.serviceId)
      const label = service === undefined ? UNKNOWN_SERVICE : service.serviceId
      const span = tracing ? requestSpan(req, label, startedAt) : undefined
      const requestId = requestIdOf(req.headers)
      span?.attribute("hestia.request.id", requestId)
      const hasBody = req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined
      const exchange = new ProxyExchange(
        service ?? NO_SERVICE,
        requestId,
        req,
        res,
        label,
        startedAt,
        span,
        context,
        hasBody
      )
      ;(res as WithExchange)[EXCHANGE] = exchange
      res.on("close", onResponseClose)
      // Before anything else: an unauthenticated client learns nothing, not even which services exist.
      const denied = auth.check({
        method: req.method ?? "GET",
        url,
        headers: req.headers,
        remoteAddress: req.socket.remoteAddress,
        serviceId: service?.serviceId
      })
      if (denied !== undefined) return exchange.fail(denied)
      if (parsed instanceof BadRequest) return exchange.fail(parsed)
      if (service === undefined) return exchange.fail(new UnknownService({ serviceId: parsed.serviceId }))
      // The one question every request pays for routing: whether its service's strategy routes.
      if (service.strategy !== undefined && routing.routes(service.strategy)) {
        return slowPath(exchange, routedPath(exchange, parsed, service.strategy))
      }
      send(exchange, parsed)
    }

    /** Hot and room at the gates: straight to the upstream; a browser to a cold service, its waiting page; else wait. */
    const send = (exchange: ProxyExchange, parsed: ServicePath) => {
      exchange.lease = registry.tryAcquireHot(parsed.serviceId)
      if (exchange.lease !== undefined && pools.tryStart(exchange, upstreamRequest(exchange, parsed))) return
      if (exchange.lease === undefined) {
        const page = waitingPages.page(parsed.serviceId)
        if (page !== undefined && isBrowserNavigation(exchange.req.method, exchange.req.headers)) {
          return slowPath(exchange, waitingPath(exchange, parsed, page))
        }
      }
      slowPath(exchange, waitAndForward(exchange, parsed))
    }

    /**
     * A request whose service another listener chose (the model endpoints, by the body's model; auth checked there):
     * forwarded as every proxied request is, with the body it read, its errors rendered in its client's format.
     */
    const forward = (req: IncomingMessage, res: ServerResponse, to: ServicePath, options: ForwardOptions) => {
      const service = pools.service(to.serviceId)
      const label = service === undefined ? UNKNOWN_SERVICE : service.serviceId
      const span = tracing ? requestSpan(req, label, options.startedAt) : undefined
      span?.attribute("hestia.request.id", options.requestId)
      const exchange = new ProxyExchange(
        service ?? NO_SERVICE,
        options.requestId,
        req,
        res,
        label,
        options.startedAt,
        span,
        context,
        false,
        options.body,
        options.render
      )
      ;(res as WithExchange)[EXCHANGE] = exchange
      res.on("close", onResponseClose)
      if (service === undefined) return exchange.fail(new UnknownService({ serviceId: to.serviceId }))
      send(exchange, to)
    }

    return { handle, forward }
  }),
  dependencies: [ServiceRegistry.Default, Auth.Default, UpstreamPools.Default, WaitingPage.Default]
}) {}
