import { readdirSync, readFileSync } from "node:fs"
import * as Path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, layer } from "@effect/vitest"
import { Cause, Effect, HashMap, Layer, Logger, LogLevel } from "effect"
import { hashKey, newKey } from "../../src/auth/Auth.ts"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { HttpGateway } from "../../src/http/HttpGateway.ts"
import * as OrchestratorByKind from "../../src/orchestrators/OrchestratorByKind.ts"
import { ServiceRegistry } from "../../src/registry/ServiceRegistry.ts"
import { AuthKeys } from "../../src/store/AuthKeys.ts"
import { call, callJson, eventually, freePort, gatewayUrl, processService, tempDir } from "../fixtures/Gateway.ts"

const KEY = newKey()
const OTHER_KEY = newKey()
const PASSWORD = "correct horse battery staple"
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`

/** Every log line the gateway writes, as JSON text (message, annotations, cause), at every level. */
const collectLogs = (lines: Array<string>) =>
  Layer.merge(
    Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ annotations, cause, message }) => {
        lines.push(
          JSON.stringify({
            message,
            ...Object.fromEntries(HashMap.toEntries(annotations)),
            cause: Cause.isEmpty(cause) ? undefined : Cause.pretty(cause)
          })
        )
      })
    ),
    Logger.minimumLogLevel(LogLevel.All)
  )

const gatewayWith = (yaml: string, logs: Array<string>) =>
  Layer.mergeAll(HttpGateway.Default, ServiceRegistry.Default, AuthKeys.Default).pipe(
    Layer.provide(OrchestratorByKind.layer),
    Layer.provide(HestiaConfig.layerYaml(yaml)),
    Layer.provide(NodeContext.layer),
    Layer.provide(collectLogs(logs)),
    Layer.orDie
  )

const echoService = async (id: string) => processService(id, await freePort(), { settings: { idle_timeout_ms: 0 } })

// ---------------------------------------------------------------------------

const onDir = tempDir("hestia-auth-")
const onLogs: Array<string> = []
const onYaml = `server: { host: 127.0.0.1, port: 0 }
database: ${JSON.stringify(Path.join(onDir, "hestia.db"))}
auth:
  api_keys: [${JSON.stringify(KEY)}, ${JSON.stringify(OTHER_KEY)}]
  dashboard: { username: admin, password: ${JSON.stringify(PASSWORD)} }
services:
${await echoService("echo")}`

const withKey = { "x-api-key": KEY }

/** One request per route group, with the given headers: the status each answered. */
const routeGroups = (base: string, headers: Record<string, string>) =>
  Effect.all({
    healthz: call(`${base}/healthz`, { headers }),
    services: call(`${base}/v1/services`, { headers }),
    status: call(`${base}/v1/services/echo/status`, { headers }),
    start: call(`${base}/v1/services/echo/start`, { method: "POST", headers }),
    dispatch: call(`${base}/v1/requests`, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json" },
      body: JSON.stringify({ serviceId: "echo", method: "GET", path: "/x" })
    }),
    activity: call(`${base}/v1/activity`, { headers }),
    proxy: call(`${base}/services/echo/x`, { headers }),
    unknownService: call(`${base}/services/nope/x`, { headers }),
    unknownRoute: call(`${base}/v1/nothing-here`, { headers })
  }).pipe(Effect.map((responses) => Object.fromEntries(Object.entries(responses).map(([k, r]) => [k, r.status]))))

layer(gatewayWith(onYaml, onLogs), { excludeTestServices: true, timeout: "30 seconds" })("auth on", (it) => {
  it.effect(
    "every route group but /healthz wants a key: 401 without, 401 wrong, answered with X-API-Key or Bearer",
    () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const open = { healthz: 200 }
        const denied = {
          services: 401,
          status: 401,
          start: 401,
          dispatch: 401,
          activity: 401,
          proxy: 401,
          unknownService: 401,
          unknownRoute: 401
        }
        const allowed = {
          services: 200,
          status: 200,
          start: 202,
          dispatch: 200,
          activity: 200,
          proxy: 200,
          unknownService: 404,
          unknownRoute: 404
        }
        assert.deepStrictEqual(yield* routeGroups(base, {}), { ...open, ...denied })
        assert.deepStrictEqual(yield* routeGroups(base, { "x-api-key": "hk_wrong" }), { ...open, ...denied })
        assert.deepStrictEqual(yield* routeGroups(base, { authorization: "Bearer hk_wrong" }), { ...open, ...denied })
        // The first allowed start initiates it (202); afterwards it is hot (200).
        assert.deepStrictEqual(yield* routeGroups(base, withKey), { ...open, ...allowed })
        assert.deepStrictEqual(yield* routeGroups(base, { authorization: `Bearer ${OTHER_KEY}` }), {
          ...open,
          ...allowed,
          start: 200
        })
      })
  )

  it.effect("a 401 is JSON with WWW-Authenticate; /healthz says auth is enabled", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      for (const url of [`${base}/v1/services`, `${base}/services/echo/x`]) {
        const response = yield* callJson(url)
        assert.strictEqual(response.status, 401)
        assert.strictEqual(response.headers["www-authenticate"], 'Bearer realm="hestia"')
        assert.match(String(response.headers["content-type"]), /application\/json/)
        assert.deepStrictEqual(response.json, { error: "Unauthorized", message: "missing API key" })
      }
      const health = yield* callJson(`${base}/healthz`)
      assert.strictEqual(health.json.auth, "enabled")
      assert.isUndefined(health.json.warning)
    })
  )

  it.effect("the dashboard (GET /) wants its Basic credentials; those also open the API", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const none = yield* call(`${base}/`)
      assert.strictEqual(none.status, 401)
      assert.strictEqual(none.headers["www-authenticate"], 'Basic realm="hestia"')
      assert.strictEqual((yield* call(`${base}/`, { headers: { authorization: basic("admin", "nope") } })).status, 401)
      assert.strictEqual((yield* call(`${base}/`, { headers: withKey })).status, 401)
      const page = yield* call(`${base}/`, { headers: { authorization: basic("admin", PASSWORD) } })
      assert.strictEqual(page.status, 200)
      assert.match(String(page.headers["content-type"]), /text\/html/)
      assert.notInclude(page.text, "authentication is disabled")
      const api = yield* call(`${base}/v1/services`, { headers: { authorization: basic("admin", PASSWORD) } })
      assert.strictEqual(api.status, 200)
      // The page's own files are behind the same login; so are the routes it reads.
      const script = yield* call(`${base}/dashboard/dashboard.js`)
      assert.strictEqual(script.status, 401)
      assert.strictEqual(script.headers["www-authenticate"], 'Basic realm="hestia"')
      const withLogin = { authorization: basic("admin", PASSWORD) }
      assert.strictEqual((yield* call(`${base}/dashboard/dashboard.js`, { headers: withLogin })).status, 200)
      assert.strictEqual((yield* call(`${base}/dashboard/dashboard.css`, { headers: withLogin })).status, 200)
      for (const path of ["/v1/services/echo/logs", "/v1/metrics/history", "/v1/events"]) {
        assert.strictEqual((yield* call(`${base}${path}`)).status, 401, path)
      }
      assert.strictEqual((yield* call(`${base}/v1/services/echo/logs`, { headers: withLogin })).status, 200)
      assert.strictEqual((yield* call(`${base}/v1/metrics/history`, { headers: withKey })).status, 200)
    })
  )

  it.effect("the gateway's credentials never reach the upstream", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const viaHeader = yield* callJson(`${base}/services/echo/headers`, {
        headers: { "x-api-key": KEY, "x-custom": "kept" }
      })
      assert.strictEqual(viaHeader.status, 200)
      assert.isUndefined(viaHeader.json.headers["x-api-key"])
      assert.strictEqual(viaHeader.json.headers["x-custom"], "kept")
      const viaBearer = yield* callJson(`${base}/services/echo/headers`, {
        headers: { authorization: `Bearer ${KEY}` }
      })
      assert.strictEqual(viaBearer.status, 200)
      assert.isUndefined(viaBearer.json.headers.authorization)
      assert.notInclude(JSON.stringify(viaBearer.json.headers), KEY)
      const dispatched = yield* callJson(`${base}/v1/requests`, {
        method: "POST",
        headers: { ...withKey, "content-type": "application/json" },
        body: JSON.stringify({ serviceId: "echo", method: "GET", path: "/h", headers: { "x-api-key": KEY } })
      })
      assert.strictEqual(dispatched.status, 200)
      assert.notInclude(JSON.stringify(dispatched.json.body.headers), KEY)
    })
  )
})

// ---------------------------------------------------------------------------

// Its own gateway: denials are rate limited per second, so other tests' denials must not crowd this one out.
const auditDir = tempDir("hestia-auth-audit-")
const auditLogs: Array<string> = []
const auditYaml = `server: { host: 127.0.0.1, port: 0 }
database: ${JSON.stringify(Path.join(auditDir, "hestia.db"))}
auth:
  api_keys: [${JSON.stringify(KEY)}, ${JSON.stringify(OTHER_KEY)}]
services:
${await echoService("echo")}`

layer(gatewayWith(auditYaml, auditLogs), { excludeTestServices: true, timeout: "30 seconds" })("auth audit", (it) => {
  it.effect("denials are activity rows and log lines; the key is in neither, nor anywhere in the database", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const wrong = `${KEY}-but-wrong`
      yield* call(`${base}/services/echo/secret?token=${KEY}`, {
        headers: { "x-api-key": wrong, "x-request-id": "denied-1" }
      })
      const rows: Array<any> = yield* eventually(
        Effect.map(callJson(`${base}/v1/activity?serviceId=echo`, { headers: withKey }), (r) => r.json.activity),
        (rows: Array<any>) => rows.some((r) => r.requestId === "denied-1")
      )
      const row = rows.find((r) => r.requestId === "denied-1")
      assert.strictEqual(row.type, "auth_denied")
      assert.strictEqual(row.serviceId, "echo")
      assert.deepStrictEqual(row.detail, {
        reason: "invalid API key",
        method: "GET",
        path: "/services/echo/secret",
        remoteAddress: "127.0.0.1"
      })
      const logLines = auditLogs.filter((line) => line.includes('"event":"auth_denied"'))
      assert.isAbove(logLines.length, 0)
      assert.isTrue(auditLogs.some((line) => line.includes("denied-1")))
      for (const line of auditLogs) {
        assert.notInclude(line, KEY)
        assert.notInclude(line, OTHER_KEY)
      }
      // The database files (main, WAL): hashes only.
      const files = readdirSync(auditDir).filter((name) => name.startsWith("hestia.db"))
      assert.include(files, "hestia.db")
      const bytes = Buffer.concat(files.map((name) => readFileSync(Path.join(auditDir, name))))
      for (const key of [KEY, OTHER_KEY]) {
        assert.strictEqual(bytes.indexOf(key), -1)
        assert.notStrictEqual(bytes.indexOf(hashKey(key)), -1)
      }
      const keys = yield* Effect.flatMap(AuthKeys, (store) => store.authKeys())
      assert.deepStrictEqual(
        keys.map((k) => [k.label, k.hash]),
        [
          ["config-1", hashKey(KEY)],
          ["config-2", hashKey(OTHER_KEY)]
        ]
      )
    })
  )
})

// ---------------------------------------------------------------------------

const offLogs: Array<string> = []
const offYaml = `server: { host: 127.0.0.1, port: 0 }
services:
${await echoService("echo")}`

describe("auth off", () => {
  layer(gatewayWith(offYaml, offLogs), { excludeTestServices: true, timeout: "30 seconds" })("no keys", (it) => {
    it.effect("everything is open; /healthz, the start log and the page warn about it", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const statuses = yield* routeGroups(base, {})
        assert.deepStrictEqual(statuses, {
          healthz: 200,
          services: 200,
          status: 200,
          start: 202,
          dispatch: 200,
          activity: 200,
          proxy: 200,
          unknownService: 404,
          unknownRoute: 404
        })
        const health = yield* callJson(`${base}/healthz`)
        assert.strictEqual(health.json.auth, "disabled")
        assert.match(health.json.warning, /authentication is disabled/)
        assert.isTrue(offLogs.some((line) => line.includes('"event":"auth_disabled"')))
        const page = yield* call(`${base}/`)
        assert.strictEqual(page.status, 200)
        assert.include(page.text, "authentication is disabled")
      })
    )

    it.effect("the upstream's own Authorization and X-API-Key pass through untouched", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const response = yield* callJson(`${base}/services/echo/headers`, {
          headers: { authorization: "Bearer upstream-token", "x-api-key": "upstream-key" }
        })
        assert.strictEqual(response.json.headers.authorization, "Bearer upstream-token")
        assert.strictEqual(response.json.headers["x-api-key"], "upstream-key")
      })
    )
  })
})

// ---------------------------------------------------------------------------

const keysOnlyYaml = `server: { host: 127.0.0.1, port: 0 }
auth:
  api_keys: [${JSON.stringify(KEY)}]
services:
${await echoService("echo")}`

layer(gatewayWith(keysOnlyYaml, []), { excludeTestServices: true, timeout: "30 seconds" })(
  "auth on with API keys and no dashboard login",
  (it) => {
    it.effect("the page needs a key: as a header, or in a browser's login as the password", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        for (const path of ["/", "/dashboard/dashboard.js"]) {
          const none = yield* call(`${base}${path}`)
          assert.strictEqual(none.status, 401, path)
          // Basic, so that a browser asks for it.
          assert.strictEqual(none.headers["www-authenticate"], 'Basic realm="hestia"')
          assert.strictEqual((yield* call(`${base}${path}`, { headers: withKey })).status, 200, path)
        }
        assert.strictEqual(
          (yield* call(`${base}/`, { headers: { authorization: basic("me", "hk_wrong") } })).status,
          401
        )
        const login = { authorization: basic("anyone", KEY) }
        const page = yield* call(`${base}/`, { headers: login })
        assert.strictEqual(page.status, 200)
        assert.notInclude(page.text, "authentication is disabled")
        // The browser repeats that login for the page's API calls.
        assert.strictEqual((yield* call(`${base}/v1/services`, { headers: login })).status, 200)
        assert.strictEqual(
          (yield* call(`${base}/v1/services`, { headers: { authorization: basic("x", "nope") } })).status,
          401
        )
      })
    )
  }
)

// ---------------------------------------------------------------------------

const forwardYaml = `server: { host: 127.0.0.1, port: 0 }
auth:
  api_keys: [${JSON.stringify(KEY)}]
  forward_authorization: true
services:
${await echoService("echo")}`

layer(gatewayWith(forwardYaml, []), { excludeTestServices: true, timeout: "30 seconds" })(
  "auth on with forward_authorization",
  (it) => {
    it.effect("Authorization reaches the upstream; X-API-Key still does not", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const bearer = yield* callJson(`${base}/services/echo/headers`, { headers: { authorization: `Bearer ${KEY}` } })
        assert.strictEqual(bearer.status, 200)
        assert.strictEqual(bearer.json.headers.authorization, `Bearer ${KEY}`)
        const both = yield* callJson(`${base}/services/echo/headers`, {
          headers: { "x-api-key": KEY, authorization: "Bearer upstream-token" }
        })
        assert.strictEqual(both.status, 200)
        assert.strictEqual(both.json.headers.authorization, "Bearer upstream-token")
        assert.isUndefined(both.json.headers["x-api-key"])
      })
    )
  }
)
