import { type IncomingMessage, ServerResponse } from "node:http"
import type { Socket } from "node:net"
import type { Duplex } from "node:stream"
import { Effect, type Fiber, FiberId, FiberSet, MetricLabel, type Tracer } from "effect"
import { Auth } from "../auth/Auth.ts"
import { HestiaConfig } from "../config/HestiaConfig.ts"
import { BadRequest, GatewayStopping, UnknownService } from "../domain/Errors.ts"
import type { GatewayError } from "../domain/HttpErrors.ts"
import { requestRecorder, UNKNOWN_SERVICE, websocketsOpen } from "../observability/Metrics.ts"
import * as Telemetry from "../observability/Telemetry.ts"
import { ServiceRegistry } from "../registry/ServiceRegistry.ts"
import { ActivityLog } from "../store/ActivityLog.ts"
import {
  clientHeaders,
  hasDuplicateHost,
  isServicesUrl,
  parseServicePath,
  requestIdOf,
  type ServicePath,
  upstreamBase,
  upstreamHeaders,
  upstreamPath
} from "./ForwardingRules.ts"
import { writeError } from "./ProxyListener.ts"
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
import { WebSocketTunnel } from "./WebSocketTunnel.ts"

/** A websocket opening handshake (RFC 6455 §4.1): a GET asking to upgrade to `websocket`. */
export const isWebSocketUpgrade = (req: IncomingMessage) =>
  req.method === "GET" && typeof req.headers.upgrade === "string" && req.headers.upgrade.toLowerCase() === "websocket"

/** A client should send nothing before its 101; it may send this much, held for the upstream, before it is cut. */
export const EARLY_BYTES_LIMIT = 64 * 1024

const hasBody = (req: IncomingMessage) =>
  (req.headers["content-length"] !== undefined && req.headers["content-length"] !== "0") ||
  req.headers["transfer-encoding"] !== undefined

/**
 * An HTTP answer written on an upgrade request's socket (node hands the socket over without a response): the
 * connection ends with it.
 */
export const responseOn = (req: IncomingMessage, socket: Socket): ServerResponse => {
  const res = new ServerResponse(req)
  res.shouldKeepAlive = false
  res.assignSocket(socket)
  res.once("finish", () => {
    res.detachSocket(socket)
    socket.end()
  })
  return res
}

/** The 101 for the client: the upstream's own, hop-by-hop headers but Connection and Upgrade removed, X-Request-ID set. */
const switchingProtocols = (rawHeaders: ReadonlyArray<Buffer | string>, requestId: string) => {
  let upgrade = "websocket"
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (String(rawHeaders[i]).toLowerCase() === "upgrade") upgrade = String(rawHeaders[i + 1])
  }
  const headers = clientHeaders(rawHeaders, requestId)
  let head = `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${upgrade}\r\n`
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`
  return `${head}\r\n`
}

interface ProxyContext {
  readonly observe: (exchange: UpgradeExchange, status: number) => void
  readonly opened: (exchange: UpgradeExchange) => void
  readonly closed: (exchange: UpgradeExchange) => void
}

/**
 * One websocket from its handshake to its close: before the upgrade an exchange like any proxied request (its answer,
 * when there is no websocket, written on the client's socket); after it, the tunnel between the two sockets. The
 * lease is held until the tunnel closes (the service is not idle while a websocket is open); the gates only for the
 * handshake (a websocket open for hours must not take a `max_concurrent_requests` slot or a pool connection).
 */
class UpgradeExchange extends UpstreamExchange {
  failure: GatewayError | undefined = undefined
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined = undefined
  tunnel: WebSocketTunnel | undefined = undefined
  openedAt = 0n
  private early: Array<Buffer> = []
  private earlyBytes = 0

  constructor(
    service: ServiceUpstream,
    requestId: string,
    readonly req: IncomingMessage,
    readonly socket: Socket,
    readonly res: ServerResponse,
    private readonly head: Buffer,
    /** Its service in the metrics (the one a routing strategy chose, once it has). */
    public serviceLabel: string,
    readonly startedAt: bigint,
    readonly span: Tracer.Span | undefined,
    private readonly context: ProxyContext
  ) {
    super(service, requestId)
    res.once("close", this.onResponseClose)
    // Read while the handshake waits (a cold start): a client that leaves is seen, what it sends early is kept.
    socket.on("data", this.onEarlyData)
    socket.once("end", this.onEarlyEnd)
  }

  private readonly onEarlyData = (chunk: Buffer) => {
    this.earlyBytes += chunk.length
    if (this.earlyBytes > EARLY_BYTES_LIMIT) this.socket.destroy()
    else this.early.push(chunk)
  }

  private readonly onEarlyEnd = () => this.socket.destroy()

  private readonly onResponseDrain = () => this.resume()

  // --- the upstream answered without upgrading: its answer is the client's --------------------------------------

  protected onResponseHead(status: number, headers: Array<string>) {
    this.res.writeHead(status, headers)
    return true
  }

  protected onResponseData(chunk: Buffer) {
    if (this.res.write(chunk)) return true
    this.res.once("drain", this.onResponseDrain)
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
    writeError(this.res, error, this.requestId)
  }

  // --- the upgrade ------------------------------------------------------------------------------------------------

  /** undici's callback for a 101: the upstream's socket is ours from here on. */
  onUpgrade(_status: number, rawHeaders: Array<Buffer>, upstream: Socket) {
    this.socket.removeListener("data", this.onEarlyData)
    this.socket.removeListener("end", this.onEarlyEnd)
    this.res.removeListener("close", this.onResponseClose)
    if (this.socket.destroyed) {
      upstream.destroy()
      this.context.observe(this, CLIENT_CLOSED)
      this.release()
      return
    }
    this.serviceGate?.leave()
    this.serviceGate = undefined
    this.poolGate?.leave()
    this.poolGate = undefined
    this.res.detachSocket(this.socket)
    this.socket.pause()
    this.socket.write(switchingProtocols(rawHeaders, this.requestId))
    this.context.observe(this, 101)
    this.tunnel = new WebSocketTunnel(this.socket, upstream, this.onTunnelClosed)
    this.context.opened(this)
    this.tunnel.start(Buffer.concat([this.head, ...this.early]))
    this.early = []
  }

  private readonly onTunnelClosed = () => {
    this.context.closed(this)
    this.release()
  }

  /** Before any upgrade: the answer is out, or the client left. */
  private readonly onResponseClose = () => {
    if (!this.res.writableFinished) {
      this.fiber?.unsafeInterruptAsFork(FiberId.none)
      this.abort(CLIENT_GONE)
    }
    this.context.observe(this, this.res.headersSent ? this.res.statusCode : CLIENT_CLOSED)
  }
}

/**
 * Websockets through `/services/{id}/...`: the server's `upgrade` event, on the same path as every proxied request —
 * auth, path checks, the lease (a cold service starts first), X-Forwarded-* and X-Request-ID, the upstream's answer
 * within `upstream_timeout_seconds` — then a tunnel of bytes between the two sockets. Every other upgrade request
 * (h2c, a websocket to a control route) is answered as the plain request it also is.
 */
export class WebSocketProxy extends Effect.Service<WebSocketProxy>()("hestia/WebSocketProxy", {
  scoped: Effect.gen(function* () {
    const config = yield* HestiaConfig
    const registry = yield* ServiceRegistry
    const auth = yield* Auth
    const pools = yield* UpstreamPools
    const activity = yield* ActivityLog
    const routing = yield* RequestRouting
    const runFork = yield* FiberSet.makeRuntime<never>()
    const clock = yield* Effect.clock
    const recorder = requestRecorder(registry.has)
    const tracing = yield* Telemetry.TracingEnabled
    const tracer = yield* Effect.tracer
    const strip = auth.strip

    const open = new Set<UpgradeExchange>()
    const perService = new Map<string, number>()
    const gaugeLabels = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
    const setGauge = (serviceId: string, count: number) => {
      let labels = gaugeLabels.get(serviceId)
      if (labels === undefined) {
        labels = [MetricLabel.make("service", serviceId)]
        gaugeLabels.set(serviceId, labels)
      }
      websocketsOpen.unsafeUpdate(count, labels)
    }
    // Every service has its series from the start, at 0.
    for (const id of config.services.keys()) setGauge(id, 0)
    let draining = false

    const millis = (since: bigint) => Number((clock.unsafeCurrentTimeNanos() - since) / 1_000_000n)

    const context: ProxyContext = {
      observe: (exchange, status) => {
        const now = clock.unsafeCurrentTimeNanos()
        recorder.observe(exchange.serviceLabel, status, Number(now - exchange.startedAt) / 1e9)
        if (exchange.span !== undefined) Telemetry.endRequestSpan(exchange.span, status, now, exchange.failure)
      },
      opened: (exchange) => {
        open.add(exchange)
        const serviceId = exchange.service.serviceId
        const count = (perService.get(serviceId) ?? 0) + 1
        perService.set(serviceId, count)
        setGauge(serviceId, count)
        exchange.openedAt = clock.unsafeCurrentTimeNanos()
        const path = (exchange.req.url ?? "/").split("?")[0]
        runFork(
          Effect.logInfo(`${serviceId}: websocket opened`).pipe(
            Effect.annotateLogs({ event: "websocket_opened", serviceId, requestId: exchange.requestId, path }),
            Effect.zipRight(
              activity.append({
                ts: clock.unsafeCurrentTimeMillis(),
                type: "websocket_opened",
                serviceId,
                requestId: exchange.requestId,
                detail: { path }
              })
            )
          )
        )
        // Opened while the gateway began to stop: it closes at once like the others.
        if (draining) exchange.tunnel?.goAway()
      },
      closed: (exchange) => {
        open.delete(exchange)
        const serviceId = exchange.service.serviceId
        const count = (perService.get(serviceId) ?? 1) - 1
        perService.set(serviceId, count)
        setGauge(serviceId, count)
        const tunnel = exchange.tunnel!
        const detail = {
          durationMs: millis(exchange.openedAt),
          bytesToUpstream: tunnel.bytesToUpstream,
          bytesToClient: tunnel.bytesToClient,
          closedBy: tunnel.closedBy ?? "client"
        }
        runFork(
          Effect.logInfo(`${serviceId}: websocket closed (${detail.closedBy}) after ${detail.durationMs} ms`).pipe(
            Effect.annotateLogs({ event: "websocket_closed", serviceId, requestId: exchange.requestId, ...detail }),
            Effect.zipRight(
              activity.append({
                ts: clock.unsafeCurrentTimeMillis(),
                type: "websocket_closed",
                serviceId,
                requestId: exchange.requestId,
                detail
              })
            )
          )
        )
      }
    }

    const upstreamRequest = (exchange: UpgradeExchange, parsed: ServicePath): UpstreamRequest => {
      const req = exchange.req
      const headers = upstreamHeaders(req.rawHeaders, strip, {
        clientIp: req.socket.remoteAddress,
        proto: "http",
        host: req.headers.host,
        requestId: exchange.requestId
      })
      return {
        method: "GET",
        path: upstreamPath(upstreamBase(exchange.lease!.target), parsed.path, parsed.query),
        headers: exchange.span === undefined ? headers : Telemetry.withTraceparent(headers, exchange.span),
        body: null,
        upgrade: "websocket",
        servicePath: parsed
      }
    }

    /** A cold service (or a full gate): wait for the start like any request, then forward the handshake. */
    const waitAndForward = (exchange: UpgradeExchange, parsed: ServicePath) =>
      Effect.gen(function* () {
        if (exchange.lease === undefined) {
          const acquire = registry.acquire(parsed.serviceId, exchange.requestId)
          exchange.lease = yield* exchange.span === undefined ? acquire : Effect.withParentSpan(acquire, exchange.span)
        }
        yield* pools.start(exchange, upstreamRequest(exchange, parsed))
      })

    /** Hot and room at the gates: the handshake goes at once; else it waits on a fiber. */
    const send = (exchange: UpgradeExchange, parsed: ServicePath) => {
      exchange.lease = registry.tryAcquireHot(parsed.serviceId)
      if (exchange.lease !== undefined && pools.tryStart(exchange, upstreamRequest(exchange, parsed))) return
      slowPath(exchange, waitAndForward(exchange, parsed))
    }

    /** A handshake to a service with a routing strategy: routed as any request (see routeExchange). */
    const routedPath = (exchange: UpgradeExchange, parsed: ServicePath, strategy: string) =>
      Effect.map(routeExchange(routing, pools.service, exchange, parsed, strategy), (path) => send(exchange, path))

    const slowPath = (exchange: UpgradeExchange, work: Effect.Effect<void, GatewayError>) =>
      runSlowPath(runFork, exchange, work)

    const handle = (
      req: IncomingMessage,
      duplex: Duplex,
      head: Buffer,
      fallback: (req: IncomingMessage, res: ServerResponse) => void
    ) => {
      const socket = duplex as Socket
      const url = req.url ?? "/"
      if (!isServicesUrl(url) || !isWebSocketUpgrade(req)) {
        const res = responseOn(req, socket)
        // node does not read the body of an upgrade request into `req`: one with a body cannot be answered as plain.
        if (hasBody(req)) {
          return writeError(
            res,
            new BadRequest({ reason: "an Upgrade request with a body is not supported; send it without Upgrade" }),
            requestIdOf(req.headers)
          )
        }
        return fallback(req, res)
      }
      const startedAt = clock.unsafeCurrentTimeNanos()
      const parsed = parseServicePath(url)
      const service = parsed instanceof BadRequest ? undefined : pools.service(parsed.serviceId)
      const label = service === undefined ? UNKNOWN_SERVICE : service.serviceId
      const span = tracing
        ? Telemetry.startRequestSpan(tracer, req.headers, startedAt, {
            "hestia.service.id": label,
            "http.request.method": "GET",
            "hestia.websocket": true
          })
        : undefined
      const requestId = requestIdOf(req.headers)
      span?.attribute("hestia.request.id", requestId)
      const exchange = new UpgradeExchange(
        service ?? NO_SERVICE,
        requestId,
        req,
        socket,
        responseOn(req, socket),
        head,
        label,
        startedAt,
        span,
        context
      )
      if (hasDuplicateHost(req.rawHeaders))
        return exchange.fail(new BadRequest({ reason: "more than one Host header" }))
      // Browsers cannot set headers on a websocket: Basic credentials (the dashboard's login, or an API key as the
      // password) pass as they do for every API route.
      const denied = auth.check({
        method: "GET",
        url,
        headers: req.headers,
        remoteAddress: req.socket.remoteAddress,
        serviceId: service?.serviceId
      })
      if (denied !== undefined) return exchange.fail(denied)
      if (parsed instanceof BadRequest) return exchange.fail(parsed)
      if (service === undefined) return exchange.fail(new UnknownService({ serviceId: parsed.serviceId }))
      if (draining) return exchange.fail(new GatewayStopping())
      if (service.strategy !== undefined && routing.routes(service.strategy)) {
        return slowPath(exchange, routedPath(exchange, parsed, service.strategy))
      }
      send(exchange, parsed)
    }

    /** Every open websocket is closed with 1001 (going away); new handshakes are refused from now on. */
    const goAway = () => {
      draining = true
      for (const exchange of open) exchange.tunnel?.goAway()
      return open.size
    }

    const destroyAll = () => {
      for (const exchange of open) exchange.tunnel?.destroy()
    }
    // Whatever is still open when the gateway is gone is cut.
    yield* Effect.addFinalizer(() => Effect.sync(destroyAll))

    return {
      handle,
      goAway,
      destroyAll,
      /** Websockets open right now. */
      open: () => open.size
    }
  }),
  dependencies: [ServiceRegistry.Default, Auth.Default, UpstreamPools.Default, ActivityLog.Default]
}) {}
