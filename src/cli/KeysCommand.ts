import { Args, Command } from "@effect/cli"
import { Effect, Schema } from "effect"
import { format } from "./Output.ts"

// `hestia keys add|list|disable|enable|remove`, offline, on the gateway's database (src/cli/KeyOperations.ts, loaded
// only when one of these runs).

const Label = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
    message: () => "a label is 1-64 letters, digits, '.', '_' or '-'"
  }),
  Schema.filter((label) => !label.startsWith("config-") || "labels config-N name the keys from the config file")
)

const operations = Effect.promise(() => import("./KeyOperations.ts"))

const add = Command.make(
  "add",
  { label: Args.text({ name: "LABEL" }).pipe(Args.withSchema(Label)), format },
  (options) => Effect.flatMap(operations, (keys) => keys.add(options))
).pipe(Command.withDescription("create a key and print it once (only its hash is stored)"))

const list = Command.make("list", { format }, (options) =>
  Effect.flatMap(operations, (keys) => keys.list(options))
).pipe(Command.withDescription("list keys (labels and dates; keys themselves are never stored)"))

const change = (name: "disable" | "enable" | "remove", description: string) =>
  Command.make(name, { label: Args.text({ name: "LABEL" }), format }, (options) =>
    Effect.flatMap(operations, (keys) => keys.change(name, options))
  ).pipe(Command.withDescription(description))

export const keys = Command.make("keys").pipe(
  Command.withDescription("API keys on the gateway's database (offline)"),
  Command.withSubcommands([
    add,
    list,
    change("disable", "disable a key: requests using it are refused"),
    change("enable", "enable a disabled key again"),
    change("remove", "delete a key added with `hestia keys add` (config keys are removed from the config)")
  ])
)
