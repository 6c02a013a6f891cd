#!/usr/bin/env node
/**
 * `hestia`: the gateway from a terminal. `status`, `start`, `stop`, `unload`, `logs`, `events`, `activity` and
 * `config reload` talk to a running gateway through the client derived from the API's declaration; `config check`
 * and `keys` work offline. Exit codes:
 * 0 ok, 1 the gateway (or the database) refused, 2 usage or configuration error, 3 no gateway answers.
 */
import { Command, ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { config } from "./ConfigCommand.ts"
import { HttpLive } from "./GatewayClient.ts"
import { keys } from "./KeysCommand.ts"
import { plainWhereNotTerminal } from "./Output.ts"
import { activity, events, logs, start, status, stop, unload } from "./ServiceCommands.ts"

// `hestia events | head -1`: a reader that goes away ends the command quietly, not with an EPIPE stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(process.exitCode ?? 0)
    throw error
  })
}

const hestia = Command.make("hestia").pipe(
  Command.withDescription("Hestia, the on-demand service gateway: its services, logs, events, config and keys"),
  Command.withSubcommands([status, start, stop, unload, logs, events, activity, config, keys])
)

Command.run(hestia, { name: "hestia", version: "0.1.0" })(process.argv).pipe(
  // A usage error: @effect/cli has printed it (with the help where it helps).
  Effect.catchIf(ValidationError.isValidationError, () =>
    Effect.sync(() => {
      process.exitCode = 2
    })
  ),
  plainWhereNotTerminal,
  Effect.provide(Layer.merge(NodeContext.layer, HttpLive)),
  NodeRuntime.runMain({ disablePrettyLogger: true })
)
