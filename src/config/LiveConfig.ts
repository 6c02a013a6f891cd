import { statSync, watch } from "node:fs"
import * as Path from "node:path"
import { NodeFileSystem } from "@effect/platform-node"
import { Effect, FiberSet, Metric, MetricLabel } from "effect"
import type { ConfigError } from "../domain/Errors.ts"
import { discover } from "./ContainerDiscovery.ts"
import { HestiaConfig, load, type ServiceConfig, type Settings } from "./HestiaConfig.ts"

/** What a reload changed, for its log line and `POST /v1/config/reload`. */
export interface ReloadOutcome {
  readonly source: string
  readonly trigger: ReloadTrigger
  readonly added: ReadonlyArray<string>
  readonly removed: ReadonlyArray<string>
  readonly changed: ReadonlyArray<string>
  /** Keys that changed but only take effect when the gateway is restarted. */
  readonly restartNeeded: ReadonlyArray<string>
}

export type ReloadTrigger = "file" | "api" | "signal"

/** A part of the gateway that follows the configuration: it may refuse a new one, then applies it. */
export interface ConfigFollower {
  /** Refuses settings it cannot take (e.g. a strategy name that no plugin has), with the error a start would give. */
  readonly check?: (next: Settings) => Effect.Effect<void, ConfigError>
  readonly apply: (next: Settings, previous: Settings) => Effect.Effect<void>
}

/** Top-level settings read once at start: a change is reported, and waits for a restart. */
const restartKeys: ReadonlyArray<readonly [keyof Settings, string]> = [
  ["host", "server.host"],
  ["port", "server.port"],
  ["database", "database"],
  ["auth", "auth"],
  ["logLevel", "log_level"],
  ["logFormat", "log_format"],
  ["semaphore", "semaphore_*"],
  ["maxDispatchBodyBytes", "max_dispatch_body_bytes"],
  ["shutdownGraceMs", "shutdown_grace_ms"]
]

const same = (a: unknown, b: unknown) => JSON.stringify(a, replacer) === JSON.stringify(b, replacer)
const replacer = (_key: string, value: unknown) => (value instanceof Map ? Object.fromEntries(value) : value)

const serviceDiff = (previous: ReadonlyMap<string, ServiceConfig>, next: ReadonlyMap<string, ServiceConfig>) => ({
  added: [...next.keys()].filter((id) => !previous.has(id)),
  removed: [...previous.keys()].filter((id) => !next.has(id)),
  changed: [...next.keys()].filter((id) => previous.has(id) && !same(previous.get(id), next.get(id)))
})

const reloads = Metric.counter("hestia_config_reloads_total", {
  description: "Configuration reloads by outcome (applied, refused)."
})
const counted = (outcome: "applied" | "refused") =>
  Metric.increment(Metric.taggedWithLabels(reloads, [MetricLabel.make("outcome", outcome)]))

/** How long the file must stay quiet after a change before it is read (editors write in several steps). */
const SETTLE_MS = 250

/**
 * The configuration as it is now. It starts as HestiaConfig (the file at start) and follows the file: a change to
 * it (watched), `POST /v1/config/reload` or SIGHUP reloads it; a valid file is applied to every follower in turn
 * (the registry adds, drains or reconfigures services), an invalid one is refused with the message a start would
 * print and the running configuration stays.
 */
export class LiveConfig extends Effect.Service<LiveConfig>()("hestia/LiveConfig", {
  scoped: Effect.gen(function* () {
    let current = yield* HestiaConfig
    const followers: Array<ConfigFollower> = []
    // One reload at a time, applied to every follower before the next begins.
    const reloading = yield* Effect.makeSemaphore(1)
    const runFork = yield* FiberSet.makeRuntime<never>()

    const apply = (next: Settings, trigger: ReloadTrigger) =>
      reloading.withPermits(1)(
        Effect.gen(function* () {
          for (const follower of followers) if (follower.check !== undefined) yield* follower.check(next)
          const previous = current
          const diff = serviceDiff(previous.services, next.services)
          const restartNeeded = restartKeys.filter(([key]) => !same(previous[key], next[key])).map(([, name]) => name)
          current = next
          for (const follower of followers) yield* follower.apply(next, previous)
          const outcome: ReloadOutcome = { source: next.source, trigger, ...diff, restartNeeded }
          yield* counted("applied")
          yield* Effect.logInfo(
            `configuration reloaded (${trigger}): ${diff.added.length} added, ${diff.removed.length} removed, ${diff.changed.length} changed`
          ).pipe(Effect.annotateLogs({ event: "config_reloaded", ...outcome }))
          for (const warning of next.warnings) {
            yield* Effect.logWarning(`${warning.key}: ${warning.message}`).pipe(
              Effect.annotateLogs({
                event: warning.kind === "deprecated" ? "config_deprecated" : "config_warning",
                key: warning.key
              })
            )
          }
          for (const key of restartNeeded) {
            yield* Effect.logWarning(`${key} changed: it takes effect when the gateway is restarted`).pipe(
              Effect.annotateLogs({ event: "config_restart_needed", key })
            )
          }
          return outcome
        })
      )

    const refused = (trigger: ReloadTrigger) => (error: { readonly message: string }) =>
      Effect.zipRight(
        counted("refused"),
        Effect.logError(`configuration not reloaded (${trigger}): ${error.message}; the running one stays`).pipe(
          Effect.annotateLogs({ event: "config_reload_failed", trigger, problem: error.message })
        )
      )

    /** Read the file again (and the container labels), then apply it; the same ConfigError a start would give. */
    const reload = (trigger: ReloadTrigger) =>
      load.pipe(
        Effect.flatMap(discover),
        Effect.provide(NodeFileSystem.layer),
        Effect.flatMap((next) => apply(next, trigger)),
        Effect.tapError(refused(trigger))
      )

    // The file is watched through its folder, so that editors that replace it (write a new file, rename) are seen.
    const file = Path.resolve(current.source)
    const isFile = yield* Effect.sync(() => {
      try {
        return statSync(file).isFile()
      } catch {
        return false
      }
    })
    const watched = yield* Effect.try(() => {
      if (!isFile) throw new Error("not a file: nothing to watch (embedded default, test settings)")
      const watcher = watch(Path.dirname(file), { persistent: false }, (_event, name) => {
        if (name !== null && name.toString() === Path.basename(file)) changed()
      })
      watcher.on("error", () => watcher.close())
      return watcher
    }).pipe(Effect.option)
    if (watched._tag === "Some") yield* Effect.addFinalizer(() => Effect.sync(() => watched.value.close()))
    let pending = false
    const changed = () => {
      if (pending) return
      pending = true
      runFork(
        Effect.sleep(SETTLE_MS).pipe(
          Effect.zipRight(
            Effect.sync(() => {
              pending = false
            })
          ),
          Effect.zipRight(Effect.ignore(reload("file")))
        )
      )
    }

    // SIGHUP, as daemons do: reload on demand from a shell or a service manager.
    const onHangup = () => runFork(Effect.ignore(reload("signal")))
    process.on("SIGHUP", onHangup)
    yield* Effect.addFinalizer(() => Effect.sync(() => process.off("SIGHUP", onHangup)))

    return {
      /** The settings in force now (read without a fiber). */
      current: () => current,
      /** Follow the configuration: checks and applies run in registration order, on every reload. */
      follow: (follower: ConfigFollower) =>
        Effect.sync(() => {
          followers.push(follower)
        }),
      reload: Effect.fn("LiveConfig.reload")(function* (trigger: ReloadTrigger) {
        return yield* reload(trigger)
      }),
      /** Apply settings given directly (tests; the same checks and followers as a reload). */
      apply: (next: Settings) => apply(next, "api").pipe(Effect.tapError(refused("api")))
    }
  })
}) {}
