import type { IncomingMessage, ServerResponse } from "node:http"
import { Cause, Effect, Either, Exit, FiberId, FiberSet } from "effect"
import { Auth } from "../auth/Auth.ts"
import type { ServiceConfig } from "../config/HestiaConfig.ts"
import { LiveConfig } from "../config/LiveConfig.ts"
import { BadRequest, InvalidModelRequest, RequestBodyTimeout, UnknownModel, UnknownService } from "../domain/Errors.ts"
import type { GatewayError } from "../domain/HttpErrors.ts"
import { internalErrorResponse, type ModelApi, toModelApiErrorResponse } from "../domain/ModelApiErrors.ts"
import { knownModels, type ListedModel, makeCatalog } from "../domain/ModelCatalog.ts"
import { requestRecorder, UNKNOWN_SERVICE } from "../observability/Metrics.ts"
import { ServiceRegistry, type ServiceStatusView } from "../registry/ServiceRegistry.ts"
import { readBoundedBody } from "./Dispatcher.ts"
import { requestIdOf } from "./ForwardingRules.ts"
import {
  type LocalRoute,
  localRoute,
  type ModelPath,
  ollamaRunning,
  ollamaTag,
  openAiModel,
  openAiModelList,
  parseModelUrl
} from "./ModelApis.ts"
import { modelOf, withModel } from "./ModelBody.ts"
import { ProxyListener, type RenderError, writeError } from "./ProxyListener.ts"
import { RequestRouting } from "./RequestRouting.ts"
import { CLIENT_CLOSED } from "./UpstreamPools.ts"

/**
 * How long a body being read to find its model may send nothing (then 408). No service is chosen yet, so the most
 * patient one decides: the longest `body_idle_timeout_seconds` of the services that declare models (0 on one of them:
 * never), and its default when none does.
 */
export const routingBodyIdleMs = (services: Iterable<ServiceConfig>) => {
  const limits = [...services]
    .filter((service) => service.models.length > 0 || Object.keys(service.modelAliases).length > 0)
    .map((service) => service.bodyIdleTimeoutMs)
  if (limits.length === 0) return 30_000
  return limits.includes(0) ? 0 : Math.max(...limits)
}

const renderers: Record<ModelApi, RenderError> = {
  openai: (error) => toModelApiErrorResponse("openai", error),
  ollama: (error) => toModelApiErrorResponse("ollama", error)
}

const writeBody = (
  res: ServerResponse,
  status: number,
  contentType: string,
  payload: string,
  requestId: string,
  head: boolean
) => {
  if (res.destroyed) return
  res.writeHead(status, {
    "content-type": contentType,
    "content-length": Buffer.byteLength(payload),
    "x-request-id": requestId
  })
  res.end(head ? undefined : payload)
}

/**
 * The model endpoints: `/openai/v1/...` and `/ollama/api/...`. The model lists are answered from the config and the
 * services' states, without starting anything; every other request's body is read once (at most
 * `max_routing_body_bytes`), its `model` chosen a service (an alias rewritten to the upstream's name), and the request
 * forwarded by the ProxyListener as every proxied request is — lease and cold start, gates, timeouts, X-Forwarded-*,
 * metrics by service, both bodies streamed — with its errors in the client's API format.
 */
export class ModelListener extends Effect.Service<ModelListener>()("hestia/ModelListener", {
  scoped: Effect.gen(function* () {
    const live = yield* LiveConfig
    const config = live.current()
    const registry = yield* ServiceRegistry
    const auth = yield* Auth
    const proxy = yield* ProxyListener
    const routing = yield* RequestRouting
    const runFork = yield* FiberSet.makeRuntime<never>()
    const clock = yield* Effect.clock
    const recorder = requestRecorder(registry.has)
    // The config's checks refused every conflict already (label-discovered services declare no models); a reload
    // that would make one is refused before it applies, and an applied one rebuilds the catalog.
    const catalogOf = (services: Iterable<ServiceConfig>) =>
      Either.match(makeCatalog(services), {
        onLeft: (conflict) => Effect.dieMessage(`${conflict.path}: ${conflict.problem}`),
        onRight: Effect.succeed
      })
    let catalog = yield* catalogOf(config.services.values())
    let known = knownModels(catalog)
    let bodyIdleMs = routingBodyIdleMs(config.services.values())
    yield* live.follow({
      apply: (next) =>
        Effect.map(catalogOf(next.services.values()), (rebuilt) => {
          catalog = rebuilt
          known = knownModels(rebuilt)
          bodyIdleMs = routingBodyIdleMs(next.services.values())
        })
    })
    const limit = config.maxRoutingBodyBytes
    // What the lists give as a model's creation time: when the gateway took its config.
    const loadedAt = clock.unsafeCurrentTimeMillis()
    const loadedSeconds = Math.floor(loadedAt / 1000)
    const loadedIso = new Date(loadedAt).toISOString()

    /** Refusals before a service is chosen are counted as the proxy counts an unknown service's. */
    const refuse = (res: ServerResponse, error: GatewayError, requestId: string, api: ModelApi, startedAt: bigint) => {
      writeError(res, error, requestId, renderers[api])
      const status = res.headersSent ? res.statusCode : CLIENT_CLOSED
      recorder.observe(UNKNOWN_SERVICE, status, Number(clock.unsafeCurrentTimeNanos() - startedAt) / 1e9)
    }

    const views = Effect.map(
      registry.list,
      (list) => new Map<string, ServiceStatusView>(list.map((view) => [view.serviceId, view]))
    )
    const stateIn = (states: ReadonlyMap<string, ServiceStatusView>, serviceId: string) =>
      states.get(serviceId)?.state ?? "cold"
    /** When an idle service is stopped if no request comes: its last activity plus `idle_timeout_ms`. */
    const expiresAt = (view: ServiceStatusView | undefined) => {
      const idleMs = live.current().services.get(view?.serviceId ?? "")?.idleTimeoutMs ?? 0
      if (view === undefined || idleMs === 0 || view.lastActivity === null) return undefined
      return new Date(Date.parse(view.lastActivity) + idleMs).toISOString()
    }

    /** The lists, from the config and the services' states: nothing is started. */
    const answerLocal = (route: LocalRoute) =>
      Effect.gen(function* () {
        switch (route._tag) {
          case "OllamaRoot":
            return { contentType: "text/plain; charset=utf-8", payload: "Ollama is running" }
          case "OpenAiModels": {
            const states = yield* views
            const data = catalog.listed.map((model) =>
              openAiModel(model, stateIn(states, model.serviceId), loadedSeconds)
            )
            return { contentType: "application/json", payload: JSON.stringify(openAiModelList(data)) }
          }
          case "OpenAiModel": {
            const found = catalog.resolve(route.id)
            if (found === undefined) return yield* new UnknownModel({ model: route.id, known })
            const model: ListedModel = catalog.listed.find((m) => m.name === route.id) ?? {
              name: route.id,
              serviceId: found.serviceId,
              aliasOf: undefined
            }
            const states = yield* views
            const entry = openAiModel(model, stateIn(states, model.serviceId), loadedSeconds)
            return { contentType: "application/json", payload: JSON.stringify(entry) }
          }
          case "OllamaTags": {
            const states = yield* views
            const models = catalog.listed.map((model) => ollamaTag(model, stateIn(states, model.serviceId), loadedIso))
            return { contentType: "application/json", payload: JSON.stringify({ models }) }
          }
          case "OllamaRunning": {
            const states = yield* views
            const models = catalog.listed
              .filter((model) => states.get(model.serviceId)?.state === "hot")
              .map((model) => {
                const view = states.get(model.serviceId)
                return ollamaRunning(model, { state: "hot", expiresAt: expiresAt(view) })
              })
            return { contentType: "application/json", payload: JSON.stringify({ models }) }
          }
        }
      })

    /** The request body, bounded in size, and in silence: the socket's timeout, listened to on the response. */
    const readBody = (req: IncomingMessage, res: ServerResponse) => {
      if (bodyIdleMs === 0) return readBoundedBody(req, limit)
      const stalled = Effect.async<never, RequestBodyTimeout>((resume) => {
        const onIdle = () => resume(Effect.fail(new RequestBodyTimeout({ idleMs: bodyIdleMs })))
        res.setTimeout(bodyIdleMs, onIdle)
        return Effect.sync(() => {
          res.removeListener("timeout", onIdle)
          req.socket?.setTimeout(0)
        })
      })
      return Effect.raceFirst(readBoundedBody(req, limit), stalled)
    }

    /**
     * `model_strategy`: a routing strategy asked with the body before the catalog; the service it names wins (an
     * alias of that service's in the body is still rewritten). No decision: the body's model decides.
     */
    const byStrategy = (req: IncomingMessage, path: ModelPath, body: Buffer, requestId: string) =>
      Effect.gen(function* () {
        const strategy = live.current().modelStrategy
        if (strategy === undefined || !routing.routes(strategy)) return undefined
        const to = yield* routing.route(strategy, {
          method: req.method ?? "GET",
          path: path.path + path.query,
          headers: req.headers,
          body
        })
        if (to === undefined) return undefined
        const endpoint = path.api === "openai" ? "/openai/v1" : "/ollama/api"
        if (!registry.has(to)) {
          yield* routing.unknown(strategy, endpoint, to)
          return yield* new UnknownService({ serviceId: to })
        }
        yield* Effect.logDebug(`${endpoint}: routed to ${to} by ${strategy}`).pipe(
          Effect.annotateLogs({ event: "routed", serviceId: endpoint, to, strategy, requestId })
        )
        const named = modelOf(body, path.api)
        const own = "problem" in named ? undefined : catalog.resolve(named.model)
        const sent =
          own === undefined || "problem" in named || own.serviceId !== to || own.upstreamModel === named.model
            ? body
            : withModel(body, named.field, own.upstreamModel)
        return { serviceId: to, body: sent }
      })

    /** Read the body, find its model's service, rewrite an alias, and hand the request to the proxy. */
    const route = (req: IncomingMessage, res: ServerResponse, path: ModelPath, requestId: string, startedAt: bigint) =>
      Effect.gen(function* () {
        const body = yield* readBody(req, res)
        const routed = yield* byStrategy(req, path, body, requestId)
        if (routed !== undefined) {
          if (res.destroyed) return
          return proxy.forward(
            req,
            res,
            { serviceId: routed.serviceId, path: path.path, query: path.query },
            { startedAt, requestId, body: routed.body, render: renderers[path.api] }
          )
        }
        const named = modelOf(body, path.api)
        if ("problem" in named) return yield* new InvalidModelRequest({ reason: named.problem, known })
        const chosen = catalog.resolve(named.model)
        if (chosen === undefined) return yield* new UnknownModel({ model: named.model, known })
        const sent = chosen.upstreamModel === named.model ? body : withModel(body, named.field, chosen.upstreamModel)
        if (res.destroyed) return
        proxy.forward(
          req,
          res,
          { serviceId: chosen.serviceId, path: path.path, query: path.query },
          { startedAt, requestId, body: sent, render: renderers[path.api] }
        )
      })

    const handle = (req: IncomingMessage, res: ServerResponse) => {
      const startedAt = clock.unsafeCurrentTimeNanos()
      const url = req.url ?? "/"
      const method = req.method ?? "GET"
      const requestId = requestIdOf(req.headers)
      const parsed = parseModelUrl(url)
      const api: ModelApi = url.startsWith("/openai") ? "openai" : "ollama"
      // Before anything else: an unauthenticated client learns nothing, not even which models exist.
      const denied = auth.check({ method, url, headers: req.headers, remoteAddress: req.socket.remoteAddress })
      if (denied !== undefined) return refuse(res, denied, requestId, api, startedAt)
      if (parsed instanceof BadRequest) return refuse(res, parsed, requestId, api, startedAt)
      const local = localRoute(method, parsed)
      const work: Effect.Effect<void, GatewayError> =
        local === undefined
          ? route(req, res, parsed, requestId, startedAt)
          : Effect.map(answerLocal(local), ({ contentType, payload }) =>
              writeBody(res, 200, contentType, payload, requestId, method === "HEAD")
            )
      const fiber = runFork(
        work.pipe(
          Effect.onExit((exit) =>
            Effect.sync(() => {
              if (Exit.isSuccess(exit)) return
              const failure = Cause.failureOption(exit.cause)
              if (failure._tag === "Some") refuse(res, failure.value, requestId, api, startedAt)
            })
          ),
          // A bug: logged with its cause, answered 500 in the client's format.
          Effect.catchAllDefect((defect) =>
            Effect.logError("model request failed").pipe(
              Effect.annotateLogs({ event: "model_defect", requestId, cause: Cause.pretty(Cause.die(defect)) }),
              Effect.zipRight(
                Effect.sync(() => {
                  if (res.headersSent) return res.destroy()
                  const { status, body } = internalErrorResponse(api)
                  writeBody(res, status, "application/json", JSON.stringify(body), requestId, false)
                })
              )
            )
          )
        )
      )
      // The client leaving while its body is read (or a list is made) ends that work; once forwarded, the proxy's.
      res.once("close", () => fiber.unsafeInterruptAsFork(FiberId.none))
    }

    return { handle }
  }),
  dependencies: [ServiceRegistry.Default, Auth.Default, ProxyListener.Default, LiveConfig.Default]
}) {}
