import { Effect } from "effect"
import * as Telemetry from "../observability/Telemetry.ts"
import type { Settings } from "./HestiaConfig.ts"

/**
 * The gateway's first log lines: where the configuration came from, its services, whether traces are exported, then
 * one line per accepted-but-questionable key (a first-Hestia key without meaning here, missing credentials...).
 * Whether auth is on (config or CLI keys) is Auth's call: it logs that warning itself.
 */
export const reportConfig = (config: Settings) =>
  Effect.gen(function* () {
    yield* Effect.logInfo(`config loaded from ${config.source}`).pipe(
      Effect.annotateLogs({
        event: "config_loaded",
        source: config.source,
        services: [...config.services.keys()],
        tracing: (yield* Telemetry.TracingEnabled) ? "otlp" : "off"
      })
    )
    for (const warning of config.warnings) {
      yield* Effect.logWarning(`${warning.key}: ${warning.message}`).pipe(
        Effect.annotateLogs({
          event: warning.kind === "deprecated" ? "config_deprecated" : "config_warning",
          source: config.source,
          key: warning.key
        })
      )
    }
  })
