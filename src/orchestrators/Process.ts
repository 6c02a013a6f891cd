import { type ChildProcess, spawn } from "node:child_process"
import * as readline from "node:readline"
import { Deferred, Effect, Exit, FiberId, Runtime } from "effect"
import { ProcessExited, SpawnFailed } from "../domain/Errors.ts"
import type { ServiceConfig } from "../HestiaConfig.ts"
import type { OrchestratorShape } from "../Orchestrator.ts"

interface Child {
  readonly process: ChildProcess
  readonly pid: number
  readonly exit: Deferred.Deferred<{ code: number | null; signal: string | null }>
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
 * Local processes: spawns `command` in its own process group, logs its output, stops it with SIGTERM and,
 * after `stop_grace_ms`, SIGKILL. Every group still alive when the gateway exits is killed.
 */
export const make = Effect.gen(function* () {
  const runtime = yield* Effect.runtime<never>()
  const runFork = Runtime.runFork(runtime)
  const children = new Map<string, Child>()

  const killAllNow = () => {
    for (const child of children.values()) signalGroup(child.pid, "SIGKILL")
  }
  // A last resort when the gateway exits without running finalizers (uncaught error, process.exit).
  process.on("exit", killAllNow)

  const pipeOutput = (serviceId: string, pid: number, stream: NodeJS.ReadableStream | null, name: string) => {
    if (stream === null) return
    readline.createInterface({ input: stream }).on("line", (line) => {
      runFork(Effect.logInfo(line).pipe(Effect.annotateLogs({ event: "process_output", serviceId, pid, stream: name })))
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
    })

  const spawnChild = (service: ServiceConfig) =>
    Effect.async<Child, SpawnFailed>((resume) => {
      const [file, ...args] = service.command!
      const commandText = service.command!.join(" ")
      let child: ChildProcess
      try {
        child = spawn(file!, args, {
          cwd: service.cwd,
          env: { ...process.env, ...service.env },
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
        resume(Effect.succeed({ process: child, pid: child.pid!, exit: done }))
      })
    })

  const start: OrchestratorShape["start"] = (service) =>
    Effect.gen(function* () {
      const previous = children.get(service.id)
      if (previous !== undefined) {
        // A start after a crash or a failed attempt: make sure no older copy holds the port.
        yield* terminate(previous, service.stopGraceMs)
        children.delete(service.id)
      }
      const child = yield* spawnChild(service)
      children.set(service.id, child)
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

  yield* Effect.addFinalizer(() =>
    Effect.forEach(children.values(), (child) => terminate(child, 2_000), {
      concurrency: "unbounded",
      discard: true
    }).pipe(
      Effect.ensuring(
        Effect.sync(() => {
          children.clear()
          process.off("exit", killAllNow)
        })
      )
    )
  )

  return { start, stop } satisfies OrchestratorShape
})
