import * as Path from "node:path"
import { Worker } from "node:worker_threads"
import { Clock, Deferred, Duration, Effect, Either, Exit, FiberId, FiberSet } from "effect"
import { StrategyCallFailed, type StrategyFailureReason, StrategyLoadFailed } from "../domain/Errors.ts"
import type { Bundled } from "./StrategyBundle.ts"
import { type FromWorker, type ToWorker, WORKER_SOURCE, type WorkerData } from "./StrategyWorker.ts"

// One strategy file's worker thread. A thread, because a synchronous infinite loop cannot be interrupted on the
// thread it runs on: `worker.terminate()` stops it wherever it is. Calls are messages (~10 µs a round trip on an idle
// machine); each has its own time limit. A call that runs past it means "no decision" at once, then a ping tells a
// slow async call (the worker answers; it is kept, with its state) from a blocked thread (no answer: terminated).
// A worker that ended abnormally (blocked, crashed, out of memory) is started again by the next call, at most once a
// second; in between, calls fail fast.
//
// Time limits are deadlines that one reaper fiber per runner expires, every few milliseconds while calls are waiting
// (and not at all otherwise): `Effect.timeout` on each call forks two fibers and costs ~25 µs, more than the round
// trip it guards, on a path that may run for every request.

/** A module that takes longer to import (top-level code included) fails to load. */
export const LOAD_TIMEOUT_MS = 5_000
/** At most this many calls wait for one worker's answers; more fail at once. */
export const MAX_PENDING_CALLS = 1_024
/** The V8 heap of one strategy's thread: a strategy that leaks takes down its own thread, not the gateway. */
export const RESOURCE_LIMITS = { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 16, stackSizeMb: 4 } as const
const RESPAWN_INTERVAL_MS = 1_000
/** A worker's output line longer than this is cut there. */
const MAX_LINE_CHARS = 4_096

export type RunnerEvent =
  | { readonly _tag: "Output"; readonly stream: "stdout" | "stderr"; readonly line: string }
  | { readonly _tag: "Warning"; readonly message: string }
  /** Its worker ended abnormally; `reason` says how. */
  | { readonly _tag: "Ended"; readonly reason: string }

export interface RunnerOptions {
  /** The file as `strategies_dir` spells it, for messages. */
  readonly file: string
  readonly bundled: Bundled
  readonly timeoutMs: number
  /** Where liveness checks run (the Strategies service's scope). */
  readonly fibers: FiberSet.FiberSet
  /** Output, warnings and abnormal ends of the worker (called from its event handlers). */
  readonly onEvent: (event: RunnerEvent) => void
  /** Every runner not yet closed, so that the owner's scope can close them all whatever it interrupted. */
  readonly live: Set<Runner>
}

/** What the module default-exported, as its worker read it; the loader checks it. */
export interface Declared {
  readonly name: unknown
  readonly kind: unknown
  readonly functions: ReadonlyArray<string>
}

export interface Runner {
  /** Call `fn` of the strategy with `args` (structured-cloned), within the time limit. */
  readonly call: (
    strategy: string,
    fn: string,
    args: ReadonlyArray<unknown>
  ) => Effect.Effect<unknown, StrategyCallFailed>
  /** Stop the worker; the next call starts it again (a strategy nothing uses costs no thread). */
  readonly park: Effect.Effect<void>
  /** Stop the worker for good: calls fail as unavailable. */
  readonly close: Effect.Effect<void>
  readonly running: () => boolean
}

type Reply =
  | FromWorker
  | { readonly t: "gone"; readonly reason: string }
  /** Its deadline passed first. */
  | { readonly t: "expired" }

interface Pending {
  readonly resolve: (reply: Reply) => void
  /** Epoch ms (Effect's Clock). */
  readonly deadline: number
}

interface Generation {
  readonly worker: Worker
  readonly ready: Deferred.Deferred<Declared, string>
  /** Set once the module loaded: calls then go straight to the worker. */
  declared: Declared | undefined
  readonly pending: Map<number, Pending>
  /** Ended by the runner (park, close, a blocked thread): not a crash. */
  stopping: boolean
  exited: boolean
  checking: boolean
  lastError: string | undefined
}

/** Lines of a worker's stdout/stderr, each cut at MAX_LINE_CHARS: the partial line held is bounded too. */
const eachLine = (stream: NodeJS.ReadableStream, onLine: (line: string) => void) => {
  let partial = ""
  stream.setEncoding("utf8")
  stream.on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n")
    partial = parts.pop()!
    for (const line of parts) onLine(line.slice(0, MAX_LINE_CHARS))
    if (partial.length > MAX_LINE_CHARS) {
      onLine(partial.slice(0, MAX_LINE_CHARS))
      partial = ""
    }
  })
  stream.on("end", () => {
    if (partial !== "") onLine(partial)
  })
}

const make = (options: RunnerOptions, fork: (effect: Effect.Effect<void>) => void) => {
  const workerData: WorkerData = {
    url: options.bundled.url,
    sourceUrl: options.bundled.sourceUrl,
    fileName: Path.basename(options.file),
    sourceMap: options.bundled.sourceMap
  }
  let current: Generation | undefined
  let closed = false
  let seq = 0
  let lastSpawnAt = Number.NEGATIVE_INFINITY
  /** How the last worker ended, when it ended abnormally; cleared by the next spawn. */
  let abnormalEnd: string | undefined

  const spawn = (): Generation => {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData,
      name: `strategy ${options.file}`,
      resourceLimits: RESOURCE_LIMITS,
      stdout: true,
      stderr: true
    })
    // The gateway's scope ends every worker; an unref'd one never holds the process open on its own.
    worker.unref()
    const generation: Generation = {
      worker,
      ready: Deferred.unsafeMake<Declared, string>(FiberId.none),
      declared: undefined,
      pending: new Map(),
      stopping: false,
      exited: false,
      checking: false,
      lastError: undefined
    }
    worker.on("message", (message: FromWorker) => {
      switch (message.t) {
        case "ready":
          generation.declared = { name: message.name, kind: message.kind, functions: message.functions }
          Deferred.unsafeDone(generation.ready, Exit.succeed(generation.declared))
          return
        case "load_failed":
          Deferred.unsafeDone(generation.ready, Exit.fail(message.message))
          generation.stopping = true
          void worker.terminate()
          return
        case "warning":
          options.onEvent({ _tag: "Warning", message: message.message })
          return
        default: {
          const pending = generation.pending.get(message.id)
          generation.pending.delete(message.id)
          pending?.resolve(message)
        }
      }
    })
    worker.on("error", (error) => {
      generation.lastError = `${error.name}: ${error.message}`
    })
    worker.on("exit", (code) => {
      generation.exited = true
      const reason = generation.lastError ?? `its thread exited with code ${code}`
      Deferred.unsafeDone(generation.ready, Exit.fail(`its worker ended while loading: ${reason}`))
      for (const pending of generation.pending.values()) pending.resolve({ t: "gone", reason })
      generation.pending.clear()
      if (current === generation) current = undefined
      if (!generation.stopping) {
        abnormalEnd = reason
        options.onEvent({ _tag: "Ended", reason })
      }
    })
    eachLine(worker.stdout, (line) => options.onEvent({ _tag: "Output", stream: "stdout", line }))
    eachLine(worker.stderr, (line) => options.onEvent({ _tag: "Output", stream: "stderr", line }))
    return generation
  }

  const stop = (generation: Generation, reason: string) =>
    Effect.suspend(() => {
      generation.stopping = true
      if (current === generation) current = undefined
      for (const pending of generation.pending.values()) pending.resolve({ t: "gone", reason })
      generation.pending.clear()
      return Effect.promise(() => generation.worker.terminate()).pipe(Effect.asVoid)
    })

  const tickMs = Math.max(1, Math.min(10, Math.floor(options.timeoutMs / 5)))
  let reaping = false
  /** Expires the calls past their deadline; runs while any call waits, and stops two ticks after the last one. */
  const reaper = Effect.gen(function* () {
    let idleTicks = 0
    for (;;) {
      yield* Effect.sleep(Duration.millis(tickMs))
      const now = yield* Clock.currentTimeMillis
      const pending = current?.pending
      if (pending !== undefined) {
        for (const [id, entry] of pending) {
          if (entry.deadline > now) continue
          pending.delete(id)
          entry.resolve({ t: "expired" })
        }
      }
      // Decided and flagged in one step: a call that comes after it sees no reaper and starts one.
      if (pending === undefined || pending.size === 0) idleTicks++
      else idleTicks = 0
      if (idleTicks >= 2) {
        reaping = false
        return
      }
    }
  }).pipe(Effect.onInterrupt(() => Effect.sync(() => (reaping = false))))

  const send = (generation: Generation, message: (id: number) => ToWorker, timeoutMs: number) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.async<Reply>((resume) => {
        if (generation.exited || generation.stopping) {
          resume(Effect.succeed({ t: "gone", reason: "its worker is stopping" }))
          return
        }
        if (generation.pending.size >= MAX_PENDING_CALLS) {
          resume(Effect.succeed({ t: "gone", reason: `${MAX_PENDING_CALLS} calls are already waiting for it` }))
          return
        }
        const id = ++seq
        generation.pending.set(id, { resolve: (reply) => resume(Effect.succeed(reply)), deadline: now + timeoutMs })
        // In the same step as the call is registered: the reaper cannot have just decided that nothing waits.
        if (!reaping) {
          reaping = true
          fork(reaper)
        }
        try {
          generation.worker.postMessage(message(id))
        } catch (error) {
          generation.pending.delete(id)
          resume(
            Effect.succeed({ t: "gone", reason: `its arguments cannot be sent to it: ${(error as Error).message}` })
          )
          return
        }
        return Effect.sync(() => {
          generation.pending.delete(id)
        })
      })
    )

  /** The running worker, started (and its module imported) if need be. */
  const acquire = Effect.gen(function* () {
    if (closed) return yield* Effect.fail("it was unloaded")
    let generation = current
    // Loaded already: the path of every call but the first.
    if (generation?.declared !== undefined) return { generation, declared: generation.declared }
    if (generation === undefined) {
      const now = yield* Clock.currentTimeMillis
      if (abnormalEnd !== undefined && now - lastSpawnAt < RESPAWN_INTERVAL_MS) {
        return yield* Effect.fail(`its worker ended (${abnormalEnd}); it is started again at most once a second`)
      }
      lastSpawnAt = now
      abnormalEnd = undefined
      generation = spawn()
      current = generation
    }
    const ready = yield* Deferred.await(generation.ready).pipe(
      Effect.timeoutFail({
        duration: Duration.millis(LOAD_TIMEOUT_MS),
        onTimeout: () => `its module did not load within ${LOAD_TIMEOUT_MS} ms`
      }),
      Effect.either
    )
    if (Either.isLeft(ready)) {
      yield* stop(generation, ready.left)
      return yield* Effect.fail(ready.left)
    }
    return { generation, declared: ready.right }
  })

  /** After a call ran past its limit: a thread that cannot answer a ping either is blocked, and is terminated. */
  const checkLiveness = (generation: Generation) =>
    Effect.gen(function* () {
      if (generation.checking || generation.exited || generation.stopping) return
      generation.checking = true
      const waitMs = Math.max(250, 2 * options.timeoutMs)
      const pong = yield* send(generation, (id) => ({ t: "ping", id }), waitMs)
      generation.checking = false
      if (pong.t === "pong") return
      if (generation.exited || generation.stopping) return
      const reason = `its thread was blocked: no answer to a ping within ${waitMs} ms after a call ran past its time limit`
      abnormalEnd = reason
      options.onEvent({ _tag: "Ended", reason })
      yield* stop(generation, reason)
    })

  const failed = (strategy: string, reason: StrategyFailureReason, detail: string) =>
    new StrategyCallFailed({ strategy, reason, detail })

  const call = (strategy: string, fn: string, args: ReadonlyArray<unknown>) =>
    Effect.gen(function* () {
      const { generation } = yield* Effect.mapError(acquire, (detail) => failed(strategy, "unavailable", detail))
      const answer = yield* send(generation, (id) => ({ t: "call", id, fn, args }), options.timeoutMs)
      switch (answer.t) {
        case "expired":
          fork(checkLiveness(generation))
          return yield* failed(strategy, "timeout", `no answer within its time limit of ${options.timeoutMs} ms`)
        case "result":
          return answer.value
        case "threw":
          return yield* failed(strategy, "threw", answer.message)
        case "unsendable":
          return yield* failed(
            strategy,
            "invalid_result",
            `returned a value that cannot be sent back: ${answer.message}`
          )
        case "gone":
          return yield* failed(strategy, "unavailable", answer.reason)
        default:
          return yield* failed(strategy, "unavailable", `unexpected answer "${answer.t}" from its worker`)
      }
    })

  const park = Effect.suspend(() => (current === undefined ? Effect.void : stop(current, "it was parked")))

  const runner: Runner = {
    call,
    park,
    close: Effect.suspend(() => {
      closed = true
      options.live.delete(runner)
      return park
    }),
    running: () => current !== undefined
  }
  options.live.add(runner)
  return { acquire, runner }
}

/** Start a worker on the bundled module and read what it declares; a module that fails to load is a load failure. */
export const startRunner = (options: RunnerOptions) =>
  Effect.gen(function* () {
    const fork = yield* FiberSet.runtime(options.fibers)<never>()
    const { acquire, runner } = make(options, (effect) => {
      fork(effect)
    })
    const started = yield* Effect.either(acquire).pipe(Effect.onInterrupt(() => runner.close))
    if (Either.isLeft(started)) {
      yield* runner.close
      return yield* new StrategyLoadFailed({ file: options.file, problem: `failed to load: ${started.left}` })
    }
    return { runner, declared: started.right.declared }
  })
