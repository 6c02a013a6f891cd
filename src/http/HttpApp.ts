import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Cause, Effect, ParseResult, Schema } from "effect"
import { Auth } from "../auth/Auth.ts"
import { LiveConfig } from "../config/LiveConfig.ts"
import { BadRequest, ConfigInvalid } from "../domain/Errors.ts"
import { type GatewayError, toErrorResponse } from "../domain/HttpErrors.ts"
import { Dispatcher } from "../proxy/Dispatcher.ts"
import { ServiceRegistry } from "../registry/ServiceRegistry.ts"
import { StoreHealth } from "../store/StoreHealth.ts"
import { Strategies } from "../strategies/Strategies.ts"
import { activity } from "./ActivityRoutes.ts"
import { AUTH_DISABLED_WARNING, routes as dashboardRoutes } from "./DashboardRoutes.ts"
import { logs } from "./LogsRoutes.ts"
import { routes as observabilityRoutes } from "./ObservabilityRoutes.ts"

const ServiceParams = Schema.Struct({ id: Schema.String })
const GroupParams = Schema.Struct({ name: Schema.String })
const StartParams = Schema.Struct({
  wait: Schema.optional(
    Schema.Literal("true", "false", "1", "0").annotations({ message: () => "wait must be true or false" })
  )
})

const errorResponse = (error: GatewayError) => {
  const { status, headers, body } = toErrorResponse(error)
  return HttpServerResponse.unsafeJson(body, { status, headers })
}

/** A refused control request is logged (with its request id, from the annotation below); denials are Auth's to log. */
const loggedError = (error: GatewayError) =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const response = errorResponse(error)
    if (error._tag !== "Unauthorized") {
      yield* Effect.logInfo(`control request refused: ${error.message}`).pipe(
        Effect.annotateLogs({
          event: "control_error",
          error: error._tag,
          status: response.status,
          method: request.method,
          path: request.url.split("?")[0]
        })
      )
    }
    return response
  })

const badRequest = (reason: string) => loggedError(new BadRequest({ reason }))

/** 200 even when degraded (database writes failing): the gateway still serves, a healthcheck must not kill it. */
const healthz = Effect.gen(function* () {
  const config = (yield* LiveConfig).current()
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

/** The control routes; `/services/...` is served by the ProxyListener before it gets here. */
export const routes = HttpRouter.empty.pipe(
  HttpRouter.get("/healthz", healthz),
  HttpRouter.get("/v1/activity", activity),
  HttpRouter.get("/v1/services/:id/logs", logs),
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
      const { wait } = yield* HttpServerRequest.schemaSearchParams(StartParams)
      const registry = yield* ServiceRegistry
      const request = yield* HttpServerRequest.HttpServerRequest
      const before = yield* registry.start(id, request.headers["x-request-id"])
      // ?wait=true: answered once hot (200), or with the start's typed error.
      if (wait === "true" || wait === "1") yield* registry.awaitHot(id)
      const status = yield* registry.status(id)
      const answeredHot = before === "hot" || status.state === "hot"
      return yield* HttpServerResponse.json(
        { ...status, started: before !== "hot" },
        { status: answeredHot && (before === "hot" || wait !== undefined) ? 200 : 202 }
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
  HttpRouter.post(
    "/v1/groups/:name/stop",
    Effect.gen(function* () {
      const { name } = yield* HttpRouter.schemaPathParams(GroupParams)
      const registry = yield* ServiceRegistry
      const stopped = yield* registry.stopGroup(name)
      const services = yield* Effect.forEach(stopped, ({ serviceId }) => registry.status(serviceId))
      return yield* HttpServerResponse.json({ group: name, services }, { status: 202 })
    })
  ),
  HttpRouter.post(
    "/v1/requests",
    Effect.flatMap(Dispatcher, (dispatcher) => dispatcher.route)
  ),
  HttpRouter.post(
    "/v1/config/reload",
    Effect.gen(function* () {
      const live = yield* LiveConfig
      const outcome = yield* live
        .reload("api")
        .pipe(Effect.mapError((error) => new ConfigInvalid({ problem: error.message })))
      return yield* HttpServerResponse.json({ reloaded: outcome })
    })
  ),
  HttpRouter.get(
    "/v1/strategies",
    Effect.flatMap(Strategies, (strategies) => strategies.list()).pipe(Effect.flatMap(HttpServerResponse.json))
  ),
  HttpRouter.concat(observabilityRoutes),
  HttpRouter.concat(dashboardRoutes)
)

/**
 * Every failure of a control route becomes its typed HTTP answer here, and nowhere else; a defect is logged and
 * answered 500 in JSON. Every log line of a control request carries its X-Request-ID (set by HttpGateway: the
 * client's own, else a new one).
 */
export const httpApp = HttpRouter.toHttpApp(routes).pipe(
  Effect.map((app) =>
    Effect.zipRight(authorize, app).pipe(
      Effect.catchTags({
        UnknownService: loggedError,
        UnknownGroup: loggedError,
        ConfigInvalid: loggedError,
        Unauthorized: loggedError,
        QueueFull: loggedError,
        QueueTimeout: loggedError,
        StartupFailed: loggedError,
        UpstreamUnavailable: loggedError,
        UpstreamTimeout: loggedError,
        UpstreamPoolFull: loggedError,
        ServiceBusy: loggedError,
        RequestBodyTooLarge: loggedError,
        UpstreamBodyTooLarge: loggedError,
        RequestBodyTimeout: loggedError,
        TooManySubscribers: loggedError,
        TooManyFollowers: loggedError,
        BadRequest: loggedError,
        ParseError: (error) => badRequest(ParseResult.TreeFormatter.formatErrorSync(error)),
        RouteNotFound: (error) =>
          HttpServerResponse.unsafeJson(
            { error: "NotFound", message: `no route for ${error.request.method} ${error.request.url}` },
            { status: 404 }
          )
      }),
      Effect.catchAllDefect((defect) =>
        Effect.logError("control request failed").pipe(
          Effect.annotateLogs({ event: "control_defect", cause: Cause.pretty(Cause.die(defect)) }),
          Effect.as(
            HttpServerResponse.unsafeJson({ error: "InternalError", message: "internal error" }, { status: 500 })
          )
        )
      ),
      Effect.flatMap((response) =>
        Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
          const id = request.headers["x-request-id"]
          return id === undefined ? response : HttpServerResponse.setHeader(response, "x-request-id", id)
        })
      ),
      (handled) =>
        Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
          Effect.annotateLogs(handled, "requestId", request.headers["x-request-id"])
        )
    )
  )
)
