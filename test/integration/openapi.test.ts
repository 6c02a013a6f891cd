import { readFileSync } from "node:fs"
import * as Path from "node:path"
import SwaggerParser from "@apidevtools/swagger-parser"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { Auth, newKey } from "../../src/auth/Auth.ts"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { LiveConfig } from "../../src/config/LiveConfig.ts"
import { HttpErrors } from "../../src/domain/HttpErrors.ts"
import { ControlApi } from "../../src/http/ControlApi.ts"
import { DashboardAssets } from "../../src/http/DashboardRoutes.ts"
import { openApiDocument } from "../../src/http/DocsRoutes.ts"
import { controlRouter } from "../../src/http/HttpApp.ts"
import { EventSubscribers } from "../../src/http/ObservabilityRoutes.ts"
import { Draining } from "../../src/http/Shutdown.ts"
import { Metrics } from "../../src/observability/Metrics.ts"
import { MetricsHistory } from "../../src/observability/MetricsHistory.ts"
import { ServiceLogs } from "../../src/observability/ServiceLogs.ts"
import * as OrchestratorByKind from "../../src/orchestrators/OrchestratorByKind.ts"
import { Dispatcher } from "../../src/proxy/Dispatcher.ts"
import { LifecycleEvents } from "../../src/registry/LifecycleEvents.ts"
import { ServiceRegistry } from "../../src/registry/ServiceRegistry.ts"
import { ActivityLog } from "../../src/store/ActivityLog.ts"
import { StoreHealth } from "../../src/store/StoreHealth.ts"
import { Strategies } from "../../src/strategies/Strategies.ts"
import {
  call,
  callJson,
  freePort,
  gatewayLayer,
  gatewayUrl,
  gatewayYaml,
  processService,
  repoRoot
} from "../fixtures/Gateway.ts"

const toRoute = (method: string, openApiPath: string) =>
  `${method.toUpperCase()} ${openApiPath.replace(/\{(\w+)\}/g, ":$1")}`

const documented = (spec: Record<string, any>) =>
  new Set(
    Object.entries<Record<string, unknown>>(spec.paths).flatMap(([path, item]) =>
      Object.keys(item).map((method) => toRoute(method, path))
    )
  )

/** What the handlers need, as HttpGateway has it: the router of the real gateway, built the same way. */
const handlerServices = (yaml: string) =>
  Layer.mergeAll(
    EventSubscribers.Default,
    Auth.Default,
    ActivityLog.Default,
    Dispatcher.Default,
    ServiceRegistry.Default,
    StoreHealth.Default,
    Metrics.Default,
    MetricsHistory.Default,
    ServiceLogs.Default,
    DashboardAssets.Default,
    LifecycleEvents.Default,
    Strategies.Default,
    LiveConfig.Default,
    Draining.Default
  ).pipe(
    Layer.provide(OrchestratorByKind.layer),
    Layer.provideMerge(HestiaConfig.layerYaml(yaml)),
    Layer.provide(NodeContext.layer),
    Layer.provide(Logger.minimumLogLevel(LogLevel.Error)),
    Layer.orDie
  )

describe("the API's description (GET /openapi.json, GET /docs)", () => {
  it.live("is a valid OpenAPI 3.1 document, served as derived from the declaration", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(freePort)
      const context = yield* Layer.build(gatewayLayer(gatewayYaml(processService("echo", port))))
      const base = yield* Effect.provide(gatewayUrl, context)
      const served = yield* callJson(`${base}/openapi.json`)
      assert.strictEqual(served.status, 200)
      assert.match(String(served.headers["content-type"]), /^application\/json/)
      assert.deepStrictEqual(served.json, JSON.parse(JSON.stringify(openApiDocument())))
      assert.strictEqual(served.json.openapi, "3.1.0")

      // A real validator: the OpenAPI 3.1 schema, and every $ref resolved.
      const validated = yield* Effect.promise(() => SwaggerParser.validate(structuredClone(served.json)))
      assert.strictEqual(validated.info.title, "Hestia control API")

      // Each error's status is the one table's: every declared error answer is documented under that status.
      for (const [path, item] of Object.entries<Record<string, any>>(served.json.paths)) {
        for (const [method, op] of Object.entries<Record<string, any>>(item)) {
          for (const [status, response] of Object.entries<Record<string, any>>(op.responses)) {
            const schema = response.content?.["application/json"]?.schema
            const refs: Array<string> = (schema?.anyOf ?? [schema]).flatMap((s: { $ref?: string } | undefined) =>
              s?.$ref === undefined ? [] : [s.$ref.slice(s.$ref.lastIndexOf("/") + 1)]
            )
            for (const name of refs.filter((ref) => ref in HttpErrors)) {
              assert.strictEqual(
                String(HttpErrors[name as keyof typeof HttpErrors].status),
                status,
                `${method} ${path} ${name}`
              )
            }
          }
        }
      }
      // No HttpApi decode error is described: the gateway answers those as BadRequest.
      assert.notInclude(JSON.stringify(served.json), "HttpApiDecodeError")
      // Credentials follow the gateway's own rule: /healthz open, /docs the dashboard login, the rest a key.
      assert.deepStrictEqual(served.json.paths["/healthz"].get.security, [])
      assert.deepStrictEqual(served.json.paths["/docs"].get.security, [{ basic: [] }])
      assert.deepStrictEqual(served.json.paths["/v1/services"].get.security, [
        { apiKey: [] },
        { bearer: [] },
        { basic: [] }
      ])
    }).pipe(Effect.scoped)
  )

  it.live("names every route the server's router answers (the dashboard's page aside), and no other", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(freePort)
      const router = yield* controlRouter.pipe(
        Effect.provide(handlerServices(gatewayYaml(processService("echo", port))))
      )
      const routes = new Set(Array.from(router.routes, (route) => `${route.method} ${route.path}`))
      assert.strictEqual(router.mounts.length, 0)
      const dashboard = [...routes].filter((route) => route === "GET /" || route.startsWith("GET /dashboard/"))
      assert.includeMembers(dashboard, ["GET /", "GET /dashboard/dashboard.js"])
      const api = new Set([...routes].filter((route) => !dashboard.includes(route)))
      assert.deepStrictEqual([...api].sort(), [...documented(openApiDocument())].sort())
      // The same for the declaration's reflection (what HttpApiClient derives the CLI's calls from).
      const declared = Object.values(ControlApi.groups).flatMap((group) =>
        Object.values(group.endpoints).map((endpoint) => `${endpoint.method} ${endpoint.path}`)
      )
      assert.deepStrictEqual(declared.sort(), [...api].sort())
    }).pipe(Effect.scoped)
  )

  it("names every route of the README's HTTP API table", () => {
    const readme = readFileSync(Path.join(repoRoot, "README.md"), "utf8")
    const section = readme.slice(readme.indexOf("## HTTP API"), readme.indexOf("Errors are JSON"))
    const rows = [...section.matchAll(/^\| `([A-Z]+) ([^`?[]+)/gm)]
      .flatMap((row) => row[0].split(", ").map((part) => /`([A-Z]+) ([^`?[]+)/.exec(part)!))
      .map((match) => toRoute(match[1]!, match[2]!))
    assert.isAbove(rows.length, 15)
    const doc = documented(openApiDocument())
    for (const route of rows) {
      // The proxy and the model endpoints forward to services: not control routes.
      if (/^ANY \/(services|openai|ollama)\//.test(route) || route === "GET /") continue
      assert.isTrue(doc.has(route), `${route} (README) is not in the document`)
    }
  })

  it.live("GET /docs is a page of the whole document, with no script and nothing from elsewhere", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(freePort)
      const context = yield* Layer.build(gatewayLayer(gatewayYaml(processService("echo", port))))
      const base = yield* Effect.provide(gatewayUrl, context)
      const page = yield* call(`${base}/docs`)
      assert.strictEqual(page.status, 200)
      assert.match(String(page.headers["content-type"]), /^text\/html/)
      const csp = String(page.headers["content-security-policy"])
      assert.match(csp, /default-src 'none'/)
      assert.notMatch(csp, /script-src/)
      assert.notInclude(page.text, "<script")
      // Every link is inside the page or to the gateway itself.
      for (const [, href] of page.text.matchAll(/(?:href|src)="([^"]*)"/g)) assert.match(href!, /^(#|\/)/)
      for (const route of documented(openApiDocument())) {
        const [method, path] = route.split(" ")
        assert.include(page.text, `${method} ${path!.replace(/:(\w+)/g, "{$1}")}`)
      }
      assert.include(page.text, 'id="schema-ServiceStatus"')
    }).pipe(Effect.scoped)
  )

  it.live("with auth on: /openapi.json needs a key, /docs the dashboard's login", () =>
    Effect.gen(function* () {
      const key = newKey()
      const port = yield* Effect.promise(freePort)
      const yaml = `${gatewayYaml(processService("echo", port))}auth:\n  api_keys: [${JSON.stringify(key)}]\n  dashboard: { username: admin, password: pw }\n`
      const context = yield* Layer.build(gatewayLayer(yaml))
      const base = yield* Effect.provide(gatewayUrl, context)
      assert.strictEqual((yield* call(`${base}/openapi.json`)).status, 401)
      assert.strictEqual((yield* call(`${base}/openapi.json`, { headers: { "x-api-key": key } })).status, 200)
      const docs = yield* call(`${base}/docs`)
      assert.strictEqual(docs.status, 401)
      assert.strictEqual(docs.headers["www-authenticate"], 'Basic realm="hestia"')
      const basic = `Basic ${Buffer.from("admin:pw").toString("base64")}`
      assert.strictEqual((yield* call(`${base}/docs`, { headers: { authorization: basic } })).status, 200)
    }).pipe(Effect.scoped)
  )
})
