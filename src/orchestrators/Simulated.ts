import { Clock, Context, Effect, Layer, Ref } from "effect"
import { ProcessExited, SimulatedFailure } from "../domain/Errors.ts"
import type { Target } from "../domain/Placement.ts"
import { Orchestrator } from "../Orchestrator.ts"

/** What one scripted start does, after `bootMs` of (Test)Clock time. */
export type SimulatedStep =
  | { readonly _tag: "Ready"; readonly bootMs: number }
  | { readonly _tag: "Fail"; readonly bootMs: number; readonly reason: string }
  /** Starts fine, then dies `afterMs` later, as a process exiting by itself. */
  | { readonly _tag: "Crash"; readonly bootMs: number; readonly afterMs: number }

export const ready = (bootMs = 0): SimulatedStep => ({ _tag: "Ready", bootMs })
export const fail = (bootMs = 0, reason = "simulated failure"): SimulatedStep => ({ _tag: "Fail", bootMs, reason })
export const crash = (bootMs: number, afterMs: number): SimulatedStep => ({ _tag: "Crash", bootMs, afterMs })

export interface SimulatedCall {
  readonly op: "start" | "stop"
  readonly serviceId: string
  readonly machineId: string
  /** 1-based count of starts of this service on this machine. */
  readonly attempt: number
  /** Clock time when the call began. */
  readonly at: number
}

/** Decides each start: `attempt` counts starts of this service on this machine, from 1. */
export type SimulatedScript = (call: { serviceId: string; machineId: string; attempt: number }) => SimulatedStep

/** The record of every call a Simulated orchestrator received, for assertions. */
export class SimulatedMachines extends Context.Tag("hestia/SimulatedMachines")<
  SimulatedMachines,
  { readonly calls: Effect.Effect<ReadonlyArray<SimulatedCall>> }
>() {}

/** Scripted machines driven by the Clock: boot delays, N failures then success, crashes. */
export const layer = (script: SimulatedScript = () => ready()) =>
  Effect.gen(function* () {
    const calls = yield* Ref.make<ReadonlyArray<SimulatedCall>>([])
    const attempts = new Map<string, number>()
    const record = (op: SimulatedCall["op"], serviceId: string, target: Target, attempt: number) =>
      Effect.flatMap(Clock.currentTimeMillis, (at) =>
        Ref.update(calls, (all) => [...all, { op, serviceId, machineId: target.machineId, attempt, at }])
      )
    const orchestrator = Orchestrator.of({
      start: (service, target) =>
        Effect.gen(function* () {
          const key = `${service.id}@${target.machineId}`
          const attempt = (attempts.get(key) ?? 0) + 1
          attempts.set(key, attempt)
          yield* record("start", service.id, target, attempt)
          const step = script({ serviceId: service.id, machineId: target.machineId, attempt })
          yield* Effect.sleep(step.bootMs)
          switch (step._tag) {
            case "Fail":
              return yield* new SimulatedFailure({
                serviceId: service.id,
                machineId: target.machineId,
                reason: step.reason
              })
            case "Ready":
              return { pid: undefined, exited: Effect.never }
            case "Crash":
              return {
                pid: undefined,
                exited: Effect.sleep(step.afterMs).pipe(
                  Effect.zipRight(new ProcessExited({ serviceId: service.id, pid: 0, code: 1, signal: null }))
                )
              }
          }
        }),
      stop: (service, target) =>
        record("stop", service.id, target, attempts.get(`${service.id}@${target.machineId}`) ?? 0)
    })
    return Context.make(Orchestrator, orchestrator).pipe(Context.add(SimulatedMachines, { calls: Ref.get(calls) }))
  }).pipe(Layer.effectContext)
