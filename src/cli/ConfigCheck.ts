import { NodeContext } from "@effect/platform-node"
import { ConfigProvider, Console, Effect, Layer, Logger, LogLevel, Option } from "effect"
import { HestiaConfig, load, type Settings } from "../config/HestiaConfig.ts"
import { targetsFor } from "../domain/Placement.ts"
import { Strategies } from "../strategies/Strategies.ts"
import { UsageError } from "./CliErrors.ts"
import { bold, type Format, green, printJson, table, yellow } from "./Output.ts"
import { reporting } from "./Report.ts"

// `hestia config check [FILE]` (loaded when that command runs: the other commands need none of this), offline: the file read and checked as a start reads and checks it (the same schema,
// cross-key checks and environment overrides, then the strategies folder and every `strategy:` name), with the
// same one-line message. Container labels are not asked for (that needs the engines).

/** What a file defines, secrets left out. */
const summary = (config: Settings, strategies: ReadonlyArray<{ name: string | null; error?: string }>) => ({
  ok: true as const,
  source: config.source,
  server: { host: config.host, port: config.port },
  database: config.database,
  services: Array.from(config.services.values(), (service) => ({
    id: service.id,
    kind: service.kind,
    baseUrl: service.baseUrl,
    machines: targetsFor(service, config).map((target) => target.machineId),
    idleTimeoutMs: service.idleTimeoutMs,
    ...(service.strategy === undefined ? {} : { strategy: service.strategy })
  })),
  machines: [...config.machines.keys()],
  groups: Array.from(config.groups.values(), (group) => ({
    id: group.id,
    exclusive: group.exclusive,
    members: group.members
  })),
  auth: { apiKeys: config.auth.apiKeys.length, dashboard: config.auth.dashboard !== undefined },
  strategies: {
    dir: config.strategiesDir,
    loaded: strategies.flatMap((s) => (s.name === null || s.error !== undefined ? [] : [s.name]))
  },
  warnings: config.warnings.map((warning) => `${warning.key}: ${warning.message}`)
})

type Summary = ReturnType<typeof summary>

const summaryText = (s: Summary) => {
  const lines = [
    `${bold(s.source)}: ${green("ok")}`,
    "",
    s.services.length === 0
      ? "no services"
      : table(
          ["SERVICE", "KIND", "BASE URL", "MACHINES", "IDLE STOP"],
          s.services.map((service) => [
            service.id,
            service.kind,
            service.baseUrl,
            service.machines.join(", ") || "-",
            service.idleTimeoutMs === 0 ? "never" : `${service.idleTimeoutMs / 1000} s`
          ])
        ),
    "",
    `listens on  ${s.server.host}:${s.server.port}`,
    `database    ${s.database}`,
    `machines    ${s.machines.join(", ") || "local only"}`,
    `groups      ${s.groups.map((g) => `${g.id}${g.exclusive ? " (exclusive)" : ""}: ${g.members.join(", ")}`).join("; ") || "none"}`,
    `auth        ${s.auth.apiKeys === 0 ? "no API keys in the file" : `${s.auth.apiKeys} API key(s)`}, ${s.auth.dashboard ? "dashboard login" : "no dashboard login"}`,
    `strategies  ${s.strategies.dir}: ${s.strategies.loaded.join(", ") || "none loaded"}`,
    ...s.warnings.map((warning) => yellow(`warning     ${warning}`))
  ]
  return lines.join("\n")
}

/** The check and its report; exit 2 with the start's one-line message when the file is wrong. */
export const check = ({ file, format }: { readonly file: Option.Option<string>; readonly format: Format }) =>
  Effect.gen(function* () {
    const config = yield* load
    const strategies = yield* Effect.scoped(
      Effect.flatMap(Strategies, (loaded) => loaded.list()).pipe(
        Effect.provide(Strategies.Default),
        Effect.provideService(HestiaConfig, config)
      )
    ).pipe(Effect.map((view) => view.strategies))
    const result = summary(config, strategies)
    yield* format === "json" ? printJson(result) : Console.log(summaryText(result))
  }).pipe(
    Effect.mapError((error) => new UsageError({ problem: `configuration error: ${error.message}` })),
    // FILE is what HESTIA_CONFIG would name for a start; every other variable is read as a start reads it.
    Option.isSome(file)
      ? Effect.withConfigProvider(
          ConfigProvider.fromMap(new Map([["HESTIA_CONFIG", file.value]])).pipe(
            ConfigProvider.orElse(() => ConfigProvider.fromEnv())
          )
        )
      : (effect) => effect,
    Effect.provide(Layer.merge(NodeContext.layer, Logger.minimumLogLevel(LogLevel.None))),
    reporting(format)
  )
