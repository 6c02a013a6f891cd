import { HttpClientRequest, HttpClientResponse } from "@effect/platform"
import { Cause, Clock, Effect, Either, Exit, Fiber, Layer, Option, Schedule, Schema } from "effect"
import { HestiaConfig, type ServiceConfig } from "../config/HestiaConfig.ts"
import {
  SemaphoreRequestFailed,
  SemaphoreTaskFailed,
  SemaphoreTaskTimeout,
  SemaphoreUnreachable
} from "../domain/Errors.ts"
import type { Target } from "../domain/Placement.ts"
import { unmanaged } from "./External.ts"
import { Orchestrator, type OrchestratorShape } from "./Orchestrator.ts"
import { boundedText, MAX_ERROR_BODY, SemaphoreClient, type SemaphoreError } from "./SemaphoreClient.ts"
import * as SemaphoreTasks from "./SemaphoreTasks.ts"

export type { SemaphoreError } from "./SemaphoreClient.ts"

// ---------------------------------------------------------------------------
// The API calls
// ---------------------------------------------------------------------------

/** The fields of Semaphore's Task the gateway reads; the rest is ignored. */
const TaskJson = Schema.Struct({ id: Schema.Int, status: Schema.String })
type TaskJson = typeof TaskJson.Type

/** `success` is the only good end; `error` and `stopped` are bad ones; any other string is still running. */
export const TERMINAL_STATUSES: ReadonlySet<string> = new Set(["success", "error", "stopped"])
export const isTerminal = (status: string) => TERMINAL_STATUSES.has(status)

const decodeTask = (response: HttpClientResponse.HttpClientResponse) =>
  HttpClientResponse.schemaBodyJson(TaskJson)(response).pipe(
    Effect.catchAll(() =>
      Effect.flatMap(
        // Already read (and kept) by the failed decode, unless the body itself failed; then what is left.
        Effect.orElse(response.text, () => boundedText(response)),
        (body) =>
          new SemaphoreRequestFailed({
            url: response.request.url,
            status: response.status,
            body: `not a task: ${body.slice(0, MAX_ERROR_BODY)}`
          })
      )
    )
  )

/** Semaphore's project task API: create, read and stop a task, each call limited to `semaphore_timeout`. */
export const makeApi = Effect.gen(function* () {
  const client = yield* SemaphoreClient
  const { semaphore } = yield* HestiaConfig
  const timeoutMs = semaphore.requestTimeoutMs
  const projectPath = `/project/${semaphore.projectId ?? 0}`

  const call = <A>(
    request: HttpClientRequest.HttpClientRequest,
    read: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<A, SemaphoreError>
  ): Effect.Effect<A, SemaphoreError> => {
    const url = `${(semaphore.baseUrl ?? "").replace(/\/+$/, "")}/api${request.url}`
    if (semaphore.baseUrl === undefined || semaphore.projectId === undefined) {
      return Effect.fail(
        new SemaphoreUnreachable({ url, reason: "semaphore_base_url and semaphore_project_id must be configured" })
      )
    }
    // A password login the call needs first counts against the same limit.
    return client.execute(request).pipe(
      Effect.flatMap(read),
      Effect.timeoutFail({
        duration: timeoutMs,
        onTimeout: () => new SemaphoreUnreachable({ url, reason: `no answer within ${timeoutMs} ms` })
      })
    )
  }

  return {
    /** `POST /api/project/{p}/tasks`; `environment` must be a JSON *string* (an object is a 400 on the live server). */
    createTask: (templateId: number, environment: Readonly<Record<string, unknown>>) =>
      call(
        HttpClientRequest.post(`${projectPath}/tasks`).pipe(
          HttpClientRequest.bodyUnsafeJson({ template_id: templateId, environment: JSON.stringify(environment) })
        ),
        decodeTask
      ),
    /** `GET /api/project/{p}/tasks/{id}` (a missing task is a 400 there, not a 404). */
    getTask: (taskId: number) => call(HttpClientRequest.get(`${projectPath}/tasks/${taskId}`), decodeTask),
    /** `POST /api/project/{p}/tasks/{id}/stop`; the live server wants a JSON body. */
    stopTask: (taskId: number) =>
      call(
        HttpClientRequest.post(`${projectPath}/tasks/${taskId}/stop`).pipe(
          HttpClientRequest.bodyUnsafeJson({ force: false })
        ),
        (response) => Effect.asVoid(boundedText(response))
      )
  }
})

export type Api = Effect.Effect.Success<typeof makeApi>

// ---------------------------------------------------------------------------
// The orchestrator: a start or stop is one task of the service's template, followed to its end.
// ---------------------------------------------------------------------------

/** Transient failures while following a task are retried this many times, one poll interval apart. */
const POLL_RETRIES = 2

/** Starts and stops services by running Semaphore task templates (start/stop) and following each task to its end. */
export const make: Effect.Effect<
  OrchestratorShape,
  never,
  HestiaConfig | SemaphoreTasks.SemaphoreTasks | SemaphoreClient
> = Effect.gen(function* () {
  const config = yield* HestiaConfig
  const api = yield* makeApi
  // Shared with the status view, which reports each service's current and last task.
  const tasks = yield* SemaphoreTasks.SemaphoreTasks

  /** Polls every `poll_interval` until a terminal status, within `task_timeout`. */
  const follow = (service: ServiceConfig, created: TaskJson, seen: (status: string) => void) =>
    Effect.gen(function* () {
      let last = created.status
      const poll = api.getTask(created.id).pipe(
        Effect.retry({
          schedule: Schedule.spaced(service.semaphore.pollIntervalMs),
          times: POLL_RETRIES,
          while: (error) => error._tag === "SemaphoreUnreachable"
        }),
        Effect.delay(service.semaphore.pollIntervalMs),
        Effect.tap((task) => {
          if (task.status === last) return Effect.void
          last = task.status
          seen(task.status)
          return Effect.zipRight(
            tasks.update(service.id, task.id, task.status),
            Effect.logDebug(`semaphore task ${task.id}: ${task.status}`).pipe(
              Effect.annotateLogs({ event: "semaphore_task_status", serviceId: service.id, taskId: task.id })
            )
          )
        })
      )
      const final = isTerminal(created.status)
        ? created
        : yield* poll.pipe(
            Effect.repeat({ until: (task) => isTerminal(task.status) }),
            Effect.timeoutFail({
              duration: service.semaphore.taskTimeoutMs,
              onTimeout: () =>
                new SemaphoreTaskTimeout({
                  taskId: created.id,
                  waitedMs: service.semaphore.taskTimeoutMs,
                  lastStatus: last
                })
            })
          )
      if (final.status !== "success") return yield* new SemaphoreTaskFailed({ taskId: final.id, status: final.status })
      return final
    })

  /** Asks Semaphore to stop a task the gateway gave up on; best effort, returns the status seen afterwards. */
  const abandon = (service: ServiceConfig, taskId: number, lastStatus: string, why: string) =>
    Effect.gen(function* () {
      const stopped = yield* Effect.either(api.stopTask(taskId))
      const after = yield* api.getTask(taskId).pipe(
        Effect.map((task) => task.status),
        Effect.orElseSucceed(() => lastStatus)
      )
      yield* Effect.logWarning(`semaphore task ${taskId} stopped: ${why}`).pipe(
        Effect.annotateLogs({
          event: "semaphore_task_stopped",
          serviceId: service.id,
          taskId,
          status: after,
          stopRequest: Either.isRight(stopped) ? "accepted" : stopped.left.message
        })
      )
      return after
    })

  const runTask = (service: ServiceConfig, target: Target, action: "start" | "stop", templateId: number) =>
    // An interruption while the task is being created waits for Semaphore's answer (bounded by the request
    // timeout), so a start task that came into being is known by its id and can be stopped.
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function* () {
        const machineId = target.semaphoreMachineId ?? target.machineId
        const record = (task: TaskJson, startedAt: number): SemaphoreTasks.TaskRecord => ({
          id: task.id,
          templateId,
          action,
          status: task.status,
          machineId,
          startedAt,
          finishedAt: undefined
        })
        const creating = yield* Effect.forkDaemon(
          Effect.interruptible(api.createTask(templateId, { service_id: service.id, machine_id: machineId, action }))
        )
        const created = yield* restore(Fiber.join(creating)).pipe(
          Effect.onInterrupt(() =>
            Effect.gen(function* () {
              const exit = yield* Fiber.await(creating)
              if (Exit.isFailure(exit) || action !== "start") return
              const now = yield* Clock.currentTimeMillis
              yield* tasks.begin(service.id, record(exit.value, now))
              const status = yield* abandon(service, exit.value.id, exit.value.status, "start cancelled")
              yield* tasks.finish(service.id, exit.value.id, status, yield* Clock.currentTimeMillis)
            })
          )
        )
        let last = created.status
        const settle = (exit: Exit.Exit<unknown, SemaphoreError | SemaphoreTaskFailed | SemaphoreTaskTimeout>) =>
          Effect.gen(function* () {
            const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
            const interrupted = Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
            // A task that ended on its own needs nothing; an interrupted stop task is left to finish the stop.
            const giveUp =
              (Option.isSome(failure) && failure.value._tag !== "SemaphoreTaskFailed") ||
              (interrupted && action === "start")
            const status = giveUp
              ? yield* abandon(
                  service,
                  created.id,
                  last,
                  interrupted ? "start cancelled" : Option.getOrThrow(failure).message
                )
              : last
            yield* Effect.annotateCurrentSpan("semaphore.task.status", status)
            yield* tasks.finish(service.id, created.id, status, yield* Clock.currentTimeMillis)
            yield* Effect.logInfo(`semaphore task ${created.id} ended: ${status}`).pipe(
              Effect.annotateLogs({
                event: "semaphore_task_finished",
                serviceId: service.id,
                machineId,
                taskId: created.id,
                action,
                status
              })
            )
          })
        const followed = Effect.gen(function* () {
          yield* Effect.annotateCurrentSpan({
            "semaphore.task.id": created.id,
            "semaphore.template.id": templateId,
            "hestia.service.id": service.id,
            "hestia.machine.id": target.machineId
          })
          yield* tasks.begin(service.id, record(created, yield* Clock.currentTimeMillis))
          yield* Effect.logInfo(`semaphore task ${created.id} created (${action} ${service.id} on ${machineId})`).pipe(
            Effect.annotateLogs({
              event: "semaphore_task_created",
              serviceId: service.id,
              machineId,
              taskId: created.id,
              templateId,
              action
            })
          )
          return yield* follow(service, created, (status) => {
            last = status
          })
        })
        return yield* restore(followed).pipe(Effect.onExit(settle))
      })
    )

  // No span of its own: the registry's `Orchestrator.start` span wraps it, so the task id and status land there.
  const start = Effect.fnUntraced(function* (service: ServiceConfig, target: Target) {
    const templateId = service.semaphore.startTemplateId
    if (templateId === undefined) {
      // Config validation requires it; kept typed for services built in code.
      return yield* new SemaphoreRequestFailed({
        url: config.semaphore.baseUrl ?? "",
        status: 0,
        body: `service "${service.id}" has no semaphore_start_template_id`
      })
    }
    yield* runTask(service, target, "start", templateId)
    // The remote service's health is Readiness's business; there is no local process to watch.
    return unmanaged
  })

  const stop = Effect.fn("Semaphore.stop")(function* (service: ServiceConfig, target: Target) {
    const templateId = service.semaphore.stopTemplateId
    if (templateId === undefined) {
      yield* Effect.logDebug(`${service.id}: no semaphore_stop_template_id, nothing to stop`)
      return
    }
    yield* runTask(service, target, "stop", templateId)
  })

  return {
    start,
    stop,
    // A remote service runs on its own; its health decides after a restart, and nothing is left to reclaim.
    adopt: () => Effect.succeed(Option.some(unmanaged)),
    reclaim: () => Effect.succeed(false)
  } satisfies OrchestratorShape
})

/** The Semaphore orchestrator alone, talking over undici (the gateway's composite is OrchestratorByKind). */
export const layer = Layer.effect(Orchestrator, make).pipe(Layer.provide(SemaphoreClient.Default))
