import { NodeContext } from "@effect/platform-node"
import { Console, Effect, Layer, Logger, LogLevel } from "effect"
import { hashKey, newKey } from "../auth/Auth.ts"
import { HestiaConfig } from "../config/HestiaConfig.ts"
import { AuthKeys } from "../store/AuthKeys.ts"
import { StoreRefused, UsageError } from "./CliErrors.ts"
import { type Format, green, printJson, table, yellow } from "./Output.ts"
import { reporting } from "./Report.ts"

// What `hestia keys ...` does, on the gateway's database (HESTIA_CONFIG, HESTIA_DATABASE); loaded only when a keys
// command runs. A running gateway picks changes up within about 5 seconds.

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString())

const KeysLive = AuthKeys.Default.pipe(
  Layer.provideMerge(HestiaConfig.layer),
  Layer.provide(NodeContext.layer),
  Layer.provide(Logger.minimumLogLevel(LogLevel.None))
)

/** A keys command: the database opened for it, its failures reported (a config error is exit 2). */
const onStore = (format: Format, body: Effect.Effect<void, StoreRefused, AuthKeys | HestiaConfig>) =>
  body.pipe(
    Effect.provide(KeysLive),
    Effect.catchTag("ConfigError", (error) => new UsageError({ problem: `configuration error: ${error.message}` })),
    reporting(format)
  )

export const add = ({ label, format }: { readonly label: string; readonly format: Format }) =>
  onStore(
    format,
    Effect.gen(function* () {
      const store = yield* AuthKeys
      const key = newKey()
      yield* store
        .addKey(label, hashKey(key))
        .pipe(Effect.catchTag("KeyLabelTaken", (error) => new StoreRefused({ problem: error.message })))
      if (format === "json") yield* printJson({ label, key })
      else yield* Console.log(key)
      yield* Console.error(`key "${label}" added. It is shown only this once: only its hash is stored.`)
    })
  )

export const list = ({ format }: { readonly format: Format }) =>
  onStore(
    format,
    Effect.gen(function* () {
      const keys = (yield* Effect.flatMap(AuthKeys, (store) => store.authKeys())).map((k) => ({
        label: k.label,
        source: k.source,
        enabled: k.disabledAt === null,
        createdAt: iso(k.createdAt),
        lastUsedAt: iso(k.lastUsedAt),
        disabledAt: iso(k.disabledAt)
      }))
      if (format === "json") return yield* printJson({ keys })
      if (keys.length === 0) return yield* Console.log("no keys")
      yield* Console.log(
        table(
          ["LABEL", "SOURCE", "STATE", "CREATED", "LAST USED"],
          keys.map((k) => [
            k.label,
            k.source,
            k.enabled ? green("enabled") : yellow(`disabled ${k.disabledAt}`),
            k.createdAt ?? "-",
            k.lastUsedAt ?? "never"
          ])
        )
      )
    })
  )

const missing = (label: string) => `no key labelled "${label}"`

const changes = {
  disable: (store: AuthKeys, label: string) =>
    Effect.map(store.disableKey(label), (found) => (found ? undefined : missing(label))),
  enable: (store: AuthKeys, label: string) =>
    Effect.map(store.enableKey(label), (found) => (found ? undefined : missing(label))),
  remove: (store: AuthKeys, label: string) =>
    Effect.map(store.removeKey(label), (outcome) =>
      outcome === "removed"
        ? undefined
        : outcome === "missing"
          ? missing(label)
          : `"${label}" is a key from the config file: remove it there (or disable it here)`
    )
}

/** Auth is on while the config has keys or the CLI added any (even disabled): the last one removed turns it off. */
const authTurnsOff = Effect.gen(function* () {
  const config = yield* HestiaConfig
  const rows = yield* Effect.flatMap(AuthKeys, (store) => store.authKeys())
  return config.auth.apiKeys.length === 0 && !rows.some((row) => row.source === "cli")
})

/** disable, enable, remove: one key by its label. */
export const change = (
  name: keyof typeof changes,
  { label, format }: { readonly label: string; readonly format: Format }
) =>
  onStore(
    format,
    Effect.gen(function* () {
      const problem = yield* changes[name](yield* AuthKeys, label)
      if (problem !== undefined) return yield* new StoreRefused({ problem })
      yield* format === "json" ? printJson({ label, done: name }) : Console.log(`key "${label}": ${name}d`)
      if (name === "remove" && (yield* authTurnsOff)) {
        yield* Console.error(
          "hestia: warning: no API key is left, so a gateway on this database runs with auth off " +
            "(disable keys instead to keep it locked)"
        )
      }
    })
  )
