import { type ChildProcess, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { connect } from "node:net"
import { StringDecoder } from "node:string_decoder"
import { Clock, Deferred, Effect, Exit, FiberId, Layer, Option, Runtime, Schedule, type Scope } from "effect"
import { HestiaConfig, type ServiceConfig } from "../config/HestiaConfig.ts"
import { PortInUse, ProcessExited, SpawnFailed } from "../domain/Errors.ts"
import type { Target } from "../domain/Placement.ts"
import { type LogStream, MAX_LINE_CHARS, ServiceLogs } from "../observability/ServiceLogs.ts"
import { type ProcessRecord, ProcessRecords } from "../store/ProcessRecords.ts"
import { Orchestrator, type OrchestratorShape } from "./Orchestrator.ts"

interface Child {
  readonly serviceId: string
  readonly pid: number
  readonly exit: Deferred.Deferred<{ code: number | null; signal: string | null }>
}

// ---------------------------------------------------------------------------
// Processes of an earlier run: the gateway is not their parent, so /proc (Linux) is how they are told apart.
// ---------------------------------------------------------------------------

const readProc = (path: string) => {
  try {
    return readFileSync(path, "utf8")
  } catch {
    return undefined
  }
}

const bootId = readProc("/proc/sys/kernel/random/boot_id")?.trim()

/** Fields of /proc/PID/stat after the command name: [0] state, [19] start time in clock ticks since boot. */
const statFields = (pid: number) => {
  const stat = readProc(`/proc/${pid}/stat`)
  return stat === undefined ? undefined : stat.slice(stat.lastIndexOf(")") + 2).split(" ")
}

/** Boot id + start time: a later process that reuses the pid (or a pid after a reboot) does not match. */
const identityOf = (pid: number): string | null => {
  const fields = statFields(pid)
  return bootId === undefined || fields === undefined ? null : `${bootId}:${fields[19]}`
}

/** Alive and not a zombie (an orphan whose init never reaps it still answers kill 0). */
const isRunning = (pid: number) => {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  return statFields(pid)?.[0] !== "Z"
}

/** The recorded process is still the one this record names. */
const isSameProcess = (record: ProcessRecord) =>
  isRunning(record.pid) && (record.identity === null || identityOf(record.pid) === record.identity)

const self = { pid: process.pid, identity: identityOf(process.pid) }

/** Spawned by another gateway that still runs (two on one database): neither adopted nor stopped from here. */
const ownedByAnotherGateway = (record: ProcessRecord) =>
  record.ownerPid !== null &&
  record.ownerPid !== self.pid &&
  isRunning(record.ownerPid) &&
  (record.ownerIdentity === null || identityOf(record.ownerPid) === record.ownerIdentity)

/**
 * The gateway's own secrets: a service never inherits them (one that needs a value passes it in its `env:`).
 * Everything else of the gateway's environment is inherited, as a shell would.
 */
export const GATEWAY_SECRETS: ReadonlyArray<string> = [
  "HESTIA_API_KEYS",
  "HESTIA_API_KEY",
  "HESTIA_DASHBOARD_PASSWORD",
  "SEMAPHORE_API_KEY",
  "SEMAPHORE_USERNAME",
  "SEMAPHORE_PASSWORD"
]

const childEnvironment = (service: ServiceConfig): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const name of GATEWAY_SECRETS) delete env[name]
  return { ...env, ...service.env }
}

const LOOPBACK = new Set(["localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0"])

/**
 * A local service's port must be free before its process is spawned: if something else already answers there, the
 * new process would die of EADDRINUSE while the other one answered its health URL, and requests would reach the
 * wrong process.
 */
const portFree = (service: ServiceConfig, target: Target) => {
  const url = new URL(target.baseUrl)
  if (!LOOPBACK.has(url.hostname)) return Effect.void
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80))
  const host = url.hostname.replace(/^\[|\]$/g, "")
  return Effect.async<boolean>((resume) => {
    const socket = connect({ host: host === "0.0.0.0" ? "127.0.0.1" : host, port })
    const done = (inUse: boolean) => {
      socket.destroy()
      resume(Effect.succeed(inUse))
    }
    socket.setTimeout(1_000, () => done(false))
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
    return Effect.sync(() => socket.destroy())
  }).pipe(
    Effect.flatMap((inUse) =>
      inUse ? Effect.fail(new PortInUse({ serviceId: service.id, address: `${url.hostname}:${port}` })) : Effect.void
    )
  )
}

/** Signal the child's whole process group: a shell wrapper's children go too. */
const signalGroup = (pid: number, signal: NodeJS.Signals) => {
  try {
    process.kill(-pid, signal)
  } catch {
    // already gone
  }
}

/**
 * Splits a child's output into lines as it arrives. A line never grows past MAX_LINE_CHARS in memory: a longer one
 * is passed on at that length and the rest of it, up to its newline, is dropped.
 */
export const lineSplitter = (stream: NodeJS.ReadableStream, onLine: (line: string) => void) => {
  const decoder = new StringDecoder("utf8")
  let partial = ""
  let discarding = false
  const emit = (line: string) => onLine(line.endsWith("\r") ? line.slice(0, -1) : line)
  stream.on("data", (chunk: Buffer | string) => {
    const text = typeof chunk === "string" ? chunk : decoder.write(chunk)
    let start = 0
    for (let newline = text.indexOf("\n"); newline !== -1; newline = text.indexOf("\n", start)) {
      if (!discarding) emit(partial + text.slice(start, Math.min(newline, start + MAX_LINE_CHARS)))
      partial = ""
      discarding = false
      start = newline + 1
    }
    if (discarding) return
    partial += text.slice(start)
    if (partial.length > MAX_LINE_CHARS) {
      emit(partial)
      partial = ""
      discarding = true
    }
  })
  stream.on("end", () => {
    const rest = partial + decoder.end()
    if (!discarding && rest !== "") emit(rest)
  })
}

/**
 * Local processes: spawns `command` in its own process group, logs its output, stops it with SIGTERM and,
 * after `stop_grace_ms`, SIGKILL. Every group still alive when the gateway exits is killed.
 */
export const make = Effect.gen(function* () {
  // Output lines are recorded synchronously from the stream's callback: nothing is forked per line.
  const runSync = Runtime.runSync(yield* Effect.runtime<never>())
  const logs = yield* ServiceLogs
  const store = yield* ProcessRecords
  const config = yield* HestiaConfig
  const scope: Scope.Scope = yield* Effect.scope
  const children = new Map<string, Child>()

  const killAllNow = () => {
    for (const child of children.values()) signalGroup(child.pid, "SIGKILL")
  }
  // A last resort when the gateway exits without running finalizers (uncaught error, process.exit).
  process.on("exit", killAllNow)

  /** Each line of a child's output goes to the service's log ring and to the gateway's own log. */
  const pipeOutput = (serviceId: string, pid: number, stream: NodeJS.ReadableStream | null, name: LogStream) => {
    if (stream === null) return
    lineSplitter(stream, (line) => {
      logs.append(serviceId, name, line)
      runSync(Effect.logInfo(line).pipe(Effect.annotateLogs({ event: "process_output", serviceId, pid, stream: name })))
    })
  }

  const terminate = (child: Child, graceMs: number) =>
    Effect.gen(function* () {
      signalGroup(child.pid, "SIGTERM")
      const exited = yield* Deferred.await(child.exit).pipe(Effect.timeout(graceMs), Effect.option)
      if (exited._tag === "None") {
        yield* Effect.logWarning("process ignored SIGTERM, sending SIGKILL").pipe(
          Effect.annotateLogs({ pid: child.pid, graceMs })
        )
      }
      // The leader may be gone while others in its group live on.
      signalGroup(child.pid, "SIGKILL")
      yield* Deferred.await(child.exit).pipe(Effect.timeout(1_000), Effect.ignore)
      yield* store.forgetProcess(child.serviceId, child.pid)
    })

  /** A process the gateway did not spawn this run: its exit is seen by polling. */
  const watchForeign = (serviceId: string, pid: number): Effect.Effect<Child> =>
    Effect.gen(function* () {
      const exit = yield* Deferred.make<{ code: number | null; signal: string | null }>()
      yield* Effect.forkIn(
        Effect.repeat(
          Effect.sync(() => isRunning(pid)),
          {
            schedule: Schedule.spaced("250 millis"),
            while: (running) => running
          }
        ).pipe(Effect.zipRight(Deferred.succeed(exit, { code: null, signal: null }))),
        scope
      )
      return { serviceId, pid, exit }
    })

  const spawnChild = (service: ServiceConfig) =>
    Effect.async<Child, SpawnFailed>((resume) => {
      const [file, ...args] = service.command!
      const commandText = service.command!.join(" ")
      let child: ChildProcess
      try {
        child = spawn(file!, args, {
          cwd: service.cwd,
          env: childEnvironment(service),
          detached: true,
          stdio: ["ignore", "pipe", "pipe"]
        })
      } catch (error) {
        return resume(
          Effect.fail(new SpawnFailed({ serviceId: service.id, command: commandText, reason: String(error) }))
        )
      }
      child.once("error", (error) =>
        resume(Effect.fail(new SpawnFailed({ serviceId: service.id, command: commandText, reason: error.message })))
      )
      child.once("spawn", () => {
        const done = Deferred.unsafeMake<{ code: number | null; signal: string | null }>(FiberId.none)
        child.once("exit", (code, signal) => Deferred.unsafeDone(done, Exit.succeed({ code, signal })))
        pipeOutput(service.id, child.pid!, child.stdout, "stdout")
        pipeOutput(service.id, child.pid!, child.stderr, "stderr")
        resume(Effect.succeed({ serviceId: service.id, pid: child.pid!, exit: done }))
      })
    })

  const start: OrchestratorShape["start"] = (service, target) =>
    Effect.gen(function* () {
      const previous = children.get(service.id)
      if (previous !== undefined) {
        // A start after a crash or a failed attempt: make sure no older copy holds the port.
        yield* terminate(previous, service.stopGraceMs)
        children.delete(service.id)
      }
      yield* portFree(service, target)
      const child = yield* spawnChild(service)
      children.set(service.id, child)
      // Recorded before readiness: a gateway killed mid-start finds it at its next start.
      yield* store.recordProcess({
        serviceId: service.id,
        machineId: target.machineId,
        pid: child.pid,
        pgid: child.pid,
        identity: identityOf(child.pid),
        command: service.command!.join(" "),
        startedAt: yield* Clock.currentTimeMillis,
        ownerPid: self.pid,
        ownerIdentity: self.identity
      })
      yield* Effect.logInfo("process spawned").pipe(
        Effect.annotateLogs({ event: "process_spawned", serviceId: service.id, pid: child.pid })
      )
      return {
        pid: child.pid,
        exited: Deferred.await(child.exit).pipe(
          Effect.flatMap(({ code, signal }) =>
            Effect.fail(new ProcessExited({ serviceId: service.id, pid: child.pid, code, signal }))
          )
        )
      }
    })

  const stop: OrchestratorShape["stop"] = (service) =>
    Effect.gen(function* () {
      const child = children.get(service.id)
      if (child === undefined) return
      yield* terminate(child, service.stopGraceMs)
      if (children.get(service.id) === child) children.delete(service.id)
      yield* Effect.logInfo("process stopped").pipe(
        Effect.annotateLogs({ event: "process_stopped", serviceId: service.id, pid: child.pid })
      )
    })

  /** After a restart: the process group an earlier run recorded for this service on `target`, if it still runs. */
  const adopt = (service: ServiceConfig, target: Target) =>
    Effect.gen(function* () {
      const record = (yield* store.processes()).find((r) => r.serviceId === service.id)
      if (
        record === undefined ||
        record.machineId !== target.machineId ||
        ownedByAnotherGateway(record) ||
        !isSameProcess(record)
      ) {
        return Option.none()
      }
      const child = yield* watchForeign(service.id, record.pid)
      children.set(service.id, child)
      yield* Effect.logInfo("process adopted").pipe(
        Effect.annotateLogs({ event: "process_adopted", serviceId: service.id, pid: record.pid })
      )
      return Option.some({
        pid: record.pid,
        exited: Deferred.await(child.exit).pipe(
          Effect.flatMap(() =>
            Effect.fail(new ProcessExited({ serviceId: service.id, pid: record.pid, code: null, signal: null }))
          )
        )
      })
    })

  /** Stop what an earlier run recorded and did not stop (a gateway killed with SIGKILL), then forget it. */
  const reclaimRecord = (record: ProcessRecord, graceMs: number) =>
    Effect.gen(function* () {
      if (ownedByAnotherGateway(record)) {
        return yield* Effect.logWarning("a process of another gateway running on this database is left alone").pipe(
          Effect.annotateLogs({
            event: "process_owned_elsewhere",
            serviceId: record.serviceId,
            pid: record.pid,
            ownerPid: record.ownerPid
          })
        )
      }
      const adopted = children.get(record.serviceId)
      // A pid from another boot, or now someone else's, is left alone; a group whose leader died is still ours.
      const ours =
        adopted?.pid === record.pid ||
        (record.identity?.startsWith(`${bootId}:`) !== false && (isSameProcess(record) || !isRunning(record.pid)))
      if (ours) {
        if (isRunning(record.pid)) {
          yield* Effect.logWarning("stopping a process left running by an earlier run").pipe(
            Effect.annotateLogs({ event: "process_reclaimed", serviceId: record.serviceId, pid: record.pid })
          )
        }
        const child = adopted?.pid === record.pid ? adopted : yield* watchForeign(record.serviceId, record.pid)
        if (children.get(record.serviceId) === child) children.delete(record.serviceId)
        yield* terminate(child, graceMs)
      }
      yield* store.forgetProcess(record.serviceId, record.pid)
    })

  const reclaim = (service: ServiceConfig) =>
    Effect.gen(function* () {
      const records = (yield* store.processes()).filter((r) => r.serviceId === service.id)
      yield* Effect.forEach(records, (record) => reclaimRecord(record, service.stopGraceMs), { discard: true })
      return records.length > 0
    })

  // Services gone from the config are never restored by the registry: clean up after them now.
  const orphans = (yield* store.processes()).filter((r) => !config.services.has(r.serviceId))
  yield* Effect.forEach(orphans, (record) => reclaimRecord(record, 2_000), { discard: true })

  // The gateway stops: so does every process it still runs, each said in the log (the next start restores the rest).
  yield* Effect.addFinalizer(() =>
    Effect.forEach(
      children.values(),
      (child) =>
        Effect.logInfo(`${child.serviceId}: stopping its process (the gateway stops)`).pipe(
          Effect.annotateLogs({ event: "process_shutdown", serviceId: child.serviceId, pid: child.pid }),
          Effect.zipRight(terminate(child, 2_000))
        ),
      { concurrency: "unbounded", discard: true }
    ).pipe(
      Effect.ensuring(
        Effect.sync(() => {
          children.clear()
          process.off("exit", killAllNow)
        })
      )
    )
  )

  return { start, stop, adopt, reclaim } satisfies OrchestratorShape
})

/** Local processes only (every target is spawned here). */
export const layer = Layer.scoped(Orchestrator, make).pipe(Layer.provide(ServiceLogs.Default))
