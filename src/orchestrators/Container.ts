import {
  Chunk,
  Clock,
  Deferred,
  Effect,
  ExecutionStrategy,
  Exit,
  Layer,
  Option,
  Schedule,
  Scope,
  Stream,
  SubscriptionRef
} from "effect"
import { type ContainerSettings, HestiaConfig, type ServiceConfig } from "../config/HestiaConfig.ts"
import { ContainerExited, ContainerNotFound, ImageMissing, LOG_TAIL_LINES, ReadinessTimeout } from "../domain/Errors.ts"
import type { Target } from "../domain/Placement.ts"
import { type ContainerRecord, ContainerRows } from "../store/ContainerRows.ts"
import { ContainerRecords } from "./ContainerRecords.ts"
import * as DockerEngine from "./DockerEngine.ts"
import { Orchestrator, type OrchestratorShape } from "./Orchestrator.ts"

/** Put on the containers Hestia creates: which service it made them for (so `remove_on_stop` only removes those). */
export const CREATED_FOR_LABEL = "hestia.created_for"

/** Engine events that matter to a running container. */
const WATCHED_ACTIONS = ["die", "destroy", "health_status"]

/** After the event stream broke off (engine restarted, connection cut): how hard to get it back. */
const RESUBSCRIBE = Schedule.exponential("200 millis").pipe(Schedule.intersect(Schedule.recurs(5)))

/** How the container ended, as the engine's events (or a look after a lost stream) tell it. */
type Ended =
  | { readonly _tag: "Exited"; readonly exitCode: number | null }
  | { readonly _tag: "Lost"; readonly error: DockerEngine.EngineError }

/** A container this run started (or adopted, or paused), with what watches it. */
interface Running {
  readonly service: ServiceConfig
  readonly settings: ContainerSettings
  readonly machineId: string
  readonly engine: DockerEngine.DockerEngine
  readonly id: string
  readonly name: string
  readonly image: string
  readonly created: boolean
  readonly tty: boolean
  /** The event watch and the log follower; closed on stop (nothing is watched while paused). */
  readonly watchers: Scope.CloseableScope
  readonly ended: Deferred.Deferred<Ended>
  /** The HEALTHCHECK status as last seen (`starting`, `healthy`, `unhealthy`), if the container has one. */
  readonly health: SubscriptionRef.SubscriptionRef<string | undefined>
}

export interface MakeOptions {
  /** Also hands every output line to this (a per-service log ring, for instance); the JSON log always gets it. */
  readonly onOutput?: (serviceId: string, stream: "stdout" | "stderr", line: string) => Effect.Effect<void>
  readonly requestTimeoutMs?: number
}

const shortId = (id: string) => id.slice(0, 12)

/** The engine's create body for a service's `container:` block. */
export const createBody = (service: ServiceConfig, settings: ContainerSettings): Record<string, unknown> => ({
  Image: settings.image,
  ...(settings.command === undefined ? {} : { Cmd: settings.command }),
  Env: Object.entries(settings.env).map(([key, value]) => `${key}=${value}`),
  Labels: { [CREATED_FOR_LABEL]: service.id },
  ExposedPorts: Object.fromEntries(Object.keys(settings.ports).map((port) => [port, {}])),
  HostConfig: {
    PortBindings: Object.fromEntries(
      Object.entries(settings.ports).map(([port, host]) => {
        const colon = host.lastIndexOf(":")
        const binding =
          colon === -1
            ? { HostIp: "", HostPort: host }
            : { HostIp: host.slice(0, colon).replace(/^\[|\]$/g, ""), HostPort: host.slice(colon + 1) }
        return [port, [binding]]
      })
    ),
    Binds: settings.volumes,
    ...(settings.networkMode === undefined ? {} : { NetworkMode: settings.networkMode })
  }
})

/**
 * Containers on a Docker Engine API (Docker, or Podman's Docker-compatible service), local or remote: an existing
 * container by name, or one created from `container.image`. Started on demand, stopped (or paused) when idle, its
 * exit noticed through the engine's event stream, its output in the gateway's log. Containers it started are stopped
 * when the gateway exits; after a SIGKILL the next run adopts or stops them (the Store's `containers` table).
 */
export const makeWith = (options: MakeOptions = {}) =>
  Effect.gen(function* () {
    const config = yield* HestiaConfig
    const store = yield* ContainerRows
    const records = yield* ContainerRecords
    const fromEnv = Option.getOrUndefined(yield* DockerEngine.dockerHost)
    const scope: Scope.Scope = yield* Effect.scope
    // Forked now, so it closes after the finalizer below that stops the containers (which still needs the clients).
    const clients = yield* Scope.fork(scope, ExecutionStrategy.sequential)
    const engineOptions = options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }

    const engines = new Map<string, DockerEngine.DockerEngine>()
    /** One client (and socket pool) per engine address, for the gateway's lifetime. */
    const engineAt = (url: string) =>
      Effect.suspend(() => {
        const known = engines.get(url)
        if (known !== undefined) return Effect.succeed(known)
        return Effect.tap(Scope.extend(DockerEngine.make(url, engineOptions), clients), (engine) =>
          Effect.sync(() => engines.set(url, engine))
        )
      })
    const engineFor = (target: Target) => engineAt(DockerEngine.engineUrlFor(config, target.machineId, fromEnv))

    /** Running (or paused) containers this run is responsible for, by service. */
    const running = new Map<string, Running>()

    /** The log fields of a line about a service's container. */
    const fields = (event: string, service: ServiceConfig, container: { id: string }) => ({
      event,
      serviceId: service.id,
      containerId: shortId(container.id)
    })

    // -------------------------------------------------------------------------
    // Watching a running container: its events (exit, health) and its output
    // -------------------------------------------------------------------------

    const handleEvent = (entry: Running) => (event: DockerEngine.EngineEvent) => {
      if (event.action === "die") {
        const code = Number(event.attributes.exitCode ?? event.attributes.containerExitCode)
        return Deferred.succeed(entry.ended, { _tag: "Exited", exitCode: Number.isFinite(code) ? code : null })
      }
      if (event.action === "destroy") return Deferred.succeed(entry.ended, { _tag: "Exited", exitCode: null })
      if (event.action.startsWith("health_status")) {
        // Docker: `health_status: healthy`; Podman may put it in an attribute instead.
        const status = event.action.split(": ")[1] ?? event.attributes.health_status
        return status === undefined ? Effect.void : SubscriptionRef.set(entry.health, status)
      }
      return Effect.void
    }

    /** What a look at the container says: ended (no such container, or not running), or its health. */
    const settleFrom = (entry: Running, info: Option.Option<DockerEngine.ContainerInfo>) =>
      Effect.gen(function* () {
        if (Option.isNone(info)) return yield* Deferred.succeed(entry.ended, { _tag: "Exited", exitCode: null })
        if (!info.value.running && !info.value.paused) {
          return yield* Deferred.succeed(entry.ended, { _tag: "Exited", exitCode: info.value.exitCode })
        }
        if (info.value.health !== undefined) yield* SubscriptionRef.set(entry.health, info.value.health)
        return false
      })

    /** Subscribe first, then look: a change between the two is caught by one or the other. */
    const subscribe = (entry: Running) =>
      Effect.gen(function* () {
        const events = yield* Scope.extend(entry.engine.events(entry.id, WATCHED_ACTIONS), entry.watchers)
        return { events, info: yield* entry.engine.inspectContainer(entry.id) }
      })

    /** Follows the events until the container ends; a broken stream is taken up again (or the container is lost). */
    const watchEvents = (entry: Running, first: Stream.Stream<DockerEngine.EngineEvent, DockerEngine.EngineError>) =>
      Effect.gen(function* () {
        let events = first
        for (;;) {
          yield* Stream.runForEach(events, handleEvent(entry)).pipe(Effect.ignore)
          if (yield* Deferred.isDone(entry.ended)) return
          const again = yield* Effect.either(Effect.retry(subscribe(entry), RESUBSCRIBE))
          if (again._tag === "Left") {
            yield* Deferred.succeed(entry.ended, { _tag: "Lost", error: again.left })
            return
          }
          yield* settleFrom(entry, again.right.info)
          if (yield* Deferred.isDone(entry.ended)) return
          events = again.right.events
        }
      })

    const followLogs = (entry: Running, from: { since?: number; tail?: number }) =>
      entry.engine.logs(entry.id, { follow: true, tty: entry.tty, since: from.since, tail: from.tail }).pipe(
        Stream.runForEach(({ stream, line }) =>
          Effect.zipRight(
            Effect.logInfo(line).pipe(
              Effect.annotateLogs({ ...fields("container_output", entry.service, entry), stream })
            ),
            options.onOutput?.(entry.service.id, stream, line) ?? Effect.void
          )
        ),
        // The stream ends with the container; a broken one only costs output lines.
        Effect.ignore
      )

    /** Its last output lines, for the exit error. */
    const logTail = (entry: Running) =>
      entry.engine.logs(entry.id, { follow: false, tty: entry.tty, tail: LOG_TAIL_LINES }).pipe(
        Stream.map(({ line }) => line),
        Stream.runCollect,
        Effect.map(Chunk.toReadonlyArray),
        Effect.timeout(DockerEngine.DEFAULT_REQUEST_TIMEOUT_MS),
        Effect.orElseSucceed((): ReadonlyArray<string> => [])
      )

    /** Fails once the container has ended on its own, with its exit code and last output. */
    const exitedOf = (entry: Running): Effect.Effect<never, ContainerExited | DockerEngine.EngineError> =>
      Effect.gen(function* () {
        const ended = yield* Deferred.await(entry.ended)
        yield* records.state(entry.service.id, "exited")
        if (ended._tag === "Lost") return yield* ended.error
        return yield* new ContainerExited({
          engine: entry.engine.url,
          name: entry.name,
          containerId: entry.id,
          exitCode: ended.exitCode,
          logTail: yield* logTail(entry)
        })
      })

    /** With neither health_url nor warmup deciding: the container's own HEALTHCHECK says `healthy`. */
    const healthy = (entry: Running) =>
      Effect.gen(function* () {
        const startedAt = yield* Clock.currentTimeMillis
        let seen = 0
        let last = "none"
        yield* entry.health.changes.pipe(
          Stream.tap((status) =>
            Effect.sync(() => {
              seen++
              last = status ?? "none"
            })
          ),
          Stream.takeUntil((status) => status === "healthy"),
          Stream.runDrain,
          Effect.timeoutFail({
            duration: entry.service.startupTimeoutMs,
            onTimeout: () => undefined
          }),
          Effect.catchAll(() =>
            Effect.flatMap(
              Clock.currentTimeMillis,
              (now) =>
                new ReadinessTimeout({
                  serviceId: entry.service.id,
                  waitedMs: now - startedAt,
                  probes: seen,
                  lastProbe: `HEALTHCHECK ${last}`
                })
            )
          )
        )
        yield* Effect.annotateCurrentSpan("container.health", "healthy")
      })

    /** Takes charge of a container: watches its events (subscribed before anything else happens to it). */
    const track = (
      service: ServiceConfig,
      machineId: string,
      engine: DockerEngine.DockerEngine,
      info: DockerEngine.ContainerInfo,
      created: boolean
    ) =>
      Effect.gen(function* () {
        const entry: Running = {
          service,
          settings: service.container!,
          machineId,
          engine,
          id: info.id,
          name: info.name,
          image: info.image,
          created,
          tty: info.tty,
          watchers: yield* Scope.fork(scope, ExecutionStrategy.sequential),
          ended: yield* Deferred.make<Ended>(),
          health: yield* SubscriptionRef.make(info.health)
        }
        running.set(service.id, entry)
        yield* records.seen(service.id, {
          machineId,
          engine: engine.url,
          id: info.id,
          name: info.name,
          image: info.image,
          created,
          state: info.status
        })
        const events = yield* Scope.extend(engine.events(info.id, WATCHED_ACTIONS), entry.watchers)
        yield* Effect.forkIn(watchEvents(entry, events), entry.watchers)
        return entry
      })

    /** Closes the watchers and forgets the entry (if it is still the current one). */
    const release = (entry: Running) =>
      Effect.suspend(() => {
        if (running.get(entry.service.id) === entry) running.delete(entry.service.id)
        return Scope.close(entry.watchers, Exit.void)
      })

    const ensureImage = (service: ServiceConfig, engine: DockerEngine.DockerEngine, image: string) =>
      Effect.gen(function* () {
        if (yield* engine.imageExists(image)) return
        if (!service.container!.pull) {
          return yield* new ImageMissing({
            engine: engine.url,
            image,
            reason: "not present, and container.pull is off"
          })
        }
        const fields = { event: "image_pull", serviceId: service.id, image }
        yield* Effect.logInfo(`pulling ${image}`).pipe(Effect.annotateLogs(fields))
        yield* engine
          .pullImage(image, (line) => Effect.logInfo(`pull ${image}: ${line}`).pipe(Effect.annotateLogs(fields)))
          .pipe(
            Effect.catchTag(
              "PullFailed",
              (error) => new ImageMissing({ engine: engine.url, image, reason: `pull failed: ${error.reason}` })
            )
          )
        yield* Effect.logInfo(`pulled ${image}`).pipe(Effect.annotateLogs(fields))
      })

    /** The container by name, created from the image when there is none. */
    const findOrCreate = (service: ServiceConfig, engine: DockerEngine.DockerEngine) =>
      Effect.gen(function* () {
        const settings = service.container!
        const existing = yield* engine.inspectContainer(settings.name)
        if (Option.isSome(existing)) {
          return { info: existing.value, created: existing.value.labels[CREATED_FOR_LABEL] === service.id }
        }
        if (settings.image === undefined)
          return yield* new ContainerNotFound({ engine: engine.url, name: settings.name })
        yield* ensureImage(service, engine, settings.image)
        const id = yield* engine.createContainer({ name: settings.name, body: createBody(service, settings) })
        if (Option.isNone(id)) {
          return yield* new ImageMissing({
            engine: engine.url,
            image: settings.image,
            reason: "the engine has no such image"
          })
        }
        yield* Effect.logInfo(`container ${settings.name} created from ${settings.image}`).pipe(
          Effect.annotateLogs(fields("container_created", service, { id: id.value }))
        )
        const info = yield* engine.inspectContainer(id.value)
        if (Option.isNone(info)) return yield* new ContainerNotFound({ engine: engine.url, name: settings.name })
        return { info: info.value, created: true }
      })

    // -------------------------------------------------------------------------
    // The port
    // -------------------------------------------------------------------------

    // No span of its own: the registry's `Orchestrator.start` span wraps it, so the container's attributes land there.
    const start: OrchestratorShape["start"] = (service, target) =>
      Effect.gen(function* () {
        const settings = service.container!
        const engine = yield* engineFor(target)
        yield* Effect.annotateCurrentSpan({ "hestia.container.engine": engine.url, "container.name": settings.name })
        const previous = running.get(service.id)
        // A start after a crash or a failed attempt: the old watchers go; the container itself is this one again.
        if (previous !== undefined) yield* release(previous)

        const { info, created } = yield* findOrCreate(service, engine)
        yield* Effect.annotateCurrentSpan({ "container.id": info.id, "container.image.name": info.image })
        const entry = yield* track(service, target.machineId, engine, info, created)
        // Recorded before it runs: a gateway killed mid-start finds it at its next start.
        yield* store.recordContainer({
          serviceId: service.id,
          machineId: target.machineId,
          engine: engine.url,
          containerId: info.id,
          name: info.name,
          image: info.image,
          created,
          startedAt: yield* Clock.currentTimeMillis
        })

        const how = info.paused ? "unpaused" : info.running ? "already running" : "started"
        if (info.paused) yield* engine.unpauseContainer(info.id)
        else if (!info.running) yield* engine.startContainer(info.id)
        const after = yield* engine.inspectContainer(info.id)
        yield* settleFrom(entry, after)
        yield* records.state(service.id, Option.match(after, { onNone: () => "removed", onSome: (i) => i.status }))
        // Output from this start on; a container that was already up only from now.
        const from =
          how === "started" && Option.isSome(after) && after.value.startedAtSeconds !== undefined
            ? { since: after.value.startedAtSeconds }
            : { tail: 0 }
        yield* Effect.forkIn(followLogs(entry, from), entry.watchers)
        yield* Effect.annotateCurrentSpan("container.start", how)
        yield* Effect.logInfo(`container ${info.name} ${how}`).pipe(
          Effect.annotateLogs({ ...fields("container_started", service, info), how, engine: engine.url })
        )

        const exited = exitedOf(entry)
        if (target.healthUrl === undefined && Option.exists(after, (i) => i.hasHealthcheck)) {
          yield* Effect.raceFirst(healthy(entry), exited)
        }
        return { pid: undefined, exited }
      })

    /** Stop (or pause) and, for `remove_on_stop`, remove; the record goes unless the container is only paused. */
    const halt = (entry: Running, mode: "idle" | "shutdown") =>
      Effect.gen(function* () {
        yield* release(entry)
        const { engine, settings, service } = entry
        // Only a running container is paused; one that died (the reason for this stop, maybe) is stopped for good.
        const alive =
          settings.pauseOnIdle && mode === "idle" && !(yield* Deferred.isDone(entry.ended))
            ? Option.exists(yield* engine.inspectContainer(entry.id), (info) => info.running && !info.paused)
            : false
        if (alive) {
          yield* engine.pauseContainer(entry.id)
          // Kept: a paused container is still started, so a clean exit (or the next run) stops it.
          running.set(service.id, entry)
          yield* records.state(service.id, "paused")
          yield* Effect.logInfo(`container ${entry.name} paused`).pipe(
            Effect.annotateLogs(fields("container_paused", service, entry))
          )
          return
        }
        yield* stopContainer(engine, entry.id, service.stopGraceMs)
        const removed = settings.removeOnStop && entry.created
        if (removed) yield* engine.removeContainer(entry.id)
        yield* store.forgetContainer(service.id, entry.id)
        yield* records.state(service.id, removed ? "removed" : "exited")
        yield* Effect.logInfo(`container ${entry.name} ${removed ? "stopped and removed" : "stopped"}`).pipe(
          Effect.annotateLogs(fields("container_stopped", service, entry))
        )
      })

    /** A paused container cannot be stopped by every engine (Podman refuses): unpaused first. */
    const stopContainer = (engine: DockerEngine.DockerEngine, id: string, graceMs: number) =>
      Effect.gen(function* () {
        const info = yield* engine.inspectContainer(id)
        if (Option.isNone(info)) return
        if (info.value.paused) yield* engine.unpauseContainer(id)
        if (info.value.running || info.value.paused) yield* engine.stopContainer(id, Math.ceil(graceMs / 1000))
      })

    const stop: OrchestratorShape["stop"] = (service) =>
      Effect.gen(function* () {
        const entry = running.get(service.id)
        if (entry === undefined) return
        yield* halt(entry, "idle")
      })

    /** After a restart: the container an earlier run recorded for this service on `target`, if it still runs. */
    const adopt: OrchestratorShape["adopt"] = (service, target) =>
      Effect.gen(function* () {
        const record = (yield* store.containers()).find((r) => r.serviceId === service.id)
        if (record === undefined || record.machineId !== target.machineId || service.container === undefined) {
          return Option.none()
        }
        const engine = yield* engineAt(record.engine)
        const info = yield* engine.inspectContainer(record.containerId)
        if (Option.isNone(info) || !info.value.running || info.value.paused) return Option.none()
        // Without a health URL, a HEALTHCHECK must say healthy (the registry probes health_url itself).
        if (target.healthUrl === undefined && info.value.hasHealthcheck && info.value.health !== "healthy") {
          return Option.none()
        }
        const entry = yield* track(service, record.machineId, engine, info.value, record.created)
        const now = yield* entry.engine.inspectContainer(entry.id)
        yield* settleFrom(entry, now)
        if (yield* Deferred.isDone(entry.ended)) {
          yield* release(entry)
          return Option.none()
        }
        yield* Effect.forkIn(followLogs(entry, { tail: 0 }), entry.watchers)
        yield* Effect.logInfo(`container ${info.value.name} adopted`).pipe(
          Effect.annotateLogs(fields("container_adopted", service, info.value))
        )
        return Option.some({ pid: undefined, exited: exitedOf(entry) })
      }).pipe(
        // An engine that cannot be asked leaves nothing to adopt.
        Effect.catchAll(() => Effect.succeed(Option.none()))
      )

    /** Stop what an earlier run recorded and did not stop (a gateway killed with SIGKILL), then forget it. */
    const reclaimRecord = (record: ContainerRecord, graceMs: number, removeOnStop: boolean) =>
      Effect.gen(function* () {
        const adopted = running.get(record.serviceId)
        if (adopted !== undefined && adopted.id === record.containerId) yield* release(adopted)
        const engine = yield* engineAt(record.engine)
        const info = yield* engine.inspectContainer(record.containerId)
        if (Option.isSome(info) && (info.value.running || info.value.paused)) {
          yield* Effect.logWarning(`stopping container ${record.name}, left running by an earlier run`).pipe(
            Effect.annotateLogs({
              event: "container_reclaimed",
              serviceId: record.serviceId,
              containerId: shortId(record.containerId)
            })
          )
          yield* stopContainer(engine, record.containerId, graceMs)
        }
        if (Option.isSome(info) && removeOnStop && record.created) yield* engine.removeContainer(record.containerId)
        yield* store.forgetContainer(record.serviceId, record.containerId)
      }).pipe(
        // Kept for the next run: the engine could not be asked now.
        Effect.catchAll((error) =>
          Effect.logWarning(`could not stop container ${record.name} left by an earlier run: ${error.message}`).pipe(
            Effect.annotateLogs({ event: "container_reclaim_failed", serviceId: record.serviceId })
          )
        )
      )

    const reclaim: OrchestratorShape["reclaim"] = (service) =>
      Effect.gen(function* () {
        const left = (yield* store.containers()).filter((r) => r.serviceId === service.id)
        yield* Effect.forEach(
          left,
          (record) => reclaimRecord(record, service.stopGraceMs, service.container?.removeOnStop ?? false),
          { discard: true }
        )
        return left.length > 0
      })

    // Services gone from the config are never restored by the registry: clean up after them now.
    const orphans = (yield* store.containers()).filter((r) => !config.services.has(r.serviceId))
    yield* Effect.forEach(orphans, (record) => reclaimRecord(record, 2_000, false), { discard: true })

    // A clean exit stops every container this run started (paused ones too).
    yield* Effect.addFinalizer(() =>
      Effect.forEach(
        [...running.values()],
        (entry) =>
          halt(entry, "shutdown").pipe(
            Effect.catchAll((error) =>
              Effect.logWarning(`could not stop container ${entry.name}: ${error.message}`).pipe(
                Effect.annotateLogs(fields("container_stop_failed", entry.service, entry))
              )
            )
          ),
        { concurrency: "unbounded", discard: true }
      )
    )

    return { start, stop, adopt, reclaim } satisfies OrchestratorShape
  })

export const make = makeWith()

/** Containers only (every target is a container). */
export const layer = Layer.scoped(Orchestrator, make)
