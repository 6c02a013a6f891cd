import * as Http from "node:http"
import type { AddressInfo, Socket } from "node:net"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect } from "effect"
import { Auth } from "../auth/Auth.ts"
import { HestiaConfig } from "../config/HestiaConfig.ts"
import { LiveConfig } from "../config/LiveConfig.ts"
import { BadRequest, ListenError } from "../domain/Errors.ts"
import { Metrics } from "../observability/Metrics.ts"
import { MetricsHistory } from "../observability/MetricsHistory.ts"
import { ServiceLogs } from "../observability/ServiceLogs.ts"
import { Dispatcher } from "../proxy/Dispatcher.ts"
import { hasDuplicateHost, isServicesUrl, requestIdOf } from "../proxy/ForwardingRules.ts"
import { isModelUrl } from "../proxy/ModelApis.ts"
import { ModelListener } from "../proxy/ModelListener.ts"
import { ProxyListener, writeError } from "../proxy/ProxyListener.ts"
import { UpstreamPools } from "../proxy/UpstreamPools.ts"
import { WebSocketProxy } from "../proxy/WebSocketProxy.ts"
import { LifecycleEvents } from "../registry/LifecycleEvents.ts"
import { ServiceRegistry } from "../registry/ServiceRegistry.ts"
import { ActivityLog } from "../store/ActivityLog.ts"
import { StoreHealth } from "../store/StoreHealth.ts"
import { Strategies } from "../strategies/Strategies.ts"
import { DashboardAssets } from "./DashboardRoutes.ts"
import { httpApp } from "./HttpApp.ts"
import { EventSubscribers } from "./ObservabilityRoutes.ts"
import * as Shutdown from "./Shutdown.ts"
import { Draining } from "./Shutdown.ts"

/**
 * The listening socket. One node:http server: `/services/...` goes to the ProxyListener (hot services never enter
 * the Effect router), `/openai/...` and `/ollama/...` to the ModelListener (which chooses the service by the body's
 * model, then forwards through the ProxyListener), everything else to the Effect HttpApp, with its X-Request-ID (the client's, else a new one)
 * set before it gets there. A request with two Host headers is refused for both (RFC 9112 §3.2).
 */
export class HttpGateway extends Effect.Service<HttpGateway>()("hestia/HttpGateway", {
  scoped: Effect.gen(function* () {
    const config = yield* HestiaConfig
    const proxy = yield* ProxyListener
    const models = yield* ModelListener
    const websockets = yield* WebSocketProxy
    const draining = yield* Draining
    const app = yield* httpApp
    const control = yield* NodeHttpServer.makeHandler(app)

    const onRequest = (req: Http.IncomingMessage, res: Http.ServerResponse) => {
      // Stopping: the answer closes its connection (a keep-alive client reconnects elsewhere).
      if (draining.isDraining()) res.shouldKeepAlive = false
      if (hasDuplicateHost(req.rawHeaders)) {
        res.shouldKeepAlive = false
        return writeError(res, new BadRequest({ reason: "more than one Host header" }), requestIdOf(req.headers))
      }
      if (isServicesUrl(req.url ?? "/")) return proxy.handle(req, res)
      if (isModelUrl(req.url ?? "/")) return models.handle(req, res)
      const requestId = requestIdOf(req.headers)
      req.headers["x-request-id"] = requestId
      res.setHeader("x-request-id", requestId)
      control(req, res)
    }
    const server = Http.createServer(onRequest)
    // Websockets to services; any other upgrade request is answered by `onRequest` as a plain request.
    const connections = Shutdown.trackConnections(server)
    server.on("upgrade", (req: Http.IncomingMessage, socket, head: Buffer) => {
      connections.delete(socket as Socket)
      websockets.handle(req, socket, head, onRequest)
    })
    // Uploads and streams may take long; the proxy's own timeouts govern upstream waits.
    server.requestTimeout = 0
    server.keepAliveTimeout = 65_000

    yield* Effect.async<void, ListenError>((resume) => {
      server.once("error", (error: NodeJS.ErrnoException) =>
        resume(
          Effect.fail(
            new ListenError({ host: config.host, port: config.port, code: error.code, detail: error.message })
          )
        )
      )
      server.listen(config.port, config.host, () => resume(Effect.void))
    })
    // First of the gateway's finalizers: requests and streams finish (up to shutdown_grace_ms) before the services stop.
    yield* Effect.addFinalizer(() =>
      Shutdown.drain({ server, sockets: connections, graceMs: config.shutdownGraceMs, draining, websockets })
    )
    const address = server.address() as AddressInfo
    yield* Effect.logInfo(`listening on http://${address.address}:${address.port}`).pipe(
      Effect.annotateLogs({ event: "listening", host: address.address, port: address.port })
    )
    return { host: address.address, port: address.port, url: `http://127.0.0.1:${address.port}` }
  }),
  dependencies: [
    ProxyListener.Default,
    ModelListener.Default,
    WebSocketProxy.Default,
    EventSubscribers.Default,
    Dispatcher.Default,
    UpstreamPools.Default,
    ServiceRegistry.Default,
    Auth.Default,
    ActivityLog.Default,
    StoreHealth.Default,
    Metrics.Default,
    MetricsHistory.Default,
    ServiceLogs.Default,
    DashboardAssets.Default,
    Draining.Default,
    LifecycleEvents.Default,
    Strategies.Default,
    LiveConfig.Default
  ]
}) {}
