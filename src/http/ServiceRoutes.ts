import { HttpApiBuilder, type HttpApiEndpoint, type HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Schema } from "effect"
import { Dispatcher } from "../proxy/Dispatcher.ts"
import { ServiceRegistry } from "../registry/ServiceRegistry.ts"
import { StartAnswer } from "./ApiSchemas.ts"
import { ControlApi } from "./ControlApi.ts"

type DispatchError = HttpApiEndpoint.HttpApiEndpoint.Error<
  HttpApiEndpoint.HttpApiEndpoint.WithName<(typeof ControlApi.groups)["requests"]["endpoints"][string], "dispatch">
>

const encodeStartAnswer = Schema.encode(StartAnswer)

/** `/v1/services`: list, status, start, stop. */
export const ServiceHandlers = HttpApiBuilder.group(ControlApi, "services", (handlers) =>
  Effect.gen(function* () {
    const registry = yield* ServiceRegistry
    return handlers
      .handle("list", () => Effect.map(registry.list, (services) => ({ services })))
      .handle("status", ({ path }) => registry.status(path.id))
      .handle("start", ({ path, urlParams, request }) =>
        Effect.gen(function* () {
          const before = yield* registry.start(path.id, request.headers["x-request-id"])
          // ?wait=true: answered once hot (200), or with the start's typed error.
          if (urlParams.wait === true) yield* registry.awaitHot(path.id)
          const status = yield* registry.status(path.id)
          const answeredHot = before === "hot" || status.state === "hot"
          // Two statuses with one schema: the answer is encoded by it, the status chosen here.
          const body = yield* encodeStartAnswer({ ...status, started: before !== "hot" }).pipe(Effect.orDie)
          return HttpServerResponse.unsafeJson(body, {
            status: answeredHot && (before === "hot" || urlParams.wait !== undefined) ? 200 : 202
          })
        })
      )
      .handle("stop", ({ path }) =>
        Effect.gen(function* () {
          yield* registry.stop(path.id)
          return yield* registry.status(path.id)
        })
      )
  })
)

/** `POST /v1/groups/{name}/stop`: every member stopped; their statuses after. */
export const GroupHandlers = HttpApiBuilder.group(ControlApi, "groups", (handlers) =>
  Effect.gen(function* () {
    const registry = yield* ServiceRegistry
    return handlers.handle(
      "stop",
      ({ path }) =>
        Effect.gen(function* () {
          const stopped = yield* registry.stopGroup(path.name)
          const services = yield* Effect.forEach(stopped, ({ serviceId }) => registry.status(serviceId))
          return { group: path.name, services }
        }).pipe(Effect.catchTag("UnknownService", Effect.die)) // a group's members are configured services
    )
  })
)

/**
 * `POST /v1/requests`: raw, so that the Dispatcher reads the body itself (bounded, depth-checked before parsing) and
 * answers with the upstream's status; the declaration describes the same body.
 */
export const RequestHandlers = HttpApiBuilder.group(ControlApi, "requests", (handlers) =>
  Effect.gen(function* () {
    const dispatcher = yield* Dispatcher
    // The Dispatcher's errors are typed as any GatewayError (its exchanges share the proxy's); those it can answer
    // are the ones declared, and whatever it fails with is answered through the one table all the same.
    const route = dispatcher.route.pipe(Effect.catchTag("HttpBodyError", Effect.die)) as Effect.Effect<
      HttpServerResponse.HttpServerResponse,
      DispatchError,
      HttpServerRequest.HttpServerRequest
    >
    return handlers.handleRaw("dispatch", () => route)
  })
)
