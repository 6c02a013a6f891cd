import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { HestiaConfig } from "./HestiaConfig.ts"
import { HttpGateway } from "./HttpGateway.ts"
import * as Logging from "./Logging.ts"
import { Orchestrator } from "./Orchestrator.ts"

const ConfigLive = HestiaConfig.layer.pipe(Layer.provide(NodeContext.layer))

const LoggingLive = Layer.unwrapEffect(Effect.map(HestiaConfig, (config) => Logging.layer(config.logLevel))).pipe(
  Layer.provide(ConfigLive)
)

const ConfigReport = Layer.effectDiscard(
  Effect.gen(function* () {
    const config = yield* HestiaConfig
    yield* Effect.logInfo(`config loaded from ${config.source}`).pipe(
      Effect.annotateLogs({ event: "config_loaded", source: config.source, services: [...config.services.keys()] })
    )
    if (config.auth.apiKeys.length === 0) {
      yield* Effect.logWarning("authentication is disabled: anyone who can reach this port can use every service").pipe(
        Effect.annotateLogs({ event: "auth_disabled" })
      )
    }
  })
)

const GatewayLive = Layer.mergeAll(HttpGateway.Default, ConfigReport).pipe(
  Layer.provide(Orchestrator.layer),
  Layer.provide(ConfigLive),
  Layer.provide(LoggingLive)
)

Layer.launch(GatewayLive).pipe(
  Effect.catchTag("ConfigError", (error) =>
    Effect.sync(() => {
      process.stderr.write(`hestia: configuration error: ${error.message}\n`)
      process.exit(2)
    })
  ),
  NodeRuntime.runMain({ disablePrettyLogger: true })
)
