import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Exit, Fiber, Layer, Logger, LogLevel, TestClock } from "effect"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { targetsFor } from "../../src/domain/Placement.ts"
import * as Semaphore from "../../src/orchestrators/Semaphore.ts"
import { SemaphoreTasks } from "../../src/orchestrators/SemaphoreTasks.ts"
import { plans, type Script, SemaphoreDouble } from "../fixtures/SemaphoreDouble.ts"

// The client on the TestClock, talking to the double in memory: every wait is Clock time, asserted exactly.

const yaml = (service: Record<string, unknown> = {}, token = "test-token") => `
semaphore_base_url: http://semaphore.test:3000
semaphore_api_key: ${token}
semaphore_project_id: 1
machines:
  gpu: { host: 10.0.0.5, semaphore_machine_id: gpu-01 }
  laptop: { host: 127.0.0.1 }
services:
  svc: ${JSON.stringify({
    base_url: "http://{host}:11434",
    semaphore_enabled: true,
    semaphore_start_template_id: 1,
    semaphore_stop_template_id: 2,
    semaphore_task_timeout: 30,
    semaphore_poll_interval: 2,
    machines: ["gpu", "laptop"],
    ...service
  })}
`

const REQUEST_TIMEOUT_MS = 5_000

interface Timed {
  readonly method: string
  readonly path: string
  readonly at: number
}

const setup = (
  options: { script?: Script; service?: Record<string, unknown>; token?: string; transport?: Semaphore.Transport } = {}
) =>
  Effect.gen(function* () {
    const double = new SemaphoreDouble({ templates: [1, 2], ...(options.script ? { script: options.script } : {}) })
    const calls: Array<Timed> = []
    const inner = options.transport ?? double.transport
    const transport: Semaphore.Transport = (req) =>
      Effect.flatMap(Clock.currentTimeMillis, (at) => {
        calls.push({ method: req.method, path: new URL(req.url).pathname, at })
        return inner(req)
      })
    const orchestrator = yield* Semaphore.makeWith({ transport, requestTimeoutMs: REQUEST_TIMEOUT_MS })
    const config = yield* HestiaConfig
    const tasks = yield* SemaphoreTasks
    const service = config.services.get("svc")!
    const [gpu, laptop] = targetsFor(service, config)
    return { double, calls, orchestrator, tasks, service, gpu: gpu!, laptop: laptop! }
  }).pipe(
    Effect.provide(
      SemaphoreTasks.layer.pipe(
        Layer.provideMerge(HestiaConfig.layerYaml(yaml(options.service, options.token))),
        Layer.provide(Logger.minimumLogLevel(LogLevel.None))
      )
    )
  )

const gets = (calls: ReadonlyArray<Timed>) => calls.filter((c) => c.method === "GET").map((c) => c.at)

describe("Semaphore client (TestClock)", () => {
  it.effect("start: one task, polled every poll interval until success", () =>
    Effect.gen(function* () {
      const { double, calls, orchestrator, tasks, service, gpu } = yield* setup({ script: () => plans.success(2) })
      const fiber = yield* Effect.fork(orchestrator.start(service, gpu))
      yield* TestClock.adjust("10 seconds")
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isSuccess(exit))
      // waiting → starting → running → running → running → success, one step per poll, 2 s apart.
      assert.deepStrictEqual(gets(calls), [2000, 4000, 6000, 8000, 10000])
      const [create] = double.requests
      assert.strictEqual(create!.method, "POST")
      assert.strictEqual(create!.path, "/api/project/1/tasks")
      assert.strictEqual(create!.authorization, "Bearer test-token")
      assert.deepStrictEqual(JSON.parse(create!.body), {
        template_id: 1,
        environment: JSON.stringify({ service_id: "svc", machine_id: "gpu-01", action: "start" })
      })
      assert.deepStrictEqual(double.tasks[0]!.history, ["waiting", "starting", "running", "success"])
      const automation = yield* tasks.automation("svc")
      assert.strictEqual(automation?.current_task, null)
      assert.deepInclude(automation?.last_task, {
        id: 1,
        template_id: 1,
        action: "start",
        status: "success",
        machine_id: "gpu-01"
      })
      assert.strictEqual(automation?.machine_id, "gpu-01")
    })
  )

  it.effect("the task is current while followed, last once done", () =>
    Effect.gen(function* () {
      const { double, orchestrator, tasks, service, gpu } = yield* setup({ script: () => plans.hold() })
      const fiber = yield* Effect.fork(orchestrator.start(service, gpu))
      yield* TestClock.adjust("4 seconds")
      const during = yield* tasks.automation("svc")
      assert.deepInclude(during?.current_task, { id: 1, status: "running", action: "start" })
      double.release(1)
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(fiber)
      const after = yield* tasks.automation("svc")
      assert.strictEqual(after?.current_task, null)
      assert.deepInclude(after?.last_task, { id: 1, status: "success" })
    })
  )

  it.effect("a task ending in error is SemaphoreTaskFailed with its id and status", () =>
    Effect.gen(function* () {
      const { orchestrator, service, gpu, double } = yield* setup({ script: () => plans.error() })
      const fiber = yield* Effect.fork(orchestrator.start(service, gpu))
      yield* TestClock.adjust("6 seconds")
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.strictEqual(error._tag, "SemaphoreTaskFailed")
      assert.deepInclude(error, { taskId: 1, status: "error" })
      // A task that ended by itself is not stopped.
      assert.lengthOf(double.requestsTo("POST", /\/stop$/), 0)
    })
  )

  it.effect("unknown statuses keep waiting; only success succeeds", () =>
    Effect.gen(function* () {
      const statuses = ["waiting_confirmation", "confirmed", "some_future_status", "success"]
      const transport: Semaphore.Transport = (req) =>
        Effect.succeed(
          req.method === "POST"
            ? { status: 201, body: JSON.stringify({ id: 7, template_id: 1, status: "waiting" }) }
            : { status: 200, body: JSON.stringify({ id: 7, template_id: 1, status: statuses.shift() }) }
        )
      const { orchestrator, service, gpu, calls } = yield* setup({ transport })
      const fiber = yield* Effect.fork(orchestrator.start(service, gpu))
      yield* TestClock.adjust("8 seconds")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
      assert.deepStrictEqual(gets(calls), [2000, 4000, 6000, 8000])
    })
  )

  it.effect("timeout: SemaphoreTaskTimeout at semaphore_task_timeout, and the task is stopped with force=false", () =>
    Effect.gen(function* () {
      const { double, orchestrator, tasks, service, gpu } = yield* setup({ script: () => plans.hold() })
      const fiber = yield* Effect.fork(orchestrator.start(service, gpu))
      yield* TestClock.adjust("29 seconds")
      assert.isNull(fiber.unsafePoll())
      yield* TestClock.adjust("1 second")
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.strictEqual(error._tag, "SemaphoreTaskTimeout")
      assert.deepInclude(error, { taskId: 1, waitedMs: 30_000, lastStatus: "running" })
      const stops = double.requestsTo("POST", /^\/api\/project\/1\/tasks\/1\/stop$/)
      assert.lengthOf(stops, 1)
      assert.deepStrictEqual(JSON.parse(stops[0]!.body), { force: false })
      assert.strictEqual(stops[0]!.status, 204)
      assert.strictEqual(double.task(1)!.status, "stopped")
      assert.deepInclude((yield* tasks.automation("svc"))?.last_task, { id: 1, status: "stopped" })
    })
  )

  it.effect("interrupting a start stops its task", () =>
    Effect.gen(function* () {
      const { double, orchestrator, service, gpu } = yield* setup({ script: () => plans.hold() })
      const fiber = yield* Effect.fork(orchestrator.start(service, gpu))
      yield* TestClock.adjust("4 seconds")
      assert.strictEqual(double.task(1)!.status, "running")
      yield* Fiber.interrupt(fiber)
      assert.lengthOf(double.requestsTo("POST", /\/tasks\/1\/stop$/), 1)
      assert.strictEqual(double.task(1)!.status, "stopped")
    })
  )

  it.effect("interrupted while the task is being created: the task, once created, is stopped", () =>
    Effect.gen(function* () {
      const double = new SemaphoreDouble({ templates: [1, 2], script: () => plans.hold() })
      // Semaphore takes 1 s to answer the create.
      const slow: Semaphore.Transport = (req) =>
        req.method === "POST" && req.url.endsWith("/tasks")
          ? Effect.zipRight(Effect.sleep("1 second"), double.transport(req))
          : double.transport(req)
      const { orchestrator, service, gpu } = yield* setup({ transport: slow })
      const fiber = yield* Effect.fork(orchestrator.start(service, gpu))
      yield* TestClock.adjust("500 millis")
      const interrupting = yield* Effect.fork(Fiber.interrupt(fiber))
      yield* TestClock.adjust("500 millis")
      yield* Fiber.join(interrupting)
      assert.deepStrictEqual(
        double.requests.map((r) => `${r.method} ${r.path} ${r.status}`),
        ["POST /api/project/1/tasks 201", "POST /api/project/1/tasks/1/stop 204", "GET /api/project/1/tasks/1 200"]
      )
      assert.strictEqual(double.task(1)!.status, "stopped")
    })
  )

  it.effect("Semaphore refusing connections is SemaphoreUnreachable at once", () =>
    Effect.gen(function* () {
      const { double, orchestrator, service, gpu } = yield* setup()
      yield* Effect.promise(() => double.setMode("refuse"))
      const error = yield* Effect.flip(orchestrator.start(service, gpu))
      assert.strictEqual(error._tag, "SemaphoreUnreachable")
      assert.include(error.message, "ECONNREFUSED")
      assert.lengthOf(double.requests, 1)
    })
  )

  it.effect("a Semaphore that never answers is SemaphoreUnreachable after the request timeout", () =>
    Effect.gen(function* () {
      const { double, orchestrator, service, gpu } = yield* setup()
      yield* Effect.promise(() => double.setMode("hang"))
      const fiber = yield* Effect.fork(orchestrator.start(service, gpu))
      yield* TestClock.adjust(REQUEST_TIMEOUT_MS - 1)
      assert.isNull(fiber.unsafePoll())
      yield* TestClock.adjust(1)
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.strictEqual(error._tag, "SemaphoreUnreachable")
      assert.include(error.message, `no answer within ${REQUEST_TIMEOUT_MS} ms`)
    })
  )

  it.effect("a poll that cannot connect is retried one poll interval later", () =>
    Effect.gen(function* () {
      const { double, orchestrator, service, gpu, calls } = yield* setup({ script: () => plans.success() })
      const fiber = yield* Effect.fork(orchestrator.start(service, gpu))
      yield* TestClock.adjust("2 seconds")
      yield* Effect.promise(() => double.setMode("reset"))
      yield* TestClock.adjust("2 seconds")
      yield* Effect.promise(() => double.setMode("up"))
      yield* TestClock.adjust("6 seconds")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
      // 2 s: starting; 4 s: reset; 6 s: the retry (running); 8 s: success.
      assert.deepStrictEqual(gets(calls), [2000, 4000, 6000, 8000])
    })
  )

  it.effect("a wrong token is SemaphoreAuthFailed (401, empty body)", () =>
    Effect.gen(function* () {
      const { double, orchestrator, service, gpu } = yield* setup({ token: "wrong" })
      const error = yield* Effect.flip(orchestrator.start(service, gpu))
      assert.strictEqual(error._tag, "SemaphoreAuthFailed")
      assert.deepInclude(error, { status: 401 })
      assert.strictEqual(double.requests[0]!.responseBody, "")
      assert.lengthOf(double.tasks, 0)
    })
  )

  it.effect("an unknown template is SemaphoreRequestFailed with Semaphore's 500", () =>
    Effect.gen(function* () {
      const { orchestrator, service, gpu } = yield* setup({ service: { semaphore_start_template_id: 99 } })
      const error = yield* Effect.flip(orchestrator.start(service, gpu))
      assert.strictEqual(error._tag, "SemaphoreRequestFailed")
      assert.deepInclude(error, { status: 500 })
    })
  )

  it.effect("stop runs the stop template for the machine, followed to success", () =>
    Effect.gen(function* () {
      const { double, orchestrator, tasks, service, laptop } = yield* setup({ script: () => plans.success(1) })
      const fiber = yield* Effect.fork(orchestrator.stop(service, laptop))
      yield* TestClock.adjust("8 seconds")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
      const task = double.tasks[0]!
      assert.strictEqual(task.templateId, 2)
      // No semaphore_machine_id on the laptop: the machine id itself goes to the playbook.
      assert.strictEqual(task.environment, JSON.stringify({ service_id: "svc", machine_id: "laptop", action: "stop" }))
      assert.strictEqual(task.status, "success")
      assert.deepInclude((yield* tasks.automation("svc"))?.last_task, { action: "stop", status: "success" })
    })
  )

  it.effect("stop without a stop template does nothing", () =>
    Effect.gen(function* () {
      const { double, orchestrator, service, gpu } = yield* setup({ service: { semaphore_stop_template_id: null } })
      yield* orchestrator.stop(service, gpu)
      assert.lengthOf(double.requests, 0)
    })
  )

  it.effect("a failed stop task is SemaphoreTaskFailed", () =>
    Effect.gen(function* () {
      const { orchestrator, service, gpu } = yield* setup({ script: () => plans.error() })
      const fiber = yield* Effect.fork(orchestrator.stop(service, gpu))
      yield* TestClock.adjust("6 seconds")
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.strictEqual(error._tag, "SemaphoreTaskFailed")
    })
  )

  it.effect("automation is undefined for services Semaphore does not run", () =>
    Effect.gen(function* () {
      const { tasks } = yield* setup()
      assert.isUndefined(yield* tasks.automation("nope"))
      assert.deepStrictEqual(yield* tasks.automation("svc"), {
        enabled: true,
        provider: "semaphore",
        machine_id: "gpu-01",
        current_task: null,
        last_task: null
      })
    })
  )
})
