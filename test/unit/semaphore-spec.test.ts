import { readFileSync } from "node:fs"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Ajv } from "ajv"
import { Effect, Exit, Layer, Logger, LogLevel } from "effect"
import { request } from "undici"
import * as Yaml from "yaml"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { targetsFor } from "../../src/domain/Placement.ts"
import * as Semaphore from "../../src/orchestrators/Semaphore.ts"
import { SemaphoreClient } from "../../src/orchestrators/SemaphoreClient.ts"
import { SemaphoreTasks } from "../../src/orchestrators/SemaphoreTasks.ts"
import { repoRoot } from "../fixtures/Gateway.ts"
import { plans, type RecordedRequest, type SemaphoreDouble, serveDouble } from "../fixtures/SemaphoreDouble.ts"

// Every request the client puts on the wire, and every answer the double gives, checked against Semaphore's own
// Swagger 2.0 spec (shared/reference/semaphore-api-docs.yml). Where the live server departs from that spec
// (DESIGN.md, "Semaphore"), the departure is spelled out below and checked as such.

// A copy of shared/reference/semaphore-api-docs.yml, so the suite runs from any clone.
const specPath = Path.resolve(repoRoot, "test/fixtures/reference/semaphore-api-docs.yml")
const spec = Yaml.parse(readFileSync(specPath, "utf8"))

const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false, validateSchema: false })
ajv.addSchema(spec, "semaphore")

/** Spec-local `#/...` references resolve inside the registered document. */
const withRefs = (schema: unknown): unknown =>
  JSON.parse(JSON.stringify(schema), (key, value) =>
    key === "$ref" && typeof value === "string" && value.startsWith("#/") ? `semaphore${value}` : value
  )

const validate = (schema: unknown, value: unknown) => {
  const check = ajv.compile(withRefs(schema) as object)
  return check(value) ? [] : (check.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message}`)
}

const resolveParameter = (parameter: any) =>
  typeof parameter.$ref === "string" ? spec.parameters[parameter.$ref.replace("#/parameters/", "")] : parameter

interface Operation {
  readonly template: string
  readonly operation: any
  readonly parameters: ReadonlyArray<any>
  readonly pathValues: Readonly<Record<string, string>>
}

/** The spec operation a concrete request hits, by basePath, path template and method. */
const operationFor = (method: string, path: string): Operation | undefined => {
  if (!path.startsWith(spec.basePath)) return undefined
  const rest = path.slice(spec.basePath.length)
  for (const [template, item] of Object.entries<any>(spec.paths)) {
    const names: Array<string> = []
    const pattern = template.replace(/\{(\w+)\}/g, (_, name: string) => {
      names.push(name)
      return "([^/]+)"
    })
    const match = rest.match(new RegExp(`^${pattern}$`))
    const operation = item[method.toLowerCase()]
    if (match === null || operation === undefined) continue
    return {
      template,
      operation,
      parameters: [...(item.parameters ?? []), ...(operation.parameters ?? [])].map(resolveParameter),
      pathValues: Object.fromEntries(names.map((name, i) => [name, match[i + 1]!]))
    }
  }
  return undefined
}

// -----------------------------------------------------------------------------
// Departures of the live server from the spec, as DESIGN.md lists them.
// -----------------------------------------------------------------------------

/** The spec documents no request body for `stop`; the live server wants one (`{"force": false}`), else 400. */
const stopBodySchema = {
  type: "object",
  properties: { force: { type: "boolean" } },
  required: ["force"],
  additionalProperties: false
}

/**
 * The spec's `Login` leaves both fields optional; the live server looks the user up by `auth` and checks `password`,
 * so a login without either can only fail (401).
 */
const loginBodySchema = {
  type: "object",
  properties: { auth: { type: "string", minLength: 1 }, password: { type: "string" } },
  required: ["auth", "password"]
}

const NO_CREDENTIALS = "no or wrong Bearer token, or no valid `semaphore` session cookie (empty body)"

/** Answers the spec does not document, by route: what the live server sends instead. */
const undocumented: Record<string, Record<number, string>> = {
  "POST /auth/login": {
    401: "unknown user or wrong password (empty body)"
  },
  "POST /project/{project_id}/tasks": {
    400: "environment that is not a string (an object), or a body that is not JSON",
    401: NO_CREDENTIALS,
    500: "unknown template_id"
  },
  "GET /project/{project_id}/tasks/{task_id}": {
    400: "missing task (not 404)",
    401: NO_CREDENTIALS
  },
  "POST /project/{project_id}/tasks/{task_id}/stop": {
    400: "no JSON body, or a missing task",
    401: NO_CREDENTIALS
  }
}

/** The spec's security schemes: `bearer` (the Authorization header) or `cookie` (the session a login set). */
const hasCredentials = (exchange: RecordedRequest) =>
  /^Bearer \S+$/.test(exchange.authorization ?? "") || /(^|;\s*)semaphore=[^;]+/.test(exchange.cookie ?? "")

/**
 * Problems of one recorded exchange against the spec; [] when it conforms (or departs only as documented). The
 * request is checked too when it is the client's (`fromClient`, the default); the answer always is.
 */
const checkExchange = (
  exchange: RecordedRequest,
  { fromClient = true }: { readonly fromClient?: boolean } = {}
): Array<string> => {
  const where = `${exchange.method} ${exchange.path}`
  const found = operationFor(exchange.method, exchange.path)
  if (found === undefined) return [`${where}: no such operation in the spec`]
  const problems: Array<string> = []
  const route = `${exchange.method} ${found.template}`

  for (const parameter of found.parameters.filter((p) => p.in === "path")) {
    const value = found.pathValues[parameter.name]
    if (parameter.type === "integer" && !/^\d+$/.test(value ?? "")) {
      problems.push(`${where}: path parameter ${parameter.name}=${value} is not an integer`)
    }
  }

  // Requests: the client's, with credentials of one of the spec's security schemes where the operation has any.
  if (fromClient) {
    const security = found.operation.security ?? spec.security
    if (security.length > 0 && !hasCredentials(exchange)) problems.push(`${where}: sent without credentials`)
    if (security.length === 0 && exchange.authorization !== undefined) {
      problems.push(`${where}: a token sent where none is asked for`)
    }
    const bodyParameter = found.parameters.find((p) => p.in === "body")
    if (bodyParameter !== undefined) {
      if (exchange.contentType !== "application/json") problems.push(`${where}: body sent as ${exchange.contentType}`)
      const errors = validate(bodyParameter.schema, JSON.parse(exchange.body))
      problems.push(...errors.map((e) => `${where}: request body ${e}`))
      if (route === "POST /auth/login") {
        problems.push(...validate(loginBodySchema, JSON.parse(exchange.body)).map((e) => `${where}: login ${e}`))
      }
    } else if (route === "POST /project/{project_id}/tasks/{task_id}/stop") {
      problems.push(...validate(stopBodySchema, JSON.parse(exchange.body)).map((e) => `${where}: stop body ${e}`))
    } else if (exchange.body !== "") {
      problems.push(`${where}: a body where the spec has none`)
    }
  }

  // Answers: the double's.
  const documented = found.operation.responses?.[exchange.status]
  if (documented !== undefined) {
    if (documented.schema !== undefined) {
      const errors = validate(documented.schema, JSON.parse(exchange.responseBody))
      problems.push(...errors.map((e) => `${where}: ${exchange.status} body ${e}`))
    } else if (exchange.responseBody !== "") {
      problems.push(`${where}: ${exchange.status} should have no body`)
    }
  } else if (undocumented[route]?.[exchange.status] === undefined) {
    problems.push(`${where}: answered ${exchange.status}, neither in the spec nor a known departure`)
  } else if (exchange.status === 401 && exchange.responseBody !== "") {
    problems.push(`${where}: a 401 must have an empty body`)
  }
  // "Upon success you will be logged in": by the session cookie of the `cookie` scheme, as the live server sets it.
  if (route === "POST /auth/login" && exchange.status === 204) {
    if (!/^semaphore=[^;]+;.*Path=\//.test(exchange.responseSetCookie ?? "")) {
      problems.push(
        `${where}: a login without a \`semaphore\` session cookie (Set-Cookie: ${exchange.responseSetCookie})`
      )
    }
  } else if (exchange.responseSetCookie !== undefined) {
    problems.push(`${where}: an unexpected Set-Cookie`)
  }
  return problems
}

// -----------------------------------------------------------------------------
// Traffic: the real client over real HTTP against the double.
// -----------------------------------------------------------------------------

const TOKEN = "spec-token"

const USER = { username: "hestia", password: "spec-password" }

/** The gateway's credentials: the token, or a password login. */
type Credentials = { readonly token: string } | { readonly login: { username: string; password: string } }

const credentialsYaml = (credentials: Credentials) =>
  "token" in credentials
    ? `semaphore_api_key: ${credentials.token}`
    : `semaphore_username: ${credentials.login.username}\nsemaphore_password: ${credentials.login.password}`

const configFor = (
  double: SemaphoreDouble,
  service: Record<string, unknown> = {},
  credentials: Credentials = { token: TOKEN }
) => `
semaphore_base_url: ${double.url}
${credentialsYaml(credentials)}
semaphore_project_id: 1
machines:
  gpu: { host: 10.0.0.5, semaphore_machine_id: gpu-01 }
services:
  svc: ${JSON.stringify({
    base_url: "http://{host}:8000",
    machines: ["gpu"],
    semaphore_enabled: true,
    semaphore_start_template_id: 1,
    semaphore_stop_template_id: 2,
    semaphore_poll_interval: 0.01,
    semaphore_task_timeout: 5,
    ...service
  })}
`

const runClient = (
  double: SemaphoreDouble,
  op: "start" | "stop",
  service: Record<string, unknown> = {},
  credentials: Credentials = { token: TOKEN }
) =>
  Effect.gen(function* () {
    const client = yield* Semaphore.make
    const config = yield* HestiaConfig
    const svc = config.services.get("svc")!
    const target = targetsFor(svc, config)[0]!
    return yield* Effect.exit(op === "start" ? Effect.asVoid(client.start(svc, target)) : client.stop(svc, target))
  }).pipe(
    Effect.provide(
      Layer.mergeAll(
        // The gateway's own client, over undici.
        Layer.mergeAll(SemaphoreTasks.layer, SemaphoreClient.Default).pipe(
          Layer.provideMerge(HestiaConfig.layerYaml(configFor(double, service, credentials)))
        ),
        Logger.minimumLogLevel(LogLevel.None)
      )
    )
  )

const raw = (
  double: SemaphoreDouble,
  method: string,
  path: string,
  body?: string,
  token: string | null = TOKEN,
  cookie?: string
) =>
  Effect.promise(async () => {
    const headers: Record<string, string> = {}
    if (token !== null) headers.authorization = `Bearer ${token}`
    if (cookie !== undefined) headers.cookie = cookie
    if (body !== undefined) headers["content-type"] = "application/json"
    const response = await request(`${double.url}${path}`, { method: method as "GET", headers, body: body ?? null })
    const setCookie = response.headers["set-cookie"]
    const answer: { status: number; body: string; setCookie?: string } = {
      status: response.statusCode,
      body: await response.body.text()
    }
    if (setCookie !== undefined) answer.setCookie = Array.isArray(setCookie) ? setCookie.join(", ") : setCookie
    return answer
  })

describe("the reference spec", () => {
  it("documents the routes and fields the client relies on", () => {
    assert.strictEqual(spec.swagger, "2.0")
    assert.strictEqual(spec.basePath, "/api")
    assert.strictEqual(spec.securityDefinitions.bearer.name, "Authorization")
    const create = operationFor("POST", "/api/project/1/tasks")!
    assert.strictEqual(create.parameters.find((p) => p.in === "body").schema.properties.environment.type, "string")
    assert.strictEqual(create.operation.responses[201].schema.$ref, "#/definitions/Task")
    assert.isDefined(operationFor("GET", "/api/project/1/tasks/7")!.operation.responses[200])
    assert.isDefined(operationFor("POST", "/api/project/1/tasks/7/stop")!.operation.responses[204])
    assert.deepStrictEqual(spec.definitions.Task.properties.id, { type: "integer", example: 23 })
    assert.strictEqual(spec.definitions.Task.properties.status.type, "string")
    // The password login: no security of its own, `{auth, password}`, 204; then the `cookie` scheme.
    const login = operationFor("POST", "/api/auth/login")!
    assert.deepStrictEqual(login.operation.security, [])
    assert.strictEqual(login.parameters.find((p) => p.in === "body").schema.$ref, "#/definitions/Login")
    assert.hasAllKeys(spec.definitions.Login.properties, ["auth", "password"])
    assert.isDefined(login.operation.responses[204])
    assert.deepStrictEqual(spec.securityDefinitions.cookie, { type: "apiKey", name: "Cookie", in: "header" })
    assert.deepStrictEqual(spec.security, [{ bearer: [] }, { cookie: [] }])
  })

  it("the checker itself rejects what the spec forbids", () => {
    const base: RecordedRequest = {
      method: "POST",
      path: "/api/project/1/tasks",
      authorization: `Bearer ${TOKEN}`,
      cookie: undefined,
      contentType: "application/json",
      body: JSON.stringify({ template_id: 1, environment: { service_id: "x" } }),
      status: 201,
      responseContentType: "application/json",
      responseSetCookie: undefined,
      responseBody: JSON.stringify({ id: "seven", status: "waiting" })
    }
    const problems = checkExchange(base)
    assert.isTrue(problems.some((p) => p.includes("request body /environment must be string")))
    assert.isTrue(problems.some((p) => p.includes("201 body /id must be integer")))
    assert.deepStrictEqual(checkExchange({ ...base, path: "/api/project/1/taskz" }), [
      "POST /api/project/1/taskz: no such operation in the spec"
    ])
    assert.lengthOf(checkExchange({ ...base, status: 418, body: "{}", responseBody: "" }), 1)
    const good = { ...base, body: JSON.stringify({ template_id: 1, environment: "{}" }), responseBody: "{}" }
    assert.deepStrictEqual(checkExchange(good), [])
    assert.deepStrictEqual(checkExchange({ ...good, authorization: undefined }), [
      "POST /api/project/1/tasks: sent without credentials"
    ])
    assert.deepStrictEqual(checkExchange({ ...good, authorization: undefined, cookie: "semaphore=abc" }), [])
    const login: RecordedRequest = {
      ...base,
      path: "/api/auth/login",
      authorization: undefined,
      body: JSON.stringify({ auth: "hestia", password: "x" }),
      status: 204,
      responseContentType: undefined,
      responseSetCookie: "semaphore=abc; Path=/; HttpOnly",
      responseBody: ""
    }
    assert.deepStrictEqual(checkExchange(login), [])
    assert.deepStrictEqual(checkExchange({ ...login, body: JSON.stringify({ username: "hestia", password: "x" }) }), [
      "POST /api/auth/login: login / must have required property 'auth'"
    ])
    assert.deepStrictEqual(checkExchange({ ...login, responseSetCookie: undefined }), [
      "POST /api/auth/login: a login without a `semaphore` session cookie (Set-Cookie: undefined)"
    ])
    assert.deepStrictEqual(checkExchange({ ...login, authorization: `Bearer ${TOKEN}` }), [
      "POST /api/auth/login: a token sent where none is asked for"
    ])
  })
})

describe("client requests and double answers conform to the spec", () => {
  it.live("start, failed start, stop, timeout and stop-on-timeout, bad token", () =>
    Effect.gen(function* () {
      const double = yield* serveDouble({
        token: TOKEN,
        templates: [1, 2],
        script: (task) =>
          task.ordinal === 2 && task.action === "start"
            ? plans.error(1)
            : task.ordinal === 3 && task.action === "start"
              ? plans.hold()
              : plans.success(2)
      })
      assert.isTrue(Exit.isSuccess(yield* runClient(double, "start")))
      assert.isTrue(Exit.isFailure(yield* runClient(double, "start")))
      assert.isTrue(Exit.isSuccess(yield* runClient(double, "stop")))
      const timedOut = yield* runClient(double, "start", { semaphore_task_timeout: 0.2 })
      assert.isTrue(Exit.isFailure(timedOut))
      assert.isTrue(Exit.isFailure(yield* runClient(double, "start", {}, { token: "wrong-token" })))

      const seen = new Set(double.requests.map((r) => `${r.method} ${r.path.replace(/\d+/g, "N")} ${r.status}`))
      // The run covered every route the client uses, and the 401 departure.
      for (const expected of [
        "POST /api/project/N/tasks 201",
        "GET /api/project/N/tasks/N 200",
        "POST /api/project/N/tasks/N/stop 204",
        "POST /api/project/N/tasks 401"
      ]) {
        assert.isTrue(seen.has(expected), `no ${expected} in ${[...seen].join(", ")}`)
      }
      const problems = double.requests.flatMap((r) => checkExchange(r))
      assert.deepStrictEqual(problems, [])
    }).pipe(Effect.scoped)
  )

  it.live("the double's departures from the spec are the live server's", () =>
    Effect.gen(function* () {
      const double = yield* serveDouble({ token: TOKEN, templates: [1] })
      const asObject = yield* raw(
        double,
        "POST",
        "/api/project/1/tasks",
        JSON.stringify({ template_id: 1, environment: { service_id: "x" } })
      )
      assert.strictEqual(asObject.status, 400)
      const badTemplate = yield* raw(
        double,
        "POST",
        "/api/project/1/tasks",
        JSON.stringify({ template_id: 99, environment: "{}" })
      )
      assert.strictEqual(badTemplate.status, 500)
      const created = yield* raw(
        double,
        "POST",
        "/api/project/1/tasks",
        JSON.stringify({ template_id: 1, environment: "{}" })
      )
      assert.strictEqual(created.status, 201)
      assert.strictEqual(JSON.parse(created.body).status, "waiting")
      assert.strictEqual((yield* raw(double, "GET", "/api/project/1/tasks/999")).status, 400)
      assert.strictEqual((yield* raw(double, "POST", "/api/project/1/tasks/1/stop")).status, 400)
      assert.strictEqual((yield* raw(double, "POST", "/api/project/1/tasks/1/stop", "{}")).status, 204)
      const noToken = yield* raw(double, "GET", "/api/project/1/tasks/1", undefined, null)
      assert.deepStrictEqual(noToken, { status: 401, body: "" })
      const wrongToken = yield* raw(double, "GET", "/api/project/1/tasks/1", undefined, "nope")
      assert.deepStrictEqual(wrongToken, { status: 401, body: "" })

      // The login, as the live server does it (api/login.go): a body that does not decode is an empty 400; an
      // unknown user or a wrong password an empty 401; a match 204 with the `semaphore` session cookie.
      const login = (body: string) => raw(double, "POST", "/api/auth/login", body, null)
      assert.deepStrictEqual(yield* login("not json"), { status: 400, body: "" })
      assert.deepStrictEqual(yield* login(JSON.stringify({ auth: "hestia", password: "wrong" })), {
        status: 401,
        body: ""
      })
      assert.deepStrictEqual((yield* login(JSON.stringify({ password: "test-password" }))).status, 401)
      // The user name is matched case-insensitively.
      const ok = yield* login(JSON.stringify({ auth: "HESTIA", password: "test-password" }))
      assert.strictEqual(ok.status, 204)
      assert.match(ok.setCookie!, /^semaphore=[^;]+; Path=\/; HttpOnly$/)
      const session = ok.setCookie!.split(";")[0]!
      assert.strictEqual((yield* raw(double, "GET", "/api/project/1/tasks/1", undefined, null, session)).status, 200)
      // A Bearer header decides alone, even next to a good cookie.
      assert.strictEqual((yield* raw(double, "GET", "/api/project/1/tasks/1", undefined, "nope", session)).status, 401)
      double.expireSessions()
      const expired = yield* raw(double, "GET", "/api/project/1/tasks/1", undefined, null, session)
      assert.deepStrictEqual(expired, { status: 401, body: "" })
      assert.strictEqual(
        (yield* raw(double, "GET", "/api/project/1/tasks/1", undefined, null, "semaphore=forged")).status,
        401
      )

      // Each answer is either the spec's or a listed departure (these requests are not the client's).
      assert.deepStrictEqual(
        double.requests.flatMap((r) => checkExchange(r, { fromClient: false })),
        []
      )
    }).pipe(Effect.scoped)
  )

  it.live("password login: login, session cookie, re-login after the session expires, wrong password", () =>
    Effect.gen(function* () {
      const double = yield* serveDouble({
        token: TOKEN,
        user: USER,
        templates: [1, 2],
        // The first start task runs long enough for the session to expire under it.
        script: (task) => (task.ordinal === 1 && task.action === "start" ? plans.hold() : plans.success(1)),
        onStatus: (task) => {
          if (task.ordinal === 1 && task.action === "start" && task.status === "running") {
            double.expireSessions()
            double.release(task.id)
          }
        }
      })
      const asUser = { login: USER }
      assert.isTrue(Exit.isSuccess(yield* runClient(double, "start", {}, asUser)))
      assert.isTrue(Exit.isSuccess(yield* runClient(double, "stop", {}, asUser)))
      const wrong = yield* runClient(double, "start", {}, { login: { ...USER, password: "nope" } })
      assert.isTrue(Exit.isFailure(wrong))
      assert.include(String(wrong), "SemaphoreAuthFailed")

      const lines = double.requests.map((r) => `${r.method} ${r.path.replace(/\d+/g, "N")} ${r.status}`)
      // One login per gateway client, one more after the 401, and the wrong password's refused one.
      assert.deepStrictEqual(
        lines.filter((line) => line.includes("/auth/login")),
        ["POST /api/auth/login 204", "POST /api/auth/login 204", "POST /api/auth/login 204", "POST /api/auth/login 401"]
      )
      assert.include(lines, "GET /api/project/N/tasks/N 401")
      const afterRefusal = lines.indexOf("GET /api/project/N/tasks/N 401")
      assert.deepStrictEqual(lines.slice(afterRefusal + 1, afterRefusal + 3), [
        "POST /api/auth/login 204",
        "GET /api/project/N/tasks/N 200"
      ])
      assert.isTrue(double.requests.every((r) => r.authorization === undefined))
      assert.deepStrictEqual(
        double.requests.flatMap((r) => checkExchange(r)),
        []
      )
    }).pipe(Effect.scoped)
  )

  it.live("tasks of one template run one at a time: the second waits in `waiting`", () =>
    Effect.gen(function* () {
      const double = yield* serveDouble({ token: TOKEN, templates: [1, 2], advance: "manual" })
      const create = (templateId: number) =>
        raw(double, "POST", "/api/project/1/tasks", JSON.stringify({ template_id: templateId, environment: "{}" }))
      yield* create(1)
      yield* create(1)
      yield* create(2)
      double.tick()
      double.tick()
      assert.deepStrictEqual(
        double.tasks.map((t) => t.status),
        ["running", "waiting", "running"]
      )
      double.tick()
      assert.deepStrictEqual(
        double.tasks.map((t) => t.status),
        ["success", "starting", "success"]
      )
      const polled = yield* raw(double, "GET", "/api/project/1/tasks/2")
      assert.strictEqual(JSON.parse(polled.body).status, "starting")
      assert.deepStrictEqual(
        double.requests.flatMap((r) => checkExchange(r)),
        []
      )
    }).pipe(Effect.scoped)
  )
})
