import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Context, Effect, Layer } from "effect"
import * as ContainerDiscovery from "./config/ContainerDiscovery.ts"
import { HestiaConfig, type Settings } from "./config/HestiaConfig.ts"
import { HttpGateway } from "./http/HttpGateway.ts"
import * as Shutdown from "./http/Shutdown.ts"
import * as Logging from "./observability/Logging.ts"
import * as Telemetry from "./observability/Telemetry.ts"
import * as OrchestratorByKind from "./orchestrators/OrchestratorByKind.ts"
import * as StrategyBalance from "./strategies/StrategyBalance.ts"
import * as StrategyPlacement from "./strategies/StrategyPlacement.ts"
import * as StrategyRouting from "./strategies/StrategyRouting.ts"

// First: a closed stdout or stderr (`| head -1`, a restarted log collector) must never end the gateway.
Logging.guardStdio()
// The first SIGTERM/SIGINT stops gracefully (runMain below); a second exits at once.
Shutdown.exitOnSecondSignal()

const FileConfig = HestiaConfig.layer.pipe(Layer.provide(NodeContext.layer))

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

const reportConfig = (config: Settings) =>
  Effect.gen(function* () {
    yield* Effect.logInfo(`config loaded from ${config.source}`).pipe(
      Effect.annotateLogs({
        event: "config_loaded",
        source: config.source,
        services: [...config.services.keys()],
        tracing: (yield* Telemetry.TracingEnabled) ? "otlp" : "off"
      })
    )
    // One line per accepted-but-questionable key: a first-Hestia key without meaning here, missing credentials...
    for (const warning of config.warnings) {
      yield* Effect.logWarning(`${warning.key}: ${warning.message}`).pipe(
        Effect.annotateLogs({
          event: warning.kind === "deprecated" ? "config_deprecated" : "config_warning",
          source: config.source,
          key: warning.key
        })
      )
    }
    // Whether auth is on (config or CLI keys) is Auth's call: it logs the warning when it is off.
  })

// The file's services plus those container labels declare (asked of the engines once, here); reported before anything
// else is built, so `config_loaded` is the gateway's first log line.
const ConfigLive = ContainerDiscovery.layer.pipe(
  Layer.tap((context) => reportConfig(Context.get(context, HestiaConfig))),
  Layer.provide(FileConfig),
  Layer.provide(LoggingLive)
)

const GatewayLive = HttpGateway.Default.pipe(
  Layer.provide(OrchestratorByKind.layer),
  // Strategy plugins: placement orders the machines of each start (the registry's StartPlacement), balance picks an
  // instance (InstanceBalance), routing names the service of a request (the proxy's RequestRouting).
  Layer.provide(Layer.mergeAll(StrategyPlacement.layer, StrategyBalance.layer, StrategyRouting.layer)),
  Layer.provide(ConfigLive),
  // The file system of the strategies folder (read, watched).
  Layer.provide(NodeContext.layer),
  Layer.provide(LoggingLive),
  // Outermost: the tracer it installs (when OTEL_EXPORTER_OTLP_ENDPOINT is set) is inherited by every layer above.
  Layer.provide(Telemetry.layer)
)

Layer.launch(GatewayLive).pipe(
  Effect.catchTag("ConfigError", (error) =>
    Effect.sync(() => {
      Logging.stderr(`hestia: configuration error: ${error.message}\n`)
      process.exit(2)
    })
  ),
  Effect.catchTag("ListenError", (error) =>
    Effect.sync(() => {
      Logging.stderr(`hestia: ${error.message}\n`)
      process.exit(1)
    })
  ),
  NodeRuntime.runMain({ disablePrettyLogger: true })
)
