import * as NodeFs from "node:fs"
import * as Path from "node:path"
import { FileSystem } from "@effect/platform"
import { Chunk, Clock, Deferred, Duration, Effect, Either, Exit, FiberSet, Queue, Runtime } from "effect"
import type { MachineConfig, ServiceConfig, Settings } from "../config/HestiaConfig.ts"
import { LiveConfig } from "../config/LiveConfig.ts"
import { ConfigError, StrategyCallFailed, StrategyLoadFailed } from "../domain/Errors.ts"
import { type StrategyRecorder, strategyRecorder, UNKNOWN_STRATEGY } from "../observability/StrategyMetrics.ts"
import { makeLogBudget } from "./LogBudget.ts"
import type {
  BalanceInstance,
  PlacementContext,
  RoutingRequest,
  StrategyKind,
  StrategyMachine,
  StrategyService
} from "./StrategyApi.ts"
import { bundle } from "./StrategyBundle.ts"
import { type FileRead, readFolder } from "./StrategyFolder.ts"
import { type Declared, type Runner, type RunnerEvent, startRunner } from "./StrategyRunner.ts"

// The strategy plugins of `strategies_dir`: loaded at start (a file that fails, a duplicate name, or a service naming
// no loaded strategy stops the gateway with a ConfigError), reloaded when the folder changes (a failure keeps the
// previous version, logged and shown by `list`), and called through `route`, `place` and `balance`, which never fail:
// a throw, a rejection, a timeout or a wrong value is "no decision" (undefined), logged and counted.

/** The function each kind of strategy exports. */
const KIND_FUNCTION = { routing: "route", placement: "place", balance: "balance" } as const satisfies Record<
  StrategyKind,
  string
>
const KINDS = Object.keys(KIND_FUNCTION) as ReadonlyArray<StrategyKind>
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

/** How often the folder is read even without a change event (network mounts may not deliver them). */
const POLL_INTERVAL = Duration.seconds(5)
/** Editors write a file in several steps; a change is read once the folder has been quiet this long. */
const SETTLE = Duration.millis(100)
/** One failure line per strategy per window; the next says how many were left out. */
const FAILURE_LOG_WINDOW_MS = 10_000
const OUTPUT_LINES_PER_WINDOW = 20
/** See `unchanged` in `scan`. */
const RACY_MS = 2_000
/** Strategies with their own metric series; past it, names count as `_unknown`. */
const MAX_RECORDERS = 256

/** One entry of `GET /v1/strategies`. */
export interface StrategyInfo {
  /** null: the file never loaded, so its name is unknown. */
  readonly name: string | null
  readonly kind: StrategyKind | null
  /** null: a name that services use but no file defines. */
  readonly file: string | null
  /** The services whose `strategy:` names it. */
  readonly usedBy: ReadonlyArray<string>
  /** ISO time the version in use was loaded. */
  readonly loadedAt: string | null
  /** Whether its worker thread is up (a strategy nothing calls is parked until its first call). */
  readonly running: boolean
  /** Why the file's latest version is not the one in use, or why the name has no strategy. */
  readonly error?: string
}

export interface StrategiesView {
  readonly dir: string
  readonly timeoutMs: number
  readonly strategies: ReadonlyArray<StrategyInfo>
}

interface Loaded {
  readonly name: string
  readonly kind: StrategyKind
  /** The file as `strategies_dir` spells it. */
  readonly file: string
  readonly hash: string
  readonly runner: Runner
  readonly loadedAt: number
}

interface FileState {
  readonly name: string
  readonly path: string
  /** Of the content last read, loaded or not, and when it was read. */
  stamp: string
  hash: string
  readAt: number
  loaded: Loaded | undefined
  error: string | undefined
  /** A duplicate's own declaration, to show it. */
  declared: { readonly name: string; readonly kind: StrategyKind } | undefined
}

/** A service as a strategy sees it: plain data, no command, environment or credentials. */
export const serviceView = (service: ServiceConfig): StrategyService => ({
  id: service.id,
  kind: service.kind,
  baseUrl: service.baseUrl,
  healthUrl: service.healthUrl,
  machines: service.machines,
  fallbackUrl: service.fallbackUrl,
  strategy: service.strategy,
  idleTimeoutMs: service.idleTimeoutMs,
  requestTimeoutMs: service.requestTimeoutMs,
  queueSize: service.queueSize
})

export const machineView = (machine: MachineConfig): StrategyMachine => ({
  id: machine.id,
  host: machine.host,
  labels: machine.labels
})

/** What a caller of `route` may hand over: Node's headers as they come, a body as bytes or text. */
export interface RouteInput {
  readonly method: string
  readonly path: string
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  readonly body?: string | Uint8Array | undefined
}

const normalizeRequest = (input: RouteInput): RoutingRequest => {
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(input.headers)) {
    if (value === undefined) continue
    const key = name.toLowerCase()
    const text = typeof value === "string" ? value : value.join(", ")
    headers[key] = key in headers ? `${headers[key]}, ${text}` : text
  }
  const body =
    input.body === undefined
      ? undefined
      : typeof input.body === "string"
        ? input.body
        : Buffer.from(input.body).toString("utf8")
  return { method: input.method, path: input.path, headers, ...(body === undefined ? {} : { body }) }
}

const show = (value: unknown) => {
  let text: string | undefined
  try {
    text = JSON.stringify(value)
  } catch {
    text = undefined
  }
  text ??= String(value)
  return text.length > 200 ? `${text.slice(0, 200)}...` : text
}

const declaredProblem = (declared: Declared): string | { readonly name: string; readonly kind: StrategyKind } => {
  const { name, kind } = declared
  if (typeof name !== "string" || !NAME.test(name)) {
    return `its default export needs a name (letters, digits, ".", "_", "-"; at most 64), got ${show(name)}`
  }
  if (typeof kind !== "string" || !KINDS.includes(kind as StrategyKind)) {
    return `strategy "${name}": kind must be one of ${KINDS.join(", ")}, got ${show(kind)}`
  }
  const fn = KIND_FUNCTION[kind as StrategyKind]
  if (!declared.functions.includes(fn)) return `strategy "${name}" is a ${kind} strategy but has no ${fn}() function`
  return { name, kind: kind as StrategyKind }
}

export class Strategies extends Effect.Service<Strategies>()("hestia/Strategies", {
  scoped: Effect.gen(function* () {
    const liveConfig = yield* LiveConfig
    const config = liveConfig.current()
    const fs = yield* FileSystem.FileSystem
    const dir = config.strategiesDir
    const timeoutMs = config.strategyTimeoutMs
    const fibers = yield* FiberSet.make()
    const runSync = Runtime.runSync(yield* Effect.runtime<never>())
    const lock = yield* Effect.makeSemaphore(1)

    const files = new Map<string, FileState>()
    let byName = new Map<string, Loaded>()
    /** Every runner not yet closed (loaded, being loaded, or replaced and retiring): the scope closes them all. */
    const live = new Set<Runner>()
    /** Why the folder itself could not be read on the last reload. */
    let folderError: string | undefined
    /** Whether the folder has existed: one that never did holds no strategies, one that went away keeps them. */
    let folderSeen = false
    /** Ends the folder's watch (its inotify watch died with the folder); it is set up again once the folder is back. */
    let endWatch: () => void = () => {}

    const failureBudget = makeLogBudget({ perWindow: 1, windowMs: FAILURE_LOG_WINDOW_MS, maxKeys: 256 })
    const outputBudget = makeLogBudget({
      perWindow: OUTPUT_LINES_PER_WINDOW,
      windowMs: FAILURE_LOG_WINDOW_MS,
      maxKeys: 256
    })
    const recorders = new Map<string, StrategyRecorder>()
    const recorderFor = (name: string) => {
      let recorder = recorders.get(name)
      if (recorder === undefined) {
        if (recorders.size >= MAX_RECORDERS) return recorderFor(UNKNOWN_STRATEGY)
        recorder = strategyRecorder(name)
        recorders.set(name, recorder)
      }
      return recorder
    }

    /** The services and the model endpoints' strategy as configured now (a reload replaces them). */
    let services = config.services
    let modelStrategy = config.modelStrategy
    const usedBy = (name: string) =>
      [...services.values()].filter((service) => service.strategy === name).map((service) => service.id)
    /** Something calls it: a service, or the model endpoints (`model_strategy`). */
    const inUse = (name: string) => modelStrategy === name || usedBy(name).length > 0

    const strategyOf = (fileName: string) => files.get(fileName)?.loaded?.name ?? null

    /** Output, warnings and abnormal ends of a worker, from its event handlers: logged within their budgets. */
    const onRunnerEvent = (fileName: string, path: string) => (event: RunnerEvent) =>
      runSync(
        Effect.gen(function* () {
          const strategy = strategyOf(fileName)
          const budget = event._tag === "Output" ? outputBudget : failureBudget
          const { allowed, suppressed } = yield* budget.take(`${event._tag}:${fileName}`)
          if (event._tag === "Ended" && strategy !== null) recorderFor(strategy).restart()
          if (!allowed) return
          const annotations = { strategy, file: path, ...(suppressed > 0 ? { suppressed } : {}) }
          switch (event._tag) {
            case "Output":
              return yield* Effect.logInfo(event.line).pipe(
                Effect.annotateLogs({ event: "strategy_output", stream: event.stream, ...annotations })
              )
            case "Warning":
              return yield* Effect.logWarning(event.message).pipe(
                Effect.annotateLogs({ event: "strategy_warning", ...annotations })
              )
            case "Ended":
              return yield* Effect.logWarning(`strategy worker ended: ${event.reason}`).pipe(
                Effect.annotateLogs({ event: "strategy_worker_ended", reason: event.reason, ...annotations })
              )
          }
        })
      )

    /** Bundle, start and check one file's new content. */
    const load = (read: Extract<FileRead, { _tag: "Read" }>) =>
      Effect.gen(function* () {
        const path = Path.join(dir, read.name)
        const bundled = yield* bundle(Path.resolve(path), read.source).pipe(
          Effect.mapError((error) => new StrategyLoadFailed({ file: path, problem: error.problem }))
        )
        const { runner, declared } = yield* startRunner({
          file: path,
          bundled,
          timeoutMs,
          fibers,
          onEvent: onRunnerEvent(read.name, path),
          live
        })
        const checked = declaredProblem(declared)
        if (typeof checked === "string") {
          yield* runner.close
          return yield* new StrategyLoadFailed({ file: path, problem: checked })
        }
        return {
          name: checked.name,
          kind: checked.kind,
          file: path,
          hash: read.hash,
          runner,
          loadedAt: yield* Clock.currentTimeMillis
        } satisfies Loaded
      })

    /** A replaced version is closed once the calls it may still be answering are past their limit. */
    const retire = (runner: Runner) =>
      FiberSet.run(fibers, Effect.sleep(Duration.millis(timeoutMs)).pipe(Effect.zipRight(runner.close)))

    const logLoadFailure = (error: StrategyLoadFailed, kept: Loaded | undefined) =>
      Effect.logError(`strategy ${error.message}${kept === undefined ? "" : ` (version loaded before kept)`}`).pipe(
        Effect.annotateLogs({
          event: "strategy_load_failed",
          file: error.file,
          error: error.problem,
          kept: kept?.name ?? null
        })
      )

    /**
     * Read the folder and apply what changed. At start every problem is a ConfigError; on reload each one is kept
     * beside the file (the version loaded before stays) and the rest of the folder still applies.
     */
    const scan = (phase: "start" | "reload") =>
      Effect.gen(function* () {
        const scannedAt = yield* Clock.currentTimeMillis
        // A file written shortly before it was read may be written again within the same timestamp tick (same size,
        // same mtime): its stamp is trusted only once it was older than RACY_MS when read ("racy git").
        const unchanged = (name: string, stamp: string, mtimeMs: number) => {
          const state = files.get(name)
          return state !== undefined && state.stamp === stamp && mtimeMs < state.readAt - RACY_MS
        }
        const listing = yield* Effect.either(
          readFolder(dir, unchanged).pipe(Effect.provideService(FileSystem.FileSystem, fs))
        )
        if (Either.isLeft(listing)) {
          const problem = listing.left
          if (phase === "start") {
            if (problem.missing) return false
            return yield* new ConfigError({ file: dir, path: "", problem: `strategies_dir ${problem.problem}` })
          }
          if (problem.missing && !folderSeen) return false
          if (problem.missing) endWatch()
          const message = problem.missing
            ? "the folder is gone; the strategies loaded before stay"
            : `${problem.problem}; the strategies loaded before stay`
          if (folderError !== message) {
            folderError = message
            yield* Effect.logError(`strategies_dir ${dir}: ${message}`).pipe(
              Effect.annotateLogs({ event: "strategies_dir_failed", dir, error: message })
            )
          }
          return false
        }
        folderSeen = true
        folderError = undefined
        const reads = listing.right
        const present = new Set(reads.map((read) => read.name))
        const removed = [...files.values()].filter((state) => !present.has(state.name))

        const unreadable: Array<Extract<FileRead, { _tag: "Unreadable" }>> = []
        const changed: Array<Extract<FileRead, { _tag: "Read" }>> = []
        for (const read of reads) {
          if (read._tag === "Unchanged") continue
          if (read._tag === "Unreadable") {
            unreadable.push(read)
            continue
          }
          const state = files.get(read.name)
          if (state !== undefined && state.hash === read.hash) {
            // Touched, written back as it was, or read again while recent.
            state.stamp = read.stamp
            state.readAt = scannedAt
            continue
          }
          changed.push(read)
        }
        const results = yield* Effect.forEach(changed, (read) => Effect.either(load(read)), { concurrency: 4 })

        const fresh = new Map<string, Loaded>()
        const failed = new Map<string, StrategyLoadFailed>()
        changed.forEach((read, i) => {
          const result = results[i]!
          if (Either.isRight(result)) fresh.set(read.name, result.right)
          else failed.set(read.name, result.left)
        })

        // Names: a fresh version may not take a name another file holds. The file that held a name before keeps
        // it; fresh claimants of a name nobody held before are all refused (no file order decides).
        const rejected = new Map<string, { readonly loaded: Loaded; readonly others: ReadonlyArray<string> }>()
        const versionOf = (name: string) =>
          rejected.has(name) ? files.get(name)?.loaded : (fresh.get(name) ?? files.get(name)?.loaded)
        for (;;) {
          const claims = new Map<string, Array<string>>()
          for (const name of present) {
            const version = versionOf(name)
            if (version !== undefined) claims.set(version.name, [...(claims.get(version.name) ?? []), name])
          }
          let settled = true
          for (const [strategy, claimants] of claims) {
            if (claimants.length < 2) continue
            const owner = byName.get(strategy)
            const ownerFile = owner === undefined ? undefined : Path.basename(owner.file)
            for (const name of claimants) {
              if (name === ownerFile || !fresh.has(name) || rejected.has(name)) continue
              const others = claimants.filter((other) => other !== name).map((other) => Path.join(dir, other))
              rejected.set(name, { loaded: fresh.get(name)!, others })
              settled = false
            }
          }
          if (settled) break
        }

        if (phase === "start") {
          const problems = [
            ...unreadable.map((read) => read.error),
            ...failed.values(),
            ...[...rejected].map(
              ([, { loaded, others }]) =>
                new StrategyLoadFailed({
                  file: loaded.file,
                  problem: `duplicate strategy name "${loaded.name}" (also in ${others.join(", ")})`
                })
            )
          ].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0))
          if (problems.length > 0) {
            yield* Effect.forEach(fresh.values(), (loaded) => loaded.runner.close, { discard: true })
            const first = problems[0]!
            return yield* new ConfigError({ file: first.file, path: "", problem: first.problem })
          }
        }

        // Before anything is visible: refused duplicates end, and a fresh strategy no service names is parked (it
        // costs no thread until something calls it; parked later, a first call could be cut off by the parking).
        for (const [name, { loaded }] of rejected) {
          fresh.delete(name)
          yield* loaded.runner.close
        }
        for (const loaded of fresh.values()) if (!inUse(loaded.name)) yield* loaded.runner.park

        // Apply in one step (nothing yields in between): `list` and the calls never see half a reload.
        const after: Array<Effect.Effect<void>> = []
        const stateOf = (name: string, stamp: string, hash: string) => {
          let state = files.get(name)
          if (state === undefined) {
            state = {
              name,
              path: Path.join(dir, name),
              stamp,
              hash,
              readAt: scannedAt,
              loaded: undefined,
              error: undefined,
              declared: undefined
            }
            files.set(name, state)
          }
          state.stamp = stamp
          state.hash = hash
          state.readAt = scannedAt
          return state
        }
        for (const state of removed) {
          files.delete(state.name)
          const { loaded } = state
          if (loaded === undefined) continue
          after.push(
            retire(loaded.runner),
            Effect.logInfo(`strategy "${loaded.name}" removed with its file ${state.path}`).pipe(
              Effect.annotateLogs({ event: "strategy_removed", strategy: loaded.name, file: state.path })
            )
          )
        }
        for (const read of unreadable) {
          const state = stateOf(read.name, read.stamp, "")
          state.error = read.error.problem
          state.declared = undefined
          after.push(logLoadFailure(read.error, state.loaded))
        }
        for (const read of changed) {
          const state = stateOf(read.name, read.stamp, read.hash)
          const failure = failed.get(read.name)
          const duplicate = rejected.get(read.name)
          if (failure !== undefined) {
            state.error = failure.problem
            state.declared = undefined
            after.push(logLoadFailure(failure, state.loaded))
          } else if (duplicate !== undefined) {
            const error = new StrategyLoadFailed({
              file: state.path,
              problem: `duplicate strategy name "${duplicate.loaded.name}" (also in ${duplicate.others.join(", ")})`
            })
            state.error = error.problem
            state.declared = { name: duplicate.loaded.name, kind: duplicate.loaded.kind }
            after.push(logLoadFailure(error, state.loaded))
          } else {
            const loaded = fresh.get(read.name)!
            const previous = state.loaded
            state.loaded = loaded
            state.error = undefined
            state.declared = undefined
            recorderFor(loaded.name)
            if (previous !== undefined) after.push(retire(previous.runner))
            after.push(
              Effect.logInfo(
                `strategy "${loaded.name}" (${loaded.kind}) loaded from ${loaded.file}${previous === undefined ? "" : " (new version)"}`
              ).pipe(
                Effect.annotateLogs({
                  event: "strategy_loaded",
                  strategy: loaded.name,
                  kind: loaded.kind,
                  file: loaded.file,
                  replaced: previous?.name ?? null
                })
              )
            )
          }
        }
        const before = byName
        byName = new Map(
          [...files.values()].flatMap((state) =>
            state.loaded === undefined ? [] : [[state.loaded.name, state.loaded]]
          )
        )
        // A duplicate whose name was just freed (its holder removed or renamed) is read again by the next scan.
        let retry = false
        for (const state of files.values()) {
          const name = state.declared?.name
          if (name !== undefined && before.has(name) && !byName.has(name)) {
            state.stamp = ""
            state.hash = ""
            retry = true
          }
        }
        yield* Effect.all(after, { discard: true })
        return retry
      })

    const notLoaded = (name: string) => {
      const loaded = [...byName.keys()].sort()
      return (
        `no strategy named "${name}" in strategies_dir ${dir} ` +
        `(${loaded.length === 0 ? "none loaded" : `loaded: ${loaded.join(", ")}`})`
      )
    }

    /**
     * Every `strategy:` names a loaded strategy of a kind its service can use — routing for any service, placement
     * for one that is started on machines, balance for one with `instances:` — and `model_strategy` a routing one.
     */
    const check = (settings: Pick<Settings, "services" | "modelStrategy" | "source">) =>
      Effect.gen(function* () {
        const refuse = (path: string, problem: string) => new ConfigError({ file: settings.source, path, problem })
        for (const service of settings.services.values()) {
          const name = service.strategy
          if (name === undefined) continue
          const path = `services.${service.id}.strategy`
          const kind = byName.get(name)?.kind
          if (kind === undefined) return yield* refuse(path, notLoaded(name))
          if (kind === "balance" && service.instances.length === 0) {
            return yield* refuse(
              path,
              `"${name}" is a balance strategy: it picks one of a service's instances:, and ${service.id} has none`
            )
          }
          if (kind === "placement" && service.instances.length > 0) {
            return yield* refuse(
              path,
              `"${name}" is a placement strategy: it orders the machines a start tries, and a service with instances: starts none (a balance strategy picks among them)`
            )
          }
        }
        const model = settings.modelStrategy
        if (model === undefined) return
        const kind = byName.get(model)?.kind
        if (kind === undefined) return yield* refuse("model_strategy", notLoaded(model))
        if (kind !== "routing") {
          return yield* refuse(
            "model_strategy",
            `"${model}" is a ${kind} strategy: the model endpoints need a routing strategy (route(request) → a service id)`
          )
        }
      })

    // Reloads and retirements first (they may be starting workers), then every worker still up.
    yield* Effect.addFinalizer(() =>
      FiberSet.clear(fibers).pipe(
        Effect.zipRight(Effect.forEach([...live], (runner) => runner.close, { discard: true }))
      )
    )
    yield* scan("start")
    yield* check(config)
    // A reload naming a strategy no plugin has is refused as a start would be; an applied one updates usedBy (and a
    // strategy it names now, parked until then, gets its thread at its first call).
    yield* liveConfig.follow({
      check,
      apply: (next) =>
        Effect.sync(() => {
          services = next.services
          modelStrategy = next.modelStrategy
        })
    })

    const reload = lock.withPermits(1)(
      // At most twice: the second read picks up duplicates whose name the first one freed.
      scan("reload").pipe(
        Effect.flatMap((retry) => (retry ? scan("reload") : Effect.succeed(false))),
        Effect.catchAllCause((cause) =>
          Effect.logError("strategies reload failed", cause).pipe(
            Effect.annotateLogs({ event: "strategies_reload_failed" })
          )
        )
      )
    )
    // A change event starts a read of the folder once it has been quiet for SETTLE; a slow poll catches what events
    // miss (some network mounts). node:fs's watch rather than the platform's: that one stats the file names it is
    // given relative to the working directory, and is set up asynchronously, after a first change could be missed.
    const changes = yield* Queue.sliding<void>(1)
    const watching = yield* Deferred.make<void>()
    const watchOnce = Effect.scoped(
      Effect.gen(function* () {
        const ended = yield* Deferred.make<void>()
        yield* Effect.acquireRelease(
          Effect.try(() => {
            const watcher = NodeFs.watch(dir, () => Queue.unsafeOffer(changes, undefined))
            watcher.on("error", () => Deferred.unsafeDone(ended, Exit.void))
            endWatch = () => Deferred.unsafeDone(ended, Exit.void)
            return watcher
          }),
          (watcher) => Effect.sync(() => watcher.close())
        )
        yield* Deferred.succeed(watching, undefined)
        // A change right before the watch began is not missed.
        yield* Queue.offer(changes, undefined)
        yield* Deferred.await(ended)
      })
    ).pipe(
      Effect.ignore,
      // The folder does not exist (yet), or went away: try again.
      Effect.zipRight(Deferred.succeed(watching, undefined)),
      Effect.zipRight(Effect.sleep(POLL_INTERVAL)),
      Effect.forever
    )
    const settle: Effect.Effect<void> = Effect.sleep(SETTLE).pipe(
      Effect.zipRight(Queue.takeAll(changes)),
      Effect.flatMap((more) => (Chunk.isEmpty(more) ? Effect.void : settle))
    )
    yield* FiberSet.run(fibers, watchOnce)
    yield* FiberSet.run(
      fibers,
      Queue.take(changes).pipe(Effect.zipRight(settle), Effect.zipRight(reload), Effect.forever)
    )
    yield* FiberSet.run(fibers, reload.pipe(Effect.delay(POLL_INTERVAL), Effect.forever))
    yield* Deferred.await(watching)

    /** Run one call; any failure is logged (within its budget), counted, and becomes undefined. */
    const decide = <A>(
      name: string,
      kind: StrategyKind,
      args: ReadonlyArray<unknown>,
      accept: (value: unknown) => Either.Either<A | undefined, string>
    ) =>
      Effect.gen(function* () {
        const loaded = byName.get(name)
        const recorder = recorderFor(loaded === undefined ? UNKNOWN_STRATEGY : name)
        const started = yield* Clock.currentTimeNanos
        const outcome = yield* Effect.either(
          loaded === undefined
            ? Effect.fail(
                new StrategyCallFailed({
                  strategy: name,
                  reason: "unavailable",
                  detail: "no strategy of that name is loaded"
                })
              )
            : loaded.kind !== kind
              ? Effect.fail(
                  new StrategyCallFailed({
                    strategy: name,
                    reason: "unavailable",
                    detail: `it is a ${loaded.kind} strategy, called for ${kind}`
                  })
                )
              : loaded.runner.call(name, KIND_FUNCTION[kind], args).pipe(
                  Effect.flatMap((value) =>
                    Either.match(accept(value), {
                      onLeft: (detail) =>
                        Effect.fail(new StrategyCallFailed({ strategy: name, reason: "invalid_result", detail })),
                      onRight: Effect.succeed
                    })
                  )
                )
        )
        recorder.call(Number((yield* Clock.currentTimeNanos) - started) / 1e9)
        if (Either.isRight(outcome)) return outcome.right
        const failure = outcome.left
        recorder.failure(failure.reason)
        const { allowed, suppressed } = yield* failureBudget.take(
          `call:${loaded === undefined ? UNKNOWN_STRATEGY : name}`
        )
        if (allowed) {
          yield* Effect.logWarning(`${failure.message}; the default rule decides`).pipe(
            Effect.annotateLogs({
              event: "strategy_failed",
              strategy: name,
              reason: failure.reason,
              error: failure.detail,
              ...(suppressed > 0 ? { suppressed } : {})
            })
          )
        }
        return undefined
      })

    const isNothing = (value: unknown) => value === undefined || value === null

    return {
      /** `GET /v1/strategies`: every strategy file, the error of its latest version, and names used but missing. */
      list: Effect.fn("Strategies.list")(function* () {
        const entries: Array<StrategyInfo> = []
        const iso = (ms: number) => new Date(ms).toISOString()
        for (const state of [...files.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
          const { loaded, error, declared } = state
          entries.push({
            name: loaded?.name ?? declared?.name ?? null,
            kind: loaded?.kind ?? declared?.kind ?? null,
            file: state.path,
            usedBy: loaded === undefined ? [] : usedBy(loaded.name),
            loadedAt: loaded === undefined ? null : iso(loaded.loadedAt),
            running: loaded?.runner.running() ?? false,
            ...(error === undefined ? {} : { error })
          })
        }
        const missing = new Set(
          [...[...services.values()].map((service) => service.strategy), modelStrategy].flatMap((name) =>
            name === undefined || byName.has(name) ? [] : [name]
          )
        )
        for (const name of missing) {
          entries.push({
            name,
            kind: null,
            file: null,
            usedBy: usedBy(name),
            loadedAt: null,
            running: false,
            error: `no file in ${dir} defines it (any more); calls fall back to the default rule`
          })
        }
        if (folderError !== undefined) {
          entries.push({
            name: null,
            kind: null,
            file: dir,
            usedBy: [],
            loadedAt: null,
            running: false,
            error: folderError
          })
        }
        return { dir, timeoutMs, strategies: entries } satisfies StrategiesView
      }),

      /** Read the folder now (the watcher and the poll do it on their own). */
      reload: Effect.fn("Strategies.reload")(function* () {
        yield* reload
      }),

      /** The kind of the loaded strategy of that name, if any. */
      kindOf: (name: string): StrategyKind | undefined => byName.get(name)?.kind,

      /** The ConfigError a start would give for services naming strategies that are not loaded (live config). */
      check,

      /**
       * A routing strategy's service id for the request; undefined: no decision. Untraced, as `balance`: it may run
       * for every request, and a span per call costs more than the call (~15 µs; see bench scenario 7).
       */
      route: Effect.fnUntraced(function* (name: string, request: RouteInput) {
        return yield* decide<string>(name, "routing", [normalizeRequest(request)], (value) =>
          isNothing(value)
            ? Either.right(undefined)
            : typeof value === "string" && value !== ""
              ? Either.right(value)
              : Either.left(`returned ${show(value)}, not a service id (a string) or undefined`)
        )
      }),

      /** A placement strategy's machine ids, each one of `machines`, in preference order; undefined: no decision. */
      place: Effect.fn("Strategies.place")(function* (
        name: string,
        service: ServiceConfig,
        machines: ReadonlyArray<MachineConfig>,
        context: PlacementContext
      ) {
        const ids = new Set(machines.map((machine) => machine.id))
        return yield* decide<ReadonlyArray<string>>(
          name,
          "placement",
          [serviceView(service), machines.map(machineView), context],
          (value) => {
            if (isNothing(value)) return Either.right(undefined)
            if (!Array.isArray(value) || value.length === 0 || !value.every((id) => typeof id === "string")) {
              return Either.left(`returned ${show(value)}, not a non-empty list of machine ids`)
            }
            const unknown = value.filter((id) => !ids.has(id))
            if (unknown.length > 0) return Either.left(`returned machines that are not candidates: ${show(unknown)}`)
            return Either.right([...new Set<string>(value)])
          }
        )
      }),

      /** A balance strategy's pick among `instances` (the caller's own object); undefined: no decision. */
      balance: Effect.fnUntraced(function* <I extends BalanceInstance>(
        name: string,
        service: ServiceConfig,
        instances: ReadonlyArray<I>
      ) {
        return yield* decide<I>(
          name,
          "balance",
          [
            serviceView(service),
            instances.map(({ url, healthy, inFlight, labels }) => ({ url, healthy, inFlight, labels }))
          ],
          (value) => {
            if (isNothing(value)) return Either.right(undefined)
            const url = typeof value === "object" ? (value as { url?: unknown }).url : undefined
            const picked = instances.find((instance) => instance.url === url)
            return picked === undefined
              ? Either.left(`returned ${show(value)}, not one of the instances it was given`)
              : Either.right(picked)
          }
        )
      })
    }
  }),
  dependencies: [LiveConfig.Default]
}) {}
