import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { HttpGateway } from "../../src/http/HttpGateway.ts"
import { call, callJson, eventually, gatewayLayer } from "../fixtures/Gateway.ts"
import { type DoubleTask, plans, type Script, type SemaphoreDouble, serveDouble } from "../fixtures/SemaphoreDouble.ts"

// The gateway over real HTTP, Semaphore played by the double over real HTTP. Each machine has its own tiny upstream
// that only answers (health included) once a start task for that machine has succeeded on the double, and stops
// answering when a stop task succeeds: the gateway can only get a 200 through the real Semaphore flow.

const TOKEN = "hestia-test-token"

interface MachineUpstream {
  host: string
  up: boolean
  served: number
}

const machineUpstream = (name: string) =>
  Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<{ upstream: MachineUpstream; server: Http.Server }>((resolve) => {
          const upstream: MachineUpstream = { host: "", up: false, served: 0 }
          const server = Http.createServer((req, res) => {
            if (!upstream.up) return res.writeHead(503).end("down")
            if (req.url === "/health") return res.end("ok")
            upstream.served++
            res.setHeader("content-type", "application/json")
            res.end(JSON.stringify({ machine: name, path: req.url }))
          })
          server.listen(0, "127.0.0.1", () => {
            upstream.host = `127.0.0.1:${(server.address() as AddressInfo).port}`
            resolve({ upstream, server })
          })
        })
    ),
    ({ server }) =>
      Effect.promise(() => {
        server.closeAllConnections()
        return new Promise<void>((resolve) => server.close(() => resolve()))
      })
  ).pipe(Effect.map(({ upstream }) => upstream))

const USER = { username: "hestia", password: "hestia-test-password" }

interface Setup {
  readonly script?: Script
  readonly service?: Record<string, unknown>
  readonly token?: string
  /** A password login instead of the token. */
  readonly login?: { readonly username: string; readonly password: string }
}

/** Two machines (gpu preferred by a routing rule, laptop as fallback), one Semaphore service `llm`. */
const setup = (options: Setup = {}) =>
  Effect.gen(function* () {
    const gpu = yield* machineUpstream("gpu")
    const laptop = yield* machineUpstream("laptop")
    const bySemaphoreId: Record<string, MachineUpstream> = { "gpu-01": gpu, laptop }
    const double = yield* serveDouble({
      token: TOKEN,
      user: USER,
      templates: [1, 2],
      ...(options.script ? { script: options.script } : {}),
      onStatus: (task: DoubleTask) => {
        const upstream = task.machineId === undefined ? undefined : bySemaphoreId[task.machineId]
        if (upstream !== undefined && task.status === "success") upstream.up = task.action === "start"
      }
    })
    const service = {
      base_url: "http://{host}",
      health_url: "http://{host}/health",
      semaphore_enabled: true,
      semaphore_start_template_id: 1,
      semaphore_stop_template_id: 2,
      semaphore_poll_interval: 0.01,
      semaphore_task_timeout: 10,
      retry_count: 1,
      retry_delay_ms: 10,
      idle_timeout_ms: 0,
      request_timeout_seconds: 20,
      ...options.service
    }
    const yaml = `
server: { host: 127.0.0.1, port: 0 }
semaphore_base_url: ${double.url}
${
  options.login === undefined
    ? `semaphore_api_key: ${options.token ?? TOKEN}`
    : `semaphore_username: ${options.login.username}\nsemaphore_password: ${options.login.password}`
}
semaphore_project_id: 1
machines:
  gpu: { host: "${gpu.host}", semaphore_machine_id: gpu-01, labels: { gpu: true } }
  laptop: { host: "${laptop.host}" }
services:
  llm: ${JSON.stringify(service)}
routing_rules:
  - { services: [llm], prefer: [{ gpu: true }, laptop] }
`
    const context = yield* Layer.build(gatewayLayer(yaml))
    const url = Context.get(context, HttpGateway).url
    return { double, gpu, laptop, url }
  })

const status = (url: string) => Effect.map(callJson(`${url}/v1/services/llm/status`), (r) => r.json)

const startTasks = (double: SemaphoreDouble) => double.tasks.filter((t) => t.action === "start")
const stopTasks = (double: SemaphoreDouble) => double.tasks.filter((t) => t.action === "stop")
const summary = (tasks: ReadonlyArray<DoubleTask>) => tasks.map((t) => `${t.action}@${t.machineId}:${t.status}`)

describe("Semaphore services through the gateway", () => {
  it.live("starts on the primary machine through one start task, then proxies", () =>
    Effect.gen(function* () {
      const { double, url } = yield* setup()
      const response = yield* callJson(`${url}/services/llm/hello?x=1`)
      assert.strictEqual(response.status, 200)
      assert.deepStrictEqual(response.json, { machine: "gpu", path: "/hello?x=1" })

      const view = yield* status(url)
      assert.strictEqual(view.state, "hot")
      assert.strictEqual(view.machineId, "gpu")

      assert.deepStrictEqual(summary(double.tasks), ["start@gpu-01:success"])
      const [create, ...rest] = double.requests
      assert.strictEqual(create!.method, "POST")
      assert.strictEqual(create!.path, "/api/project/1/tasks")
      assert.strictEqual(create!.authorization, `Bearer ${TOKEN}`)
      assert.deepStrictEqual(JSON.parse(create!.body), {
        template_id: 1,
        environment: '{"service_id":"llm","machine_id":"gpu-01","action":"start"}'
      })
      assert.strictEqual(create!.status, 201)
      // Then only polls of that task, until it ended.
      assert.isTrue(rest.every((r) => r.method === "GET" && r.path === "/api/project/1/tasks/1" && r.status === 200))
      assert.strictEqual(JSON.parse(rest.at(-1)!.responseBody).status, "success")

      const automation = (yield* status(url)).automation
      assert.strictEqual(automation?.machine_id, "gpu-01")
      assert.deepInclude(automation?.last_task, { id: 1, action: "start", status: "success", template_id: 1 })
    }).pipe(Effect.scoped)
  )

  it.live("the primary's task fails twice: retried, then the fallback machine starts it", () =>
    Effect.gen(function* () {
      const { double, url, laptop } = yield* setup({
        script: (task) => (task.action === "start" && task.machineId === "gpu-01" ? plans.error(1) : plans.success())
      })
      const response = yield* callJson(`${url}/services/llm/hello`)
      assert.strictEqual(response.status, 200)
      assert.strictEqual(response.json.machine, "laptop")
      assert.strictEqual(laptop.served, 1)
      assert.strictEqual((yield* status(url)).machineId, "laptop")
      // retry_count 1: two attempts on gpu, each failed attempt cleaned up with the stop template, then the laptop.
      assert.deepStrictEqual(summary(double.tasks), [
        "start@gpu-01:error",
        "stop@gpu-01:success",
        "start@gpu-01:error",
        "stop@gpu-01:success",
        "start@laptop:success"
      ])
    }).pipe(Effect.scoped)
  )

  it.live("every machine failing is a 503 with each attempt; the service is cold; the next request starts afresh", () =>
    Effect.gen(function* () {
      const { double, url } = yield* setup({
        script: (task) => (task.action === "start" ? plans.error() : plans.success())
      })
      const failed = yield* callJson(`${url}/services/llm/hello`)
      assert.strictEqual(failed.status, 503)
      assert.strictEqual(failed.headers["retry-after"], "5")
      assert.strictEqual(failed.json.error, "StartupFailed")
      const attempts = failed.json.attempts as Array<{ machine: string; attempt: number; error: string }>
      assert.deepStrictEqual(
        attempts.map((a) => [a.machine, a.attempt, a.error]),
        [
          ["gpu", 1, "SemaphoreTaskFailed"],
          ["gpu", 2, "SemaphoreTaskFailed"],
          ["laptop", 1, "SemaphoreTaskFailed"],
          ["laptop", 2, "SemaphoreTaskFailed"]
        ]
      )
      const cold = yield* status(url)
      assert.strictEqual(cold.state, "cold")
      assert.strictEqual(cold.lastError.error, "StartupFailed")
      assert.lengthOf(cold.lastError.attempts, 4)
      assert.lengthOf(startTasks(double), 4)

      double.setScript(() => plans.success())
      const ok = yield* callJson(`${url}/services/llm/hello`)
      assert.strictEqual(ok.status, 200)
      assert.strictEqual(ok.json.machine, "gpu")
      assert.deepStrictEqual(summary(startTasks(double)).slice(4), ["start@gpu-01:success"])
      const hot = yield* status(url)
      assert.strictEqual(hot.state, "hot")
      assert.isNull(hot.lastError)
    }).pipe(Effect.scoped)
  )

  it.live("a task that does not finish in semaphore_task_timeout is stopped on Semaphore", () =>
    Effect.gen(function* () {
      const { double, url } = yield* setup({
        script: (task) => (task.action === "start" ? plans.hold() : plans.success()),
        service: { machines: ["gpu"], retry_count: 0, semaphore_task_timeout: 0.3 }
      })
      const failed = yield* callJson(`${url}/services/llm/hello`)
      assert.strictEqual(failed.status, 503)
      assert.deepStrictEqual(
        failed.json.attempts.map((a: { machine: string; error: string }) => [a.machine, a.error]),
        [["gpu", "SemaphoreTaskTimeout"]]
      )
      assert.include(failed.json.attempts[0].message, "Semaphore task 1 did not finish")
      const stops = double.requestsTo("POST", /^\/api\/project\/1\/tasks\/1\/stop$/)
      assert.lengthOf(stops, 1)
      assert.deepStrictEqual(JSON.parse(stops[0]!.body), { force: false })
      assert.strictEqual(stops[0]!.contentType, "application/json")
      assert.strictEqual(stops[0]!.status, 204)
      assert.strictEqual(double.task(1)!.status, "stopped")
      assert.deepInclude((yield* status(url)).automation?.last_task ?? {}, { action: "stop", status: "success" })
    }).pipe(Effect.scoped)
  )

  it.live("Semaphore down: each attempt fails with SemaphoreUnreachable, no hang", () =>
    Effect.gen(function* () {
      const { double, url } = yield* setup()
      yield* Effect.promise(() => double.setMode("refuse"))
      const refused = yield* callJson(`${url}/services/llm/hello`)
      assert.strictEqual(refused.status, 503)
      const errors = refused.json.attempts.map((a: { error: string }) => a.error)
      assert.deepStrictEqual(errors, Array(4).fill("SemaphoreUnreachable"))
      assert.include(refused.json.attempts[0].message, "ECONNREFUSED")

      // A server that drops connections is the same typed failure.
      yield* Effect.promise(() => double.setMode("reset"))
      const reset = yield* callJson(`${url}/services/llm/hello`)
      assert.strictEqual(reset.status, 503)
      assert.deepStrictEqual(
        reset.json.attempts.map((a: { error: string }) => a.error),
        Array(4).fill("SemaphoreUnreachable")
      )
      assert.lengthOf(double.tasks, 0)
    }).pipe(Effect.scoped)
  )

  it.live("a wrong token is SemaphoreAuthFailed in the attempts, and no task is created", () =>
    Effect.gen(function* () {
      const { double, url } = yield* setup({ token: "not-the-token" })
      const failed = yield* callJson(`${url}/services/llm/hello`)
      assert.strictEqual(failed.status, 503)
      assert.deepStrictEqual(
        failed.json.attempts.map((a: { error: string }) => a.error),
        Array(4).fill("SemaphoreAuthFailed")
      )
      assert.include(failed.json.attempts[0].message, "HTTP 401")
      assert.lengthOf(double.tasks, 0)
      assert.isTrue(double.requests.every((r) => r.status === 401 && r.responseBody === ""))
    }).pipe(Effect.scoped)
  )

  it.live("idle: the stop template runs and is followed; the service is stopping until it ends", () =>
    Effect.gen(function* () {
      const { double, url, gpu } = yield* setup({
        script: (task) => (task.action === "stop" ? plans.hold() : plans.success()),
        service: { idle_timeout_ms: 200 }
      })
      assert.strictEqual((yield* call(`${url}/services/llm/hello`)).status, 200)
      const stop = yield* eventually(
        Effect.sync(() => stopTasks(double)[0]),
        (task) => task?.status === "running"
      )
      assert.strictEqual(stop!.templateId, 2)
      assert.strictEqual(stop!.environment, '{"service_id":"llm","machine_id":"gpu-01","action":"stop"}')
      assert.strictEqual((yield* status(url)).state, "stopping")
      assert.deepInclude((yield* status(url)).automation?.current_task ?? {}, { action: "stop", status: "running" })

      double.release(stop!.id)
      yield* eventually(status(url), (view) => view.state === "cold")
      assert.deepStrictEqual(stop!.history, ["waiting", "starting", "running", "success"])
      assert.isFalse(gpu.up)
      // Followed to the end: the last poll of the stop task saw `success`.
      const polls = double.requestsTo("GET", new RegExp(`/tasks/${stop!.id}$`))
      assert.strictEqual(JSON.parse(polls.at(-1)!.responseBody).status, "success")
      assert.deepInclude((yield* status(url)).automation?.last_task ?? {}, { action: "stop", status: "success" })
    }).pipe(Effect.scoped)
  )

  it.live("100 concurrent requests during a Semaphore start cause exactly one task", () =>
    Effect.gen(function* () {
      const { double, url } = yield* setup({ script: () => plans.hold(), service: { queue_size: 200 } })
      const requests = yield* Effect.forkScoped(
        Effect.forEach(
          Array.from({ length: 100 }, (_, i) => i),
          (i) => callJson(`${url}/services/llm/n/${i}`),
          {
            concurrency: "unbounded"
          }
        )
      )
      yield* eventually(status(url), (view) => view.queuePending === 100)
      assert.lengthOf(double.tasks, 1)
      double.release(1)
      const responses = yield* requests.await.pipe(Effect.flatten)
      assert.isTrue(responses.every((r) => r.status === 200 && r.json.machine === "gpu"))
      assert.deepStrictEqual(
        responses.map((r) => r.json.path),
        Array.from({ length: 100 }, (_, i) => `/n/${i}`)
      )
      assert.deepStrictEqual(summary(double.tasks), ["start@gpu-01:success"])
      assert.lengthOf(double.requestsTo("POST", /\/tasks$/), 1)
    }).pipe(Effect.scoped)
  )

  it.live("POST /v1/services/llm/start runs the start task; a second start while hot is a 200", () =>
    Effect.gen(function* () {
      const { double, url } = yield* setup()
      const accepted = yield* callJson(`${url}/v1/services/llm/start`, { method: "POST" })
      assert.strictEqual(accepted.status, 202)
      yield* eventually(status(url), (view) => view.state === "hot")
      assert.deepStrictEqual(summary(double.tasks), ["start@gpu-01:success"])
      const again = yield* callJson(`${url}/v1/services/llm/start`, { method: "POST" })
      assert.strictEqual(again.status, 200)
      assert.lengthOf(double.tasks, 1)
    }).pipe(Effect.scoped)
  )

  it.live("a stop request during a start stops the running Semaphore task", () =>
    Effect.gen(function* () {
      const { double, url } = yield* setup({
        script: (task) => (task.action === "start" ? plans.hold() : plans.success())
      })
      assert.strictEqual((yield* call(`${url}/v1/services/llm/start`, { method: "POST" })).status, 202)
      yield* eventually(
        Effect.sync(() => double.task(1)?.status),
        (s) => s === "running"
      )
      assert.strictEqual((yield* call(`${url}/v1/services/llm/stop`, { method: "POST" })).status, 202)
      yield* eventually(status(url), (view) => view.state === "cold")
      yield* eventually(
        Effect.sync(() => double.task(1)?.status),
        (s) => s === "stopped"
      )
      const stops = double.requestsTo("POST", /^\/api\/project\/1\/tasks\/1\/stop$/)
      assert.lengthOf(stops, 1)
      assert.deepStrictEqual(JSON.parse(stops[0]!.body), { force: false })
    }).pipe(Effect.scoped)
  )

  it.live("without a token: logs in with username and password, then runs the tasks on the session cookie", () =>
    Effect.gen(function* () {
      const { double, url } = yield* setup({ login: USER, service: { machines: ["gpu"], retry_count: 0 } })
      const response = yield* callJson(`${url}/services/llm/hello`)
      assert.strictEqual(response.status, 200)
      assert.deepStrictEqual(response.json, { machine: "gpu", path: "/hello" })
      const [login, create, ...polls] = double.requests
      assert.strictEqual(`${login!.method} ${login!.path} ${login!.status}`, "POST /api/auth/login 204")
      assert.deepStrictEqual(JSON.parse(login!.body), { auth: USER.username, password: USER.password })
      const cookie = login!.responseSetCookie!.split(";")[0]!
      // Sent back byte for byte, padding included.
      assert.match(cookie, /^semaphore=[A-Za-z0-9_-]+==$/)
      assert.strictEqual(`${create!.method} ${create!.path} ${create!.status}`, "POST /api/project/1/tasks 201")
      for (const call of [create!, ...polls]) {
        assert.strictEqual(call.cookie, cookie)
        assert.isUndefined(call.authorization)
      }
      assert.deepStrictEqual(summary(double.tasks), ["start@gpu-01:success"])

      // The session ages out; the stop's first call is refused, the gateway logs in once more and carries on.
      double.expireSessions()
      assert.strictEqual((yield* call(`${url}/v1/services/llm/stop`, { method: "POST" })).status, 202)
      yield* eventually(status(url), (view) => view.state === "cold")
      const afterExpiry = double.requests.slice(2 + polls.length).map((r) => `${r.method} ${r.path} ${r.status}`)
      assert.deepStrictEqual(afterExpiry.slice(0, 3), [
        "POST /api/project/1/tasks 401",
        "POST /api/auth/login 204",
        "POST /api/project/1/tasks 201"
      ])
      assert.deepStrictEqual(summary(double.tasks), ["start@gpu-01:success", "stop@gpu-01:success"])
      assert.lengthOf(double.requestsTo("POST", /^\/api\/auth\/login$/), 2)
    }).pipe(Effect.scoped)
  )

  it.live("a wrong password is SemaphoreAuthFailed from the login in every attempt; no task is created", () =>
    Effect.gen(function* () {
      const { double, url } = yield* setup({ login: { ...USER, password: "wrong" } })
      const failed = yield* callJson(`${url}/services/llm/hello`)
      assert.strictEqual(failed.status, 503)
      assert.deepStrictEqual(
        failed.json.attempts.map((a: { error: string }) => a.error),
        Array(4).fill("SemaphoreAuthFailed")
      )
      assert.include(failed.json.attempts[0].message, "refused the login")
      assert.include(failed.json.attempts[0].message, "/api/auth/login")
      assert.lengthOf(double.tasks, 0)
      // Each attempt tried to log in once (and the cleanup stops too), never a task call without a session.
      assert.isTrue(double.requests.every((r) => r.path === "/api/auth/login" && r.status === 401))
    }).pipe(Effect.scoped)
  )
})
