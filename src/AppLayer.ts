import { NodeContext, NodeHttpClient } from "@effect/platform-node"
import { Context, Effect, Layer } from "effect"
import { Auth } from "./auth/Auth.ts"
import { reportConfig } from "./config/ConfigReport.ts"
import * as ContainerDiscovery from "./config/ContainerDiscovery.ts"
import { HestiaConfig } from "./config/HestiaConfig.ts"
import { LiveConfig } from "./config/LiveConfig.ts"
import { DashboardAssets } from "./http/DashboardRoutes.ts"
import { HttpGateway } from "./http/HttpGateway.ts"
import { EventSubscribers } from "./http/ObservabilityRoutes.ts"
import { Draining } from "./http/Shutdown.ts"
import { WaitingPage } from "./http/WaitingPage.ts"
import * as Logging from "./observability/Logging.ts"
import { Metrics } from "./observability/Metrics.ts"
import { MetricsHistory } from "./observability/MetricsHistory.ts"
import { ServiceLogs } from "./observability/ServiceLogs.ts"
import * as Telemetry from "./observability/Telemetry.ts"
import * as OrchestratorByKind from "./orchestrators/OrchestratorByKind.ts"
import { SemaphoreClient } from "./orchestrators/SemaphoreClient.ts"
import { Dispatcher } from "./proxy/Dispatcher.ts"
import { ModelListener } from "./proxy/ModelListener.ts"
import { ProxyListener } from "./proxy/ProxyListener.ts"
import { UpstreamPools } from "./proxy/UpstreamPools.ts"
import { WebSocketProxy } from "./proxy/WebSocketProxy.ts"
import { Readiness } from "./readiness/Readiness.ts"
import { LifecycleEvents } from "./registry/LifecycleEvents.ts"
import { ServiceRegistry } from "./registry/ServiceRegistry.ts"
import { ActivityLog } from "./store/ActivityLog.ts"
import { AuthKeys } from "./store/AuthKeys.ts"
import { ContainerRows } from "./store/ContainerRows.ts"
import { Database } from "./store/Database.ts"
import { ProcessRecords } from "./store/ProcessRecords.ts"
import { ServiceRows } from "./store/ServiceRows.ts"
import { StoreHealth } from "./store/StoreHealth.ts"
import { Strategies } from "./strategies/Strategies.ts"
import * as StrategyBalance from "./strategies/StrategyBalance.ts"
import * as StrategyPlacement from "./strategies/StrategyPlacement.ts"
import * as StrategyRouting from "./strategies/StrategyRouting.ts"

// The gateway's layer graph, in one place, bottom up: each tier is built on the ones below it and nothing above.
// Services use `DefaultWithoutDependencies` here (their `Default`, with `dependencies`, is for tests that build one
// service alone); each layer is one value, so every service is built once and shared by all that use it. The type
// checker proves the graph complete: `Layer.launch` in main.ts takes no requirement left open.

/** The file (or the embedded default), as read at start. */
const FileConfig = HestiaConfig.layer.pipe(Layer.provide(NodeContext.layer))

/** JSON lines or pretty text, at the configured level; pretty lines align on the longest service id. */
const LoggingLive = Layer.unwrapEffect(
  Effect.map(HestiaConfig, (config) =>
    Logging.layer(config.logLevel, Logging.resolveFormat(config.logFormat), {
      attemptsOf: (serviceId) => {
        const service = config.services.get(serviceId)
        return service === undefined ? undefined : service.retryCount + 1
      },
      width: Math.max(0, ...Array.from(config.services.keys(), (id) => id.length))
    })
  )
).pipe(Layer.provide(FileConfig))

/**
 * 1. Configuration: the file's services plus those container labels declare (asked of the engines once, here),
 * reported before anything else is built (so `config_loaded` is the first log line), and the live view that reloads
 * (file watch, SIGHUP, `POST /v1/config/reload`) replace.
 */
const Configuration = LiveConfig.Default.pipe(
  Layer.provideMerge(
    ContainerDiscovery.layer.pipe(
      Layer.tap((context) => reportConfig(Context.get(context, HestiaConfig))),
      Layer.provide(FileConfig)
    )
  )
)

/** 2. The lifecycle event bus and the SQLite store (the timeline, service rows, processes, containers, keys). */
const Store = Layer.mergeAll(
  ActivityLog.DefaultWithoutDependencies,
  ServiceRows.DefaultWithoutDependencies,
  ProcessRecords.DefaultWithoutDependencies,
  ContainerRows.DefaultWithoutDependencies,
  AuthKeys.DefaultWithoutDependencies
).pipe(
  Layer.provideMerge(StoreHealth.Default),
  Layer.provideMerge(Database),
  Layer.provideMerge(LifecycleEvents.Default)
)

/**
 * 3. Machines: the strategy plugins and what asks them (placement of starts, balance over instances, routing of
 * requests), the orchestrators by kind (with the services' log rings), readiness.
 */
const Machines = Layer.mergeAll(
  OrchestratorByKind.layerWithoutDependencies,
  StrategyPlacement.layerWithoutDependencies,
  StrategyBalance.layerWithoutDependencies,
  StrategyRouting.layerWithoutDependencies,
  Readiness.DefaultWithoutDependencies
).pipe(
  Layer.provideMerge(Layer.merge(Strategies.DefaultWithoutDependencies, ServiceLogs.DefaultWithoutDependencies)),
  Layer.provide(SemaphoreClient.layer),
  // Outgoing control calls (health probes, Semaphore): platform HttpClient over undici.
  Layer.provide(NodeHttpClient.layerUndici),
  // The strategies folder is read and watched through the platform's file system.
  Layer.provide(NodeContext.layer)
)

/** 4. The registry (one owner per service), and what follows it: metrics and their last hour. */
const Registry = Layer.merge(Metrics.DefaultWithoutDependencies, MetricsHistory.DefaultWithoutDependencies).pipe(
  Layer.provideMerge(ServiceRegistry.DefaultWithoutDependencies)
)

/** 5. Requests: API keys, the upstream pools, the proxy, the model endpoints, websockets, `POST /v1/requests`. */
const Requests = Layer.mergeAll(
  ModelListener.DefaultWithoutDependencies,
  WebSocketProxy.DefaultWithoutDependencies,
  Dispatcher.DefaultWithoutDependencies
).pipe(
  Layer.provideMerge(ProxyListener.DefaultWithoutDependencies),
  Layer.provideMerge(Layer.mergeAll(UpstreamPools.DefaultWithoutDependencies, WaitingPage.Default)),
  Layer.provideMerge(Auth.DefaultWithoutDependencies)
)

/** 6. The listening socket and the control API (events, dashboard, the graceful stop). */
const Surface = HttpGateway.DefaultWithoutDependencies.pipe(
  Layer.provide(Layer.mergeAll(EventSubscribers.Default, DashboardAssets.Default, Draining.Default))
)

/** The whole gateway. Telemetry is outermost: the tracer it installs is inherited by every layer above. */
export const AppLayer = Surface.pipe(
  Layer.provide(Requests),
  Layer.provideMerge(Registry),
  Layer.provideMerge(Machines),
  Layer.provideMerge(Store),
  Layer.provideMerge(Configuration),
  Layer.provide(LoggingLive),
  Layer.provide(Telemetry.layer)
)
