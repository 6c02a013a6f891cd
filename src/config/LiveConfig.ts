import { type FSWatcher, lstatSync, readFileSync, readlinkSync, realpathSync, statSync, watch } from "node:fs"
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

/** Links followed at most, from the config path to the file (a loop of links ends the walk). */
const MAX_LINKS = 8

/**
 * The folders to watch for the config file and the names that matter in each: the file's own folder (its name),
 * and, for each link on the way to the real file, the link's folder (any name: a ConfigMap swaps a `..data` link
 * beside it) and the folder the link leads to. Nothing for a path that is not a file (the embedded default).
 */
export const watchedFolders = (file: string): Map<string, Set<string> | "any"> => {
  const folders = new Map<string, Set<string> | "any">()
  const add = (path: string, any: boolean) => {
    const folder = Path.dirname(path)
    const names = folders.get(folder)
    if (any || names === "any") return folders.set(folder, "any")
    folders.set(folder, (names ?? new Set()).add(Path.basename(path)))
  }
  try {
    if (!statSync(file).isFile()) return folders
  } catch {
    return folders
  }
  let path = file
  for (let links = 0; links < MAX_LINKS && lstatSync(path).isSymbolicLink(); links++) {
    add(path, true)
    path = Path.resolve(Path.dirname(path), readlinkSync(path))
  }
  // Its real folder: a linked folder on the way (`..data/hestia.yml`) leads to another one once it is swapped.
  add(realpathSync(path), false)
  return folders
}

const sameNames = (a: Set<string> | "any", b: Set<string> | "any") =>
  a === "any" || b === "any" ? a === b : a.size === b.size && [...a].every((name) => b.has(name))

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
      Effect.sync(() => {
        // A reload on demand reads the file as it is now: the watch need not read these bytes again.
        if (trigger !== "file") loaded = contents()
      }).pipe(
        Effect.zipRight(load),
        Effect.flatMap(discover),
        Effect.provide(NodeFileSystem.layer),
        Effect.flatMap((next) => apply(next, trigger)),
        Effect.tapError(refused(trigger))
      )

    // The file is watched through its folder, so that editors that replace it (write a new file, rename) are seen;
    // a file reached through links (a dotfiles checkout, a Kubernetes ConfigMap's `..data` swap) through the folder
    // of each link too, and of the file they lead to. A change event only counts when the file's bytes changed.
    const file = Path.resolve(current.source)
    const contents = () => {
      try {
        return readFileSync(file)
      } catch {
        return undefined
      }
    }
    let loaded = contents()
    // Folder → its watcher and the names that count there; redone after each change (a swapped link leads elsewhere).
    const watchers = new Map<string, { readonly watcher: FSWatcher; readonly names: Set<string> | "any" }>()
    const rewatch = () => {
      const wanted = watchedFolders(file)
      for (const [folder, entry] of watchers) {
        if (wanted.has(folder) && sameNames(wanted.get(folder)!, entry.names)) continue
        entry.watcher.close()
        watchers.delete(folder)
      }
      for (const [folder, names] of wanted) {
        if (watchers.has(folder)) continue
        try {
          const watcher = watch(folder, { persistent: false }, (_event, name) => {
            if (name === null || names === "any" || names.has(name.toString())) changed()
          })
          watcher.on("error", () => {
            watcher.close()
            if (watchers.get(folder)?.watcher === watcher) watchers.delete(folder)
          })
          watchers.set(folder, { watcher, names })
        } catch {
          // A folder that cannot be watched (gone, no permission): SIGHUP and the API still reload.
        }
      }
    }
    yield* Effect.sync(rewatch)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const entry of watchers.values()) entry.watcher.close()
        watchers.clear()
      })
    )
    let pending = false
    const changed = () => {
      if (pending) return
      pending = true
      runFork(
        Effect.sleep(SETTLE_MS).pipe(
          Effect.zipRight(
            Effect.sync(() => {
              pending = false
              rewatch()
              const now = contents()
              const same = now !== undefined && loaded !== undefined && now.equals(loaded)
              if (!same) loaded = now
              return same
            })
          ),
          Effect.flatMap((same) => (same ? Effect.void : Effect.ignore(reload("file"))))
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
