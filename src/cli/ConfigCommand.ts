import { Args, Command } from "@effect/cli"
import { Effect } from "effect"
import { format } from "./Output.ts"
import { reload } from "./ServiceCommands.ts"

const check = Command.make(
  "check",
  {
    file: Args.text({ name: "FILE" }).pipe(
      Args.withDescription("the config file (default: HESTIA_CONFIG, else ./hestia_config.yml)"),
      Args.optional
    ),
    format
  },
  (options) =>
    Effect.flatMap(
      Effect.promise(() => import("./ConfigCheck.ts")),
      (work) => work.check(options)
    )
).pipe(Command.withDescription("check a config file offline, as a start would, and say what it defines"))

export const config = Command.make("config").pipe(
  Command.withDescription("the configuration file: check it offline, or have the gateway reload it"),
  Command.withSubcommands([check, reload])
)
