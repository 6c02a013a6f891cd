import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { AppLayer } from "./AppLayer.ts"
import * as Shutdown from "./http/Shutdown.ts"
import * as Logging from "./observability/Logging.ts"

// First: a closed stdout or stderr (`| head -1`, a restarted log collector) must never end the gateway.
Logging.guardStdio()
// The first SIGTERM/SIGINT stops gracefully (runMain below); a second exits at once.
Shutdown.exitOnSecondSignal()

// The layer graph is AppLayer.ts. A broken configuration exits 2 and a port that cannot be bound exits 1, each with
// one line on stderr.
Layer.launch(AppLayer).pipe(
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
