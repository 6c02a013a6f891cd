import { Effect, Layer, LogLevel, Option } from "effect"
import { ConfigError } from "../domain/Errors.ts"
import * as DockerEngine from "../orchestrators/DockerEngine.ts"
import { decodeService, HestiaConfig, type MachineConfig, type ServiceConfig, type Settings } from "./HestiaConfig.ts"

// ---------------------------------------------------------------------------
// Services declared by container labels (what compose users know from Sablier): on each machine with
// `container_discovery: true`, every container labelled `hestia.service=<id>` becomes a container service of that id
// on that machine, as if it were in the file with `container: { name: <its name> }`. Read once, at start.
// ---------------------------------------------------------------------------

export const SERVICE_LABEL = "hestia.service"

/** Every label discovery reads; another `hestia.*` label is a mistake worth an error (a typo would be silence). */
const KNOWN_LABELS = new Set([
  SERVICE_LABEL,
  "hestia.port",
  "hestia.base_url",
  "hestia.health_path",
  "hestia.idle_timeout_ms",
  // Put by Hestia on the containers it creates; not a declaration.
  "hestia.created_for"
])

const SERVICE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]*$/

/** One labelled container as a service, or the ConfigError naming the container and the label. */
export const serviceFromLabels = (machine: MachineConfig, container: DockerEngine.ListedContainer) =>
  Effect.gen(function* () {
    const labels = container.labels
    const file = `labels of container "${container.name}" on machine "${machine.id}"`
    const fail = (label: string, problem: string) => new ConfigError({ file, path: label, problem })
    const id = labels[SERVICE_LABEL] ?? ""
    if (!SERVICE_ID.test(id)) return yield* fail(SERVICE_LABEL, "service ids use letters, digits, '-' and '_' only")
    for (const label of Object.keys(labels)) {
      if (label.startsWith("hestia.") && !KNOWN_LABELS.has(label)) return yield* fail(label, "unknown label")
    }
    const wholeNumber = (label: string, min: number, max: number) => {
      const text = labels[label]
      if (text === undefined) return Effect.succeed(undefined)
      const value = Number(text)
      return /^\d+$/.test(text) && value >= min && value <= max
        ? Effect.succeed(value)
        : Effect.fail(fail(label, `expected a whole number ${min}–${max}, got "${text}"`))
    }
    const port = yield* wholeNumber("hestia.port", 1, 65535)
    const idleTimeoutMs = yield* wholeNumber("hestia.idle_timeout_ms", 0, Number.MAX_SAFE_INTEGER)
    const published = container.publishedPorts[0]?.hostPort
    const explicit = labels["hestia.base_url"]
    if (explicit === undefined && port === undefined && published === undefined) {
      return yield* fail("hestia.port", "required: the container publishes no port to tell where it answers")
    }
    const baseUrl = explicit ?? `http://{host}:${port ?? published}`
    const healthPath = labels["hestia.health_path"]
    if (healthPath !== undefined && !healthPath.startsWith("/")) {
      return yield* fail("hestia.health_path", `expected a path starting with "/", got "${healthPath}"`)
    }
    const raw: Record<string, unknown> = {
      base_url: baseUrl,
      machines: [machine.id],
      container: { name: container.name }
    }
    if (healthPath !== undefined) raw.health_url = `${baseUrl.replace(/\/+$/, "")}${healthPath}`
    if (idleTimeoutMs !== undefined) raw.idle_timeout_ms = idleTimeoutMs
    return yield* decodeService(id, raw, "labels", { file, path: "labels" })
  })

interface Found {
  readonly service: ServiceConfig
  readonly where: string
}

/** Settings with the services the labels declare added; a clash with the file (or between labels) is a ConfigError. */
export const discover = (settings: Settings) =>
  Effect.scoped(
    Effect.gen(function* () {
      const machines = [...settings.machines.values()].filter((machine) => machine.containerDiscovery)
      if (machines.length === 0) return settings
      const fromEnv = Option.getOrUndefined(yield* DockerEngine.dockerHost)
      const found = new Map<string, Found>()
      for (const machine of machines) {
        const url = DockerEngine.engineUrlFor(settings, machine.id, fromEnv)
        const engine = yield* DockerEngine.make(url)
        const listed = yield* Effect.either(engine.listContainers(SERVICE_LABEL))
        if (listed._tag === "Left") {
          // A machine that is off must not keep the gateway from starting; its containers are simply not known.
          // No socket at all is no engine installed there: worth a line, not a warning.
          const noEngine = listed.left._tag === "EngineUnreachable" && listed.left.reason.includes("ENOENT")
          yield* Effect.logWithLevel(
            noEngine ? LogLevel.Info : LogLevel.Warning,
            `container discovery on machine ${machine.id}: ${listed.left.message}; none of its containers are services`
          ).pipe(Effect.annotateLogs({ event: "container_discovery_failed", machineId: machine.id, engine: url }))
          continue
        }
        for (const container of listed.right) {
          const service = yield* serviceFromLabels(machine, container)
          const where = `container "${container.name}" on machine "${machine.id}"`
          if (settings.services.has(service.id)) {
            return yield* new ConfigError({
              file: settings.source,
              path: `services.${service.id}`,
              problem: `also declared by the label ${SERVICE_LABEL}=${service.id} of ${where}`
            })
          }
          const twice = found.get(service.id)
          if (twice !== undefined) {
            return yield* new ConfigError({
              file: `labels of ${where}`,
              path: SERVICE_LABEL,
              problem: `service "${service.id}" is already declared by the labels of ${twice.where}`
            })
          }
          found.set(service.id, { service, where })
        }
        yield* Effect.logInfo(
          `container discovery on machine ${machine.id}: ${listed.right.length} labelled container(s)`
        ).pipe(
          Effect.annotateLogs({
            event: "container_discovery",
            machineId: machine.id,
            engine: url,
            services: listed.right.map((c) => c.labels[SERVICE_LABEL])
          })
        )
      }
      if (found.size === 0) return settings
      return {
        ...settings,
        services: new Map([...settings.services, ...[...found].map(([id, { service }]) => [id, service] as const)])
      } satisfies Settings
    })
  )

/** HestiaConfig again, with the services container labels declare (queried once, when the layer is built). */
export const layer: Layer.Layer<HestiaConfig, ConfigError, HestiaConfig> = Layer.effect(
  HestiaConfig,
  Effect.flatMap(HestiaConfig, discover)
)
