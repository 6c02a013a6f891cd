/**
 * API key management on the gateway's database: `npm run keys -- add <label> | list | disable <label>`.
 * Reads the same config (HESTIA_CONFIG, HESTIA_DATABASE) as the gateway; a running gateway picks changes up within
 * seconds.
 */
import { Args, Command } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer, Logger, LogLevel, Schema } from "effect"
import { hashKey, newKey } from "../auth/Auth.ts"
import { HestiaConfig } from "../config/HestiaConfig.ts"
import { AuthKeys } from "../store/AuthKeys.ts"

const Label = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
    message: () => "a label is 1-64 letters, digits, '.', '_' or '-'"
  }),
  Schema.filter((label) => !label.startsWith("config-") || "labels config-N name the keys from the config file")
)
const label = Args.text({ name: "label" }).pipe(Args.withSchema(Label))

const time = (ms: number | null) => (ms === null ? "-" : new Date(ms).toISOString())

const add = Command.make("add", { label }, ({ label }) =>
  Effect.gen(function* () {
    const store = yield* AuthKeys
    const key = newKey()
    yield* store.addKey(label, hashKey(key))
    yield* Console.log(key)
    yield* Console.error(`key "${label}" added. It is shown only this once: only its hash is stored.`)
  })
).pipe(Command.withDescription("create a key and print it once"))

const list = Command.make("list", {}, () =>
  Effect.gen(function* () {
    const keys = yield* Effect.flatMap(AuthKeys, (store) => store.authKeys())
    if (keys.length === 0) return yield* Console.log("no keys")
    const rows = keys.map((k) => [
      k.label,
      k.source,
      k.disabledAt === null ? "enabled" : `disabled ${time(k.disabledAt)}`,
      `created ${time(k.createdAt)}`,
      `last used ${time(k.lastUsedAt)}`
    ])
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
    for (const row of rows) yield* Console.log(row.map((cell, i) => cell.padEnd(widths[i]!)).join("  "))
  })
).pipe(Command.withDescription("list keys (labels and dates; keys themselves are never stored)"))

const disable = Command.make("disable", { label }, ({ label }) =>
  Effect.gen(function* () {
    const found = yield* Effect.flatMap(AuthKeys, (store) => store.disableKey(label))
    if (!found) return yield* Effect.fail(`no key labelled "${label}"`)
    yield* Console.log(`key "${label}" disabled`)
  })
).pipe(Command.withDescription("disable a key: requests using it are refused"))

const keys = Command.make("keys").pipe(Command.withSubcommands([add, list, disable]))

const KeysLive = AuthKeys.Default.pipe(
  Layer.provide(HestiaConfig.layer),
  Layer.provide(NodeContext.layer),
  Layer.provide(Logger.minimumLogLevel(LogLevel.Error))
)

const failWith = (message: string | undefined) =>
  (message === undefined ? Effect.void : Console.error(`hestia keys: ${message}`)).pipe(
    Effect.zipRight(
      Effect.sync(() => {
        process.exitCode = 1
      })
    )
  )

Command.run(keys, { name: "hestia keys", version: "0.1.0" })(process.argv).pipe(
  Effect.provide(Layer.merge(KeysLive, NodeContext.layer)),
  Effect.catchAll((error) => {
    if (typeof error === "string") return failWith(error)
    switch (error._tag) {
      case "KeyLabelTaken":
        return failWith(error.message)
      case "ConfigError":
        return failWith(`configuration error: ${error.message}`)
      default:
        // A usage error: @effect/cli has printed it with the help.
        return failWith(undefined)
    }
  }),
  NodeRuntime.runMain({ disablePrettyLogger: true })
)
