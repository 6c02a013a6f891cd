import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, ParseResult, Schema } from "effect"
import { Auth } from "../auth/Auth.ts"
import { HestiaConfig } from "../config/HestiaConfig.ts"
import { BadRequest } from "../domain/Errors.ts"
import { type GatewayError, toErrorResponse } from "../domain/HttpErrors.ts"
import { ServiceProxy } from "../proxy/ServiceProxy.ts"
import { ServiceRegistry } from "../registry/ServiceRegistry.ts"
import { StoreHealth } from "../store/StoreHealth.ts"
import { Strategies } from "../strategies/Strategies.ts"
import { activity } from "./ActivityRoutes.ts"
import { routes as observabilityRoutes } from "./ObservabilityRoutes.ts"

const Method = Schema.Literal("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

/** `POST /v1/requests`: a body that is a string is sent as is; any other JSON value is sent as JSON. */
export const DispatchBody = Schema.Struct({
  serviceId: Schema.NonEmptyString,
  method: Method,
  path: Schema.String,
  headers: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  body: Schema.optional(Schema.Unknown)
})

const ServiceParams = Schema.Struct({ id: Schema.String })

const errorResponse = (error: GatewayError) => {
  const { status, headers, body } = toErrorResponse(error)
  return HttpServerResponse.unsafeJson(body, { status, headers })
}

const badRequest = (reason: string) => errorResponse(new BadRequest({ reason }))

const TEXTUAL = /^(text\/|application\/(json|x-ndjson|xml|javascript|x-www-form-urlencoded)|[^;]*\+(json|xml))/i

/** A collected upstream body as JSON: parsed when JSON, text when textual, base64 otherwise. */
const bodyOut = (contentType: string | undefined, body: Buffer) => {
  if (body.length === 0) return { body: null }
  if (contentType !== undefined && /json/i.test(contentType)) {
    try {
      return { body: JSON.parse(body.toString("utf8")) as unknown }
    } catch {
      // not JSON after all: fall through to text
    }
  }
  if (contentType === undefined || TEXTUAL.test(contentType)) return { body: body.toString("utf8") }
  return { body: body.toString("base64"), bodyEncoding: "base64" }
}

const dispatch = Effect.gen(function* () {
  const input = yield* HttpServerRequest.schemaBodyJson(DispatchBody)
  const proxy = yield* ServiceProxy
  const headers: Record<string, string> = { ...input.headers }
  let body: string | undefined
  if (typeof input.body === "string") body = input.body
  else if (input.body !== undefined) {
    body = JSON.stringify(input.body)
    if (!Object.keys(headers).some((name) => name.toLowerCase() === "content-type")) {
      headers["content-type"] = "application/json"
    }
  }
  const answer = yield* proxy.dispatch({
    serviceId: input.serviceId,
    method: input.method,
    path: input.path,
    headers,
    body
  })
  const contentType = answer.headers["content-type"]
  return yield* HttpServerResponse.json(
    {
      status: answer.status,
      headers: answer.headers,
      ...bodyOut(typeof contentType === "string" ? contentType : undefined, answer.body)
    },
    { status: answer.status }
  )
})

const AUTH_DISABLED_WARNING = "authentication is disabled: anyone who can reach this port can use every service"

/** 200 even when degraded (database writes failing): the gateway still serves, a healthcheck must not kill it. */
const healthz = Effect.gen(function* () {
  const config = yield* HestiaConfig
  const auth = yield* Auth
  const store = (yield* StoreHealth).status()
  return yield* HttpServerResponse.json({
    status: store.writes === "ok" ? "ok" : "degraded",
    services: config.services.size,
    auth: auth.enabled() ? "enabled" : "disabled",
    ...(auth.enabled() ? {} : { warning: AUTH_DISABLED_WARNING }),
    store
  })
})

/** A placeholder until the dashboard lands; the route and its Basic auth guard are real. */
const dashboard = Effect.map(Auth, (auth) =>
  HttpServerResponse.html(`<!doctype html>
<html><head><meta charset="utf-8"><title>Hestia</title></head>
<body><h1>Hestia</h1>
${auth.enabled() ? "" : `<p role="alert"><strong>Warning:</strong> ${AUTH_DISABLED_WARNING}.</p>`}
<p>The dashboard is coming. Meanwhile: <a href="/v1/services">/v1/services</a>, <a href="/v1/activity">/v1/activity</a>.</p>
</body></html>
`)
)

/** Every control route but `/healthz` needs credentials when auth is on (see Auth.guardFor). */
const authorize = Effect.gen(function* () {
  const request = yield* HttpServerRequest.HttpServerRequest
  const auth = yield* Auth
  const denied = auth.check({
    method: request.method,
    url: request.url,
    headers: request.headers,
    remoteAddress: request.remoteAddress._tag === "Some" ? request.remoteAddress.value : undefined
  })
  if (denied !== undefined) return yield* denied
})

/** The control routes; `/services/...` is served by the ServiceProxy's listener before it gets here. */
export const routes = HttpRouter.empty.pipe(
  HttpRouter.get("/healthz", healthz),
  HttpRouter.get("/", dashboard),
  HttpRouter.get("/v1/activity", activity),
  HttpRouter.get(
    "/v1/services",
    Effect.flatMap(ServiceRegistry, (registry) => registry.list).pipe(
      Effect.flatMap((services) => HttpServerResponse.json({ services }))
    )
  ),
  HttpRouter.get(
    "/v1/services/:id/status",
    Effect.gen(function* () {
      const { id } = yield* HttpRouter.schemaPathParams(ServiceParams)
      const registry = yield* ServiceRegistry
      return yield* HttpServerResponse.json(yield* registry.status(id))
    })
  ),
  HttpRouter.post(
    "/v1/services/:id/start",
    Effect.gen(function* () {
      const { id } = yield* HttpRouter.schemaPathParams(ServiceParams)
      const registry = yield* ServiceRegistry
      const before = yield* registry.start(id)
      const status = yield* registry.status(id)
      return yield* HttpServerResponse.json(
        { ...status, started: before !== "hot" },
        { status: before === "hot" ? 200 : 202 }
      )
    })
  ),
  HttpRouter.post(
    "/v1/services/:id/stop",
    Effect.gen(function* () {
      const { id } = yield* HttpRouter.schemaPathParams(ServiceParams)
      const registry = yield* ServiceRegistry
      yield* registry.stop(id)
      return yield* HttpServerResponse.json(yield* registry.status(id), { status: 202 })
    })
  ),
  HttpRouter.post("/v1/requests", dispatch),
  HttpRouter.get(
    "/v1/strategies",
    Effect.flatMap(Strategies, (strategies) => strategies.list()).pipe(Effect.flatMap(HttpServerResponse.json))
  ),
  HttpRouter.concat(observabilityRoutes)
)

/** Every failure of a control route becomes its typed HTTP answer here, and nowhere else. */
export const httpApp = HttpRouter.toHttpApp(routes).pipe(
  Effect.map((app) =>
    Effect.zipRight(authorize, app).pipe(
      Effect.catchTags({
        UnknownService: errorResponse,
        Unauthorized: errorResponse,
        QueueFull: errorResponse,
        QueueTimeout: errorResponse,
        StartupFailed: errorResponse,
        UpstreamUnavailable: errorResponse,
        UpstreamTimeout: errorResponse,
        BadRequest: errorResponse,
        ParseError: (error) => badRequest(ParseResult.TreeFormatter.formatErrorSync(error)),
        RequestError: (error) => badRequest(`request body: ${error.description ?? error.reason}`),
        RouteNotFound: (error) =>
          HttpServerResponse.unsafeJson(
            { error: "NotFound", message: `no route for ${error.request.method} ${error.request.url}` },
            { status: 404 }
          )
      })
    )
  )
)
