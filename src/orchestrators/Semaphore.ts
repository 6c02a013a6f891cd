import { Cause, Clock, Effect, Either, Exit, Fiber, Layer, Option, Schedule, Schema } from "effect"
import { request } from "undici"
import { HestiaConfig, type ServiceConfig, type Settings } from "../config/HestiaConfig.ts"
import {
  SemaphoreAuthFailed,
  SemaphoreRequestFailed,
  SemaphoreTaskFailed,
  SemaphoreTaskTimeout,
  SemaphoreUnreachable
} from "../domain/Errors.ts"
import type { Target } from "../domain/Placement.ts"
import { unmanaged } from "./External.ts"
import { Orchestrator, type OrchestratorShape } from "./Orchestrator.ts"
import * as SemaphoreTasks from "./SemaphoreTasks.ts"

// ---------------------------------------------------------------------------
// Transport: one HTTP exchange. Swappable so the client's own tests can run on the TestClock without sockets.
// ---------------------------------------------------------------------------

export interface HttpRequest {
  readonly method: "GET" | "POST"
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string | undefined
}

export interface HttpResponse {
  readonly status: number
  readonly body: string
}

/** Sends one request; fails (with the reason) only when no answer came back: refused, reset, unresolvable. */
export type Transport = (request: HttpRequest) => Effect.Effect<HttpResponse, string>

/** How long one call to Semaphore may take before the server counts as unreachable. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000

const networkReason = (error: unknown): string => {
  const e = error as { code?: string; message?: string; cause?: { code?: string; message?: string } }
  const code = e.code ?? e.cause?.code
  const message = e.message ?? String(error)
  return code !== undefined && !message.includes(code) ? `${code}: ${message}` : message
}

export const undiciTransport =
  (timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Transport =>
  (req) =>
    Effect.tryPromise({
      try: async (signal) => {
        // undici's own timeouts only back up the Clock-based one in the client.
        const response = await request(req.url, {
          method: req.method,
          headers: req.headers,
          body: req.body ?? null,
          signal,
          headersTimeout: timeoutMs + 1_000,
          bodyTimeout: timeoutMs + 1_000
        })
        return { status: response.statusCode, body: await response.body.text() }
      },
      catch: networkReason
    })

// ---------------------------------------------------------------------------
// The API calls
// ---------------------------------------------------------------------------

/** The fields of Semaphore's Task the gateway reads; the rest is ignored. */
const TaskJson = Schema.parseJson(Schema.Struct({ id: Schema.Int, status: Schema.String }))
type TaskJson = typeof TaskJson.Type

/** `success` is the only good end; `error` and `stopped` are bad ones; any other string is still running. */
export const TERMINAL_STATUSES: ReadonlySet<string> = new Set(["success", "error", "stopped"])
export const isTerminal = (status: string) => TERMINAL_STATUSES.has(status)

export type SemaphoreError = SemaphoreUnreachable | SemaphoreAuthFailed | SemaphoreRequestFailed

export interface ClientOptions {
  readonly semaphore: Settings["semaphore"]
  readonly transport: Transport
  readonly requestTimeoutMs: number
}

const MAX_ERROR_BODY = 500

/** Semaphore's project task API: create, read and stop a task. */
export const makeApi = ({ semaphore, transport, requestTimeoutMs }: ClientOptions) => {
  const base = (semaphore.baseUrl ?? "").replace(/\/+$/, "")
  const projectPath = `/api/project/${semaphore.projectId ?? 0}`

  const call = (method: HttpRequest["method"], path: string, body?: unknown) => {
    const url = `${base}${projectPath}${path}`
    if (semaphore.baseUrl === undefined || semaphore.projectId === undefined) {
      return Effect.fail(
        new SemaphoreUnreachable({ url, reason: "semaphore_base_url and semaphore_project_id must be configured" })
      )
    }
    const headers: Record<string, string> = {
      accept: "application/json",
      authorization: `Bearer ${semaphore.apiKey ?? ""}`
    }
    if (body !== undefined) headers["content-type"] = "application/json"
    return transport({ method, url, headers, body: body === undefined ? undefined : JSON.stringify(body) }).pipe(
      Effect.timeoutFail({ duration: requestTimeoutMs, onTimeout: () => `no answer within ${requestTimeoutMs} ms` }),
      Effect.mapError((reason) => new SemaphoreUnreachable({ url, reason })),
      Effect.filterOrElse(
        (response) => response.status >= 200 && response.status < 300,
        (response): Effect.Effect<never, SemaphoreError> =>
          response.status === 401 || response.status === 403
            ? Effect.fail(new SemaphoreAuthFailed({ url, status: response.status }))
            : Effect.fail(
                new SemaphoreRequestFailed({
                  url,
                  status: response.status,
                  body: response.body.slice(0, MAX_ERROR_BODY)
                })
              )
      ),
      Effect.map((response) => ({ url, ...response }))
    )
  }

  const decodeTask = (response: { url: string; status: number; body: string }) =>
    Either.match(Schema.decodeUnknownEither(TaskJson)(response.body), {
      onLeft: () =>
        Effect.fail(
          new SemaphoreRequestFailed({
            url: response.url,
            status: response.status,
            body: `not a task: ${response.body.slice(0, MAX_ERROR_BODY)}`
          })
        ),
      onRight: (task) => Effect.succeed(task)
    })

  return {
    /** `POST /api/project/{p}/tasks`; `environment` must be a JSON *string* (an object is a 400 on the live server). */
    createTask: (templateId: number, environment: Readonly<Record<string, unknown>>) =>
      Effect.flatMap(
        call("POST", "/tasks", { template_id: templateId, environment: JSON.stringify(environment) }),
        decodeTask
      ),
    /** `GET /api/project/{p}/tasks/{id}` (a missing task is a 400 there, not a 404). */
    getTask: (taskId: number) => Effect.flatMap(call("GET", `/tasks/${taskId}`), decodeTask),
    /** `POST /api/project/{p}/tasks/{id}/stop`; the live server wants a JSON body. */
    stopTask: (taskId: number) => Effect.asVoid(call("POST", `/tasks/${taskId}/stop`, { force: false }))
  }
}

export type Api = ReturnType<typeof makeApi>

// ---------------------------------------------------------------------------
// The orchestrator: a start or stop is one task of the service's template, followed to its end.
// ---------------------------------------------------------------------------

export interface MakeOptions {
  /** Defaults to undici over the network. */
  readonly transport?: Transport
  readonly requestTimeoutMs?: number
}

/** Transient failures while following a task are retried this many times, one poll interval apart. */
const POLL_RETRIES = 2

export const makeWith = (options: MakeOptions = {}) =>
  Effect.gen(function* () {
    const config = yield* HestiaConfig
    const requestTimeoutMs = options.requestTimeoutMs ?? config.semaphore.requestTimeoutMs
    const api = makeApi({
      semaphore: config.semaphore,
      transport: options.transport ?? undiciTransport(requestTimeoutMs),
      requestTimeoutMs
    })
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
        if (final.status !== "success")
          return yield* new SemaphoreTaskFailed({ taskId: final.id, status: final.status })
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
            yield* Effect.logInfo(
              `semaphore task ${created.id} created (${action} ${service.id} on ${machineId})`
            ).pipe(
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

/** Starts and stops services by running Semaphore task templates (start/stop) and following each task to its end. */
export const make: Effect.Effect<OrchestratorShape, never, HestiaConfig | SemaphoreTasks.SemaphoreTasks> = makeWith()

export const layer = Layer.effect(Orchestrator, make)
