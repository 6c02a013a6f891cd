import {
  HttpApiBuilder,
  HttpApiError,
  HttpRouter,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Cause, Effect, Layer, ParseResult } from "effect"
import { Auth } from "../auth/Auth.ts"
import { LiveConfig } from "../config/LiveConfig.ts"
import { ConfigInvalid, InternalError, NotFound } from "../domain/Errors.ts"
import { type GatewayError, isGatewayError, toErrorResponse } from "../domain/HttpErrors.ts"
import { StoreHealth } from "../store/StoreHealth.ts"
import { Strategies } from "../strategies/Strategies.ts"
import { ActivityHandlers } from "./ActivityRoutes.ts"
import { ControlApi } from "./ControlApi.ts"
import { AUTH_DISABLED_WARNING, type DashboardAssets, routes as dashboardRoutes } from "./DashboardRoutes.ts"
import { DocsHandlers } from "./DocsRoutes.ts"
import { LogsHandlers } from "./LogsRoutes.ts"
import { EventHandlers, MetricsHandlers } from "./ObservabilityRoutes.ts"
import { badRequestOf } from "./SearchParams.ts"
import { GroupHandlers, RequestHandlers, ServiceHandlers } from "./ServiceRoutes.ts"

/** 200 even when degraded (database writes failing): the gateway still serves, a healthcheck must not kill it. */
const HealthHandlers = HttpApiBuilder.group(ControlApi, "health", (handlers) =>
  Effect.gen(function* () {
    const live = yield* LiveConfig
    const auth = yield* Auth
    const storeHealth = yield* StoreHealth
    return handlers.handle("healthz", () =>
      Effect.sync(() => {
        const store = storeHealth.status()
        return {
          status: store.writes === "ok" ? ("ok" as const) : ("degraded" as const),
          services: live.current().services.size,
          auth: auth.enabled() ? ("enabled" as const) : ("disabled" as const),
          ...(auth.enabled() ? {} : { warning: AUTH_DISABLED_WARNING }),
          store
        }
      })
    )
  })
)

const StrategyHandlers = HttpApiBuilder.group(ControlApi, "strategies", (handlers) =>
  Effect.map(Strategies, (strategies) => handlers.handle("list", () => strategies.list()))
)

/** `POST /v1/config/reload`: an invalid file is refused with its problem; the running configuration stays. */
const ConfigHandlers = HttpApiBuilder.group(ControlApi, "config", (handlers) =>
  Effect.map(LiveConfig, (live) =>
    handlers.handle("reload", () =>
      live.reload("api").pipe(
        Effect.map((reloaded) => ({ reloaded })),
        Effect.mapError((error) => new ConfigInvalid({ problem: error.message }))
      )
    )
  )
)

/** Every group of the declaration implemented (HttpApiBuilder.api checks that none is missing). */
const ApiRoutes = HttpApiBuilder.api(ControlApi).pipe(
  Layer.provide([
    HealthHandlers,
    ServiceHandlers,
    GroupHandlers,
    RequestHandlers,
    ActivityHandlers,
    LogsHandlers,
    EventHandlers,
    MetricsHandlers,
    StrategyHandlers,
    ConfigHandlers,
    DocsHandlers
  ])
)

/** The dashboard's page and files are plain routes in the same router (a page, not part of the API). */
const DashboardPages = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    const context = yield* Effect.context<DashboardAssets | LiveConfig | Auth>()
    yield* router.concat(HttpRouter.transform(dashboardRoutes, (handler) => Effect.provide(handler, context)))
  })
)

/** The one router of every control route; `/services/...` is served by the ProxyListener before it gets here. */
export const controlRouter = Effect.flatMap(
  Layer.build(Layer.mergeAll(ApiRoutes, DashboardPages).pipe(Layer.provideMerge(HttpApiBuilder.Router.Live))),
  (context) => Effect.provide(HttpApiBuilder.Router.router, context)
)

/** What a failed control request is answered with: its typed error, or a request that did not decode (400). */
const gatewayErrorOf = (error: unknown, request: HttpServerRequest.HttpServerRequest): GatewayError | undefined => {
  if (isGatewayError(error)) return error
  if (error instanceof HttpApiError.HttpApiDecodeError) return badRequestOf(error.issues[0])
  if (ParseResult.isParseError(error)) return badRequestOf(ParseResult.ArrayFormatter.formatErrorSync(error)[0])
  if (error instanceof HttpServerError.RouteNotFound) return new NotFound({ method: request.method, url: request.url })
  return undefined
}

/** A refused control request is logged (with its request id, from the annotation below); denials are Auth's to log. */
const answer = (error: GatewayError, request: HttpServerRequest.HttpServerRequest) => {
  const { status, headers, body } = toErrorResponse(error)
  const response = HttpServerResponse.unsafeJson(body, { status, headers })
  if (error._tag === "Unauthorized" || error._tag === "NotFound") return Effect.succeed(response)
  return Effect.logInfo(`control request refused: ${error.message}`).pipe(
    Effect.annotateLogs({
      event: "control_error",
      error: error._tag,
      status,
      method: request.method,
      path: request.url.split("?")[0]
    }),
    Effect.as(response)
  )
}

const INTERNAL_ERROR = toErrorResponse(new InternalError())

/** A bug: logged with its cause, answered 500 InternalError without it. */
const internalError = (cause: Cause.Cause<unknown>) =>
  Effect.logError("control request failed").pipe(
    Effect.annotateLogs({ event: "control_defect", cause: Cause.pretty(cause) }),
    Effect.as(HttpServerResponse.unsafeJson(INTERNAL_ERROR.body, { status: INTERNAL_ERROR.status }))
  )

/** Every control route but `/healthz` needs credentials when auth is on (see Auth.guardFor); checked before routing. */
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

/**
 * Every failure of a control route becomes its typed HTTP answer here (through the one table), and nowhere else; a
 * defect is logged and answered 500 in JSON. Every log line of a control request carries its X-Request-ID (set by
 * HttpGateway: the client's own, else a new one), and so does every answer.
 */
export const httpApp = Effect.gen(function* () {
  const app = yield* HttpRouter.toHttpApp(yield* controlRouter)
  // What HttpApi's routers expect of the platform (HttpPlatform, ETags, file system): none is used by these routes.
  const platform = yield* Layer.build(NodeHttpServer.layerContext)
  return Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Effect.zipRight(authorize, app).pipe(
      Effect.catchAllCause((cause) => {
        const failure = Cause.failureOption(cause)
        const error = failure._tag === "Some" ? gatewayErrorOf(failure.value, request) : undefined
        return error === undefined ? internalError(cause) : answer(error, request)
      }),
      Effect.map((response) => {
        const id = request.headers["x-request-id"]
        return id === undefined ? response : HttpServerResponse.setHeader(response, "x-request-id", id)
      }),
      Effect.annotateLogs("requestId", request.headers["x-request-id"])
    )
  ).pipe(Effect.provide(platform))
})
