import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect } from "effect"
import { Auth } from "../auth/Auth.ts"
import { HestiaConfig } from "../config/HestiaConfig.ts"
import { Metrics } from "../observability/Metrics.ts"
import { isServicesUrl, ServiceProxy } from "../proxy/ServiceProxy.ts"
import { LifecycleEvents } from "../registry/LifecycleEvents.ts"
import { ServiceRegistry } from "../registry/ServiceRegistry.ts"
import { ActivityLog } from "../store/ActivityLog.ts"
import { StoreHealth } from "../store/StoreHealth.ts"
import { Strategies } from "../strategies/Strategies.ts"
import { httpApp } from "./HttpApp.ts"

/**
 * The listening socket. One node:http server: `/services/...` goes to the ServiceProxy's listener (hot services never
 * enter the Effect router), everything else to the Effect HttpApp.
 */
export class HttpGateway extends Effect.Service<HttpGateway>()("hestia/HttpGateway", {
  scoped: Effect.gen(function* () {
    const config = yield* HestiaConfig
    const proxy = yield* ServiceProxy
    const app = yield* httpApp
    const control = yield* NodeHttpServer.makeHandler(app)

    const server = Http.createServer((req, res) => {
      if (isServicesUrl(req.url ?? "/")) proxy.handle(req, res)
      else control(req, res)
    })
    // Uploads and streams may take long; the proxy's own timeouts govern upstream waits.
    server.requestTimeout = 0
    server.keepAliveTimeout = 65_000

    yield* Effect.async<void, Error>((resume) => {
      server.once("error", (error) => resume(Effect.fail(error)))
      server.listen(config.port, config.host, () => resume(Effect.void))
    }).pipe(Effect.orDie)
    yield* Effect.addFinalizer(() =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
    )
    const address = server.address() as AddressInfo
    yield* Effect.logInfo(`listening on http://${address.address}:${address.port}`).pipe(
      Effect.annotateLogs({ event: "listening", host: address.address, port: address.port })
    )
    return { host: address.address, port: address.port, url: `http://127.0.0.1:${address.port}` }
  }),
  dependencies: [
    ServiceProxy.Default,
    ServiceRegistry.Default,
    Auth.Default,
    ActivityLog.Default,
    StoreHealth.Default,
    Metrics.Default,
    LifecycleEvents.Default,
    Strategies.Default
  ]
}) {}
