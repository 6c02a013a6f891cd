import { HttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Clock, ConfigProvider, Effect, Exit, Fiber, Layer, Logger, LogLevel, TestClock } from "effect"
import { HestiaConfig, parse } from "../../src/config/HestiaConfig.ts"
import { targetsFor } from "../../src/domain/Placement.ts"
import * as Semaphore from "../../src/orchestrators/Semaphore.ts"
import { SemaphoreClient } from "../../src/orchestrators/SemaphoreClient.ts"
import { SemaphoreTasks } from "../../src/orchestrators/SemaphoreTasks.ts"
import {
  type Answer,
  type Exchange,
  type NetworkFailure,
  plans,
  type Script,
  SemaphoreDouble,
  scriptedClient
} from "../fixtures/SemaphoreDouble.ts"

// The client on the TestClock, talking to the double in memory through a scripted HttpClient: every wait is Clock
// time, asserted exactly.

/** A token (Bearer), or a password login when `login` is given instead. */
interface Credentials {
  readonly token?: string
  readonly login?: { readonly username: string; readonly password: string }
}

const credentialsYaml = ({ token = "test-token", login }: Credentials) =>
  login === undefined
    ? `semaphore_api_key: ${token}`
    : `semaphore_username: ${login.username}\nsemaphore_password: ${login.password}`

const yaml = (service: Record<string, unknown> = {}, credentials: Credentials = {}) => `
semaphore_base_url: http://semaphore.test:3000
${credentialsYaml(credentials)}
semaphore_project_id: 1
semaphore_timeout: 5
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

/** `semaphore_timeout: 5` above. */
const REQUEST_TIMEOUT_MS = 5_000

const LOGIN = { username: "hestia", password: "test-password" }

interface Timed {
  readonly method: string
  readonly path: string
  readonly at: number
}

const setup = (
  options: {
    script?: Script
    service?: Record<string, unknown>
    token?: string
    login?: { username: string; password: string }
    /** How each exchange is answered under the Semaphore client; by the double in memory by default. */
    reply?: (double: SemaphoreDouble) => (exchange: Exchange) => Effect.Effect<Answer, NetworkFailure>
  } = {}
) =>
  Effect.gen(function* () {
    const double = new SemaphoreDouble({
      templates: [1, 2],
      user: LOGIN,
      ...(options.script ? { script: options.script } : {})
    })
    const calls: Array<Timed> = []
    const reply = options.reply?.(double) ?? double.reply
    const client = scriptedClient((exchange) =>
      Effect.flatMap(Clock.currentTimeMillis, (at) => {
        calls.push({ method: exchange.method, path: exchange.url.pathname, at })
        return reply(exchange)
      })
    )
    const credentials: Credentials = {
      ...(options.token !== undefined ? { token: options.token } : {}),
      ...(options.login !== undefined ? { login: options.login } : {})
    }
    return yield* Effect.gen(function* () {
      const orchestrator = yield* Semaphore.make
      const config = yield* HestiaConfig
      const tasks = yield* SemaphoreTasks
      const service = config.services.get("svc")!
      const [gpu, laptop] = targetsFor(service, config)
      return { double, calls, orchestrator, tasks, service, gpu: gpu!, laptop: laptop! }
    }).pipe(
      Effect.provide(
        Layer.mergeAll(
          SemaphoreTasks.layer,
          SemaphoreClient.layer.pipe(Layer.provide(Layer.succeed(HttpClient.HttpClient, client)))
        ).pipe(
          Layer.provideMerge(HestiaConfig.layerYaml(yaml(options.service, credentials))),
          Layer.provide(Logger.minimumLogLevel(LogLevel.None))
        )
      )
    )
  })

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
      const reply = () => (req: Exchange) =>
        Effect.succeed(
          req.method === "POST"
            ? { status: 201, contentType: "application/json", body: JSON.stringify({ id: 7, status: "waiting" }) }
            : {
                status: 200,
                contentType: "application/json",
                body: JSON.stringify({ id: 7, status: statuses.shift() })
              }
        )
      const { orchestrator, service, gpu, calls } = yield* setup({ reply })
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
      // Semaphore takes 1 s to answer the create.
      const slow = (double: SemaphoreDouble) => (req: Exchange) =>
        req.method === "POST" && req.url.pathname.endsWith("/tasks")
          ? Effect.zipRight(Effect.sleep("1 second"), double.reply(req))
          : double.reply(req)
      const { double, orchestrator, service, gpu } = yield* setup({ reply: slow, script: () => plans.hold() })
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

  it.effect("an error answer's body is kept to its first 500 characters", () =>
    Effect.gen(function* () {
      const reply = () => () => Effect.succeed({ status: 502, contentType: "text/html", body: "x".repeat(100_000) })
      const { orchestrator, service, gpu } = yield* setup({ reply })
      const error = yield* Effect.flip(orchestrator.start(service, gpu))
      assert.strictEqual(error._tag, "SemaphoreRequestFailed")
      assert.deepInclude(error, { status: 502, url: "http://semaphore.test:3000/api/project/1/tasks" })
      assert.strictEqual((error as { body: string }).body, "x".repeat(500))
    })
  )

  it.effect("an answer that is not a task is SemaphoreRequestFailed saying so", () =>
    Effect.gen(function* () {
      const reply = () => () => Effect.succeed({ status: 201, contentType: "application/json", body: '{"id":"seven"}' })
      const { orchestrator, service, gpu } = yield* setup({ reply })
      const error = yield* Effect.flip(orchestrator.start(service, gpu))
      assert.strictEqual(error._tag, "SemaphoreRequestFailed")
      assert.strictEqual((error as { body: string }).body, 'not a task: {"id":"seven"}')
    })
  )
})

const logins = (double: SemaphoreDouble) => double.requestsTo("POST", /^\/api\/auth\/login$/)

describe("Semaphore password login (TestClock)", () => {
  it.effect("without a token: one POST /api/auth/login, then the session cookie on every call", () =>
    Effect.gen(function* () {
      const { double, orchestrator, service, gpu } = yield* setup({ login: LOGIN, script: () => plans.success() })
      const fiber = yield* Effect.fork(orchestrator.start(service, gpu))
      yield* TestClock.adjust("10 seconds")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
      const [login, ...calls] = double.requests
      assert.strictEqual(login!.path, "/api/auth/login")
      assert.strictEqual(login!.contentType, "application/json")
      assert.deepStrictEqual(JSON.parse(login!.body), { auth: "hestia", password: "test-password" })
      assert.strictEqual(login!.status, 204)
      assert.match(login!.responseSetCookie!, /^semaphore=[^;]+; Path=\//)
      const cookie = login!.responseSetCookie!.split(";")[0]
      assert.isAbove(calls.length, 2)
      for (const call of calls) {
        assert.strictEqual(call.cookie, cookie)
        assert.isUndefined(call.authorization)
        assert.include([200, 201], call.status)
      }
      assert.lengthOf(logins(double), 1)
    })
  )

  it.effect("a 401 on a later call logs in again once, and the call is repeated at once", () =>
    Effect.gen(function* () {
      const { double, orchestrator, service, gpu, calls } = yield* setup({ login: LOGIN, script: () => plans.hold() })
      const fiber = yield* Effect.fork(orchestrator.start(service, gpu))
      yield* TestClock.adjust("4 seconds")
      // The session ages out (or Semaphore restarts) while the task runs.
      double.expireSessions()
      yield* TestClock.adjust("2 seconds")
      double.release(1)
      yield* TestClock.adjust("2 seconds")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fiber)))
      assert.deepStrictEqual(
        double.requests.map((r) => `${r.method} ${r.path} ${r.status}`),
        [
          "POST /api/auth/login 204",
          "POST /api/project/1/tasks 201",
          "GET /api/project/1/tasks/1 200",
          "GET /api/project/1/tasks/1 200",
          "GET /api/project/1/tasks/1 401",
          "POST /api/auth/login 204",
          "GET /api/project/1/tasks/1 200",
          "GET /api/project/1/tasks/1 200"
        ]
      )
      // The repeated poll went out at the same Clock time as the refused one.
      assert.deepStrictEqual(gets(calls), [2000, 4000, 6000, 6000, 8000])
      const second = logins(double)[1]!.responseSetCookie!.split(";")[0]
      assert.strictEqual(double.requests.at(-1)!.cookie, second)
    })
  )

  it.effect("wrong credentials are SemaphoreAuthFailed from the login; no task, no second try", () =>
    Effect.gen(function* () {
      const { double, orchestrator, service, gpu } = yield* setup({ login: { username: "hestia", password: "nope" } })
      const error = yield* Effect.flip(orchestrator.start(service, gpu))
      assert.strictEqual(error._tag, "SemaphoreAuthFailed")
      assert.deepInclude(error, { status: 401, url: "http://semaphore.test:3000/api/auth/login" })
      assert.deepStrictEqual(
        double.requests.map((r) => `${r.method} ${r.path} ${r.status} ${r.responseBody}`),
        ["POST /api/auth/login 401 "]
      )
      assert.lengthOf(double.tasks, 0)
    })
  )

  it.effect("a session refused again right after a fresh login is SemaphoreAuthFailed, not a loop", () =>
    Effect.gen(function* () {
      // Logins succeed, yet each session is gone by the next call (e.g. a user without rights on the project).
      const reply = (double: SemaphoreDouble) => (req: Exchange) =>
        Effect.tap(double.reply(req), () => Effect.sync(() => double.expireSessions()))
      const { double, orchestrator, service, gpu } = yield* setup({ login: LOGIN, reply })
      const error = yield* Effect.flip(orchestrator.start(service, gpu))
      assert.strictEqual(error._tag, "SemaphoreAuthFailed")
      assert.deepInclude(error, { status: 401, url: "http://semaphore.test:3000/api/project/1/tasks" })
      assert.deepStrictEqual(
        double.requests.map((r) => `${r.method} ${r.path} ${r.status}`),
        [
          "POST /api/auth/login 204",
          "POST /api/project/1/tasks 401",
          "POST /api/auth/login 204",
          "POST /api/project/1/tasks 401"
        ]
      )
    })
  )

  it.effect("concurrent calls share one login", () =>
    Effect.gen(function* () {
      const { double, orchestrator, service, gpu, laptop } = yield* setup({
        login: LOGIN,
        script: () => plans.success()
      })
      const both = yield* Effect.fork(
        Effect.all([orchestrator.start(service, gpu), orchestrator.stop(service, laptop)], { concurrency: 2 })
      )
      yield* TestClock.adjust("10 seconds")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(both)))
      assert.lengthOf(logins(double), 1)
      assert.lengthOf(double.tasks, 2)
    })
  )

  it.effect("a login that never answers is SemaphoreUnreachable after semaphore_timeout", () =>
    Effect.gen(function* () {
      const reply = (double: SemaphoreDouble) => (req: Exchange) =>
        req.url.pathname === "/api/auth/login" ? Effect.never : double.reply(req)
      const { orchestrator, service, gpu } = yield* setup({ login: LOGIN, reply })
      const fiber = yield* Effect.fork(orchestrator.start(service, gpu))
      yield* TestClock.adjust(REQUEST_TIMEOUT_MS - 1)
      assert.isNull(fiber.unsafePoll())
      yield* TestClock.adjust(1)
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.strictEqual(error._tag, "SemaphoreUnreachable")
      assert.include(error.message, `no answer within ${REQUEST_TIMEOUT_MS} ms`)
    })
  )
})

describe("Semaphore client settings", () => {
  const settings = (text: string, env: Record<string, string> = {}) =>
    parse(text, "test").pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))
  const service = `services:
  svc: { base_url: "http://h:1", semaphore_enabled: true, semaphore_start_template_id: 1 }
`

  it.effect("username and password (file or SEMAPHORE_USERNAME/_PASSWORD) stand in for the token", () =>
    Effect.gen(function* () {
      const fromFile = yield* settings(
        `semaphore_base_url: http://s:3000\nsemaphore_project_id: 1\nsemaphore_username: u\nsemaphore_password: p\n${service}`
      )
      assert.deepInclude(fromFile.semaphore, {
        apiKey: undefined,
        username: "u",
        password: "p",
        requestTimeoutMs: 10_000
      })
      const fromEnv = yield* settings(
        `semaphore_base_url: http://s:3000\nsemaphore_project_id: 1\nsemaphore_timeout: 2.5\n${service}`,
        { SEMAPHORE_USERNAME: "admin", SEMAPHORE_PASSWORD: "secret" }
      )
      assert.deepInclude(fromEnv.semaphore, { username: "admin", password: "secret", requestTimeoutMs: 2_500 })
    })
  )

  it.effect("a username without a password is a config error naming what is missing; no credentials, a warning", () =>
    Effect.gen(function* () {
      const half = yield* Effect.flip(
        settings(`semaphore_base_url: http://s:3000\nsemaphore_project_id: 1\nsemaphore_username: u\n${service}`)
      )
      assert.strictEqual(half.path, "semaphore_password")
      assert.include(half.problem, "SEMAPHORE_PASSWORD")
      // The first Hestia's example config has no token: it must load, with a warning naming the services.
      const none = yield* settings(`semaphore_base_url: http://s:3000\nsemaphore_project_id: 1\n${service}`)
      assert.deepStrictEqual(
        none.warnings.map((w) => w.key),
        ["semaphore_api_key"]
      )
      assert.include(none.warnings[0]!.message, "semaphore_username and semaphore_password")
      const badTimeout = yield* Effect.flip(settings(`semaphore_timeout: 0\n${service}`))
      assert.strictEqual(badTimeout.path, "semaphore_timeout")
    })
  )
})
