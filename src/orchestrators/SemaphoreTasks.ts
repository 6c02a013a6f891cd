import { Context, Effect, Layer, Ref } from "effect"
import { LiveConfig } from "../config/LiveConfig.ts"
import { targetsFor } from "../domain/Placement.ts"

/** A Semaphore task the gateway ran for a service, as last seen. */
export interface TaskRecord {
  readonly id: number
  readonly templateId: number
  readonly action: "start" | "stop"
  /** Semaphore's status string (`waiting`, `running`, `success`, ...), verbatim. */
  readonly status: string
  /** The machine id sent to the playbook. */
  readonly machineId: string
  /** Clock millis. */
  readonly startedAt: number
  readonly finishedAt: number | undefined
}

/** `automation.current_task` / `last_task` in a service's status. */
export interface TaskView {
  readonly id: number
  readonly template_id: number
  readonly action: "start" | "stop"
  readonly status: string
  readonly machine_id: string
  readonly started_at: string
  readonly finished_at: string | null
}

/** `automation` in a Semaphore service's status. */
export interface AutomationView {
  readonly enabled: boolean
  readonly provider: "semaphore"
  /** The machine of the current task, else of the last one, else the first the service would start on. */
  readonly machine_id: string | null
  /** The task the gateway is following now. */
  readonly current_task: TaskView | null
  /** The most recent task the gateway stopped following (finished, failed, timed out or abandoned). */
  readonly last_task: TaskView | null
}

interface ServiceTasks {
  readonly current: TaskRecord | undefined
  readonly last: TaskRecord | undefined
}

export interface SemaphoreTasksShape {
  /** The automation block for a service's status; undefined for services Semaphore does not run. */
  readonly automation: (serviceId: string) => Effect.Effect<AutomationView | undefined>
  /** Written by the Semaphore orchestrator: a task it created and now follows. */
  readonly begin: (serviceId: string, task: TaskRecord) => Effect.Effect<void>
  /** A new status seen while following. */
  readonly update: (serviceId: string, taskId: number, status: string) => Effect.Effect<void>
  /** The orchestrator stopped following the task: it moves from current to last. */
  readonly finish: (serviceId: string, taskId: number, status: string, at: number) => Effect.Effect<void>
}

const view = (task: TaskRecord | undefined): TaskView | null =>
  task === undefined
    ? null
    : {
        id: task.id,
        template_id: task.templateId,
        action: task.action,
        status: task.status,
        machine_id: task.machineId,
        started_at: new Date(task.startedAt).toISOString(),
        finished_at: task.finishedAt === undefined ? null : new Date(task.finishedAt).toISOString()
      }

export const make = Effect.gen(function* () {
  // The configuration in force now: a reload may add or change services.
  const live = yield* LiveConfig
  const tasks = yield* Ref.make<ReadonlyMap<string, ServiceTasks>>(new Map())

  const modify = (serviceId: string, f: (entry: ServiceTasks) => ServiceTasks) =>
    Ref.update(tasks, (all) => {
      const next = new Map(all)
      next.set(serviceId, f(all.get(serviceId) ?? { current: undefined, last: undefined }))
      return next
    })

  return {
    automation: (serviceId) =>
      Effect.map(Ref.get(tasks), (all) => {
        const service = live.current().services.get(serviceId)
        if (service === undefined || service.kind !== "semaphore") return undefined
        const entry = all.get(serviceId)
        const first = targetsFor(service, live.current())[0]
        return {
          enabled: service.semaphore.enabled,
          provider: "semaphore",
          machine_id:
            entry?.current?.machineId ??
            entry?.last?.machineId ??
            first?.semaphoreMachineId ??
            first?.machineId ??
            null,
          current_task: view(entry?.current),
          last_task: view(entry?.last)
        } satisfies AutomationView
      }),
    begin: (serviceId, task) => modify(serviceId, (entry) => ({ ...entry, current: task })),
    update: (serviceId, taskId, status) =>
      modify(serviceId, (entry) =>
        entry.current?.id === taskId ? { ...entry, current: { ...entry.current, status } } : entry
      ),
    finish: (serviceId, taskId, status, at) =>
      modify(serviceId, (entry) =>
        entry.current?.id === taskId
          ? { current: undefined, last: { ...entry.current, status, finishedAt: at } }
          : entry
      )
  } satisfies SemaphoreTasksShape
})

/**
 * The current and last Semaphore task of each service. The Semaphore orchestrator writes here when this service is in
 * its context at build time; the status view reads `automation`.
 */
export class SemaphoreTasks extends Context.Tag("hestia/SemaphoreTasks")<SemaphoreTasks, SemaphoreTasksShape>() {
  static readonly layer = Layer.effect(SemaphoreTasks, make).pipe(Layer.provide(LiveConfig.Default))
}
