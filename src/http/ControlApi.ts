import { HttpApi, HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { guardFor } from "../auth/Guard.ts"
import { HttpErrors } from "../domain/HttpErrors.ts"
import {
  ActivityPage,
  ActivityParams,
  DispatchAnswer,
  DispatchBody,
  EventStream,
  GroupPath,
  GroupStopAnswer,
  Health,
  HistoryParams,
  Html,
  LogsParams,
  LogTail,
  MetricsHistory,
  MetricsJson,
  OpenApiDocument,
  PrometheusText,
  ReloadAnswer,
  ServiceList,
  ServiceMetricsJson,
  ServicePath,
  ServiceStatus,
  StartAnswer,
  StartParams,
  StrategyList
} from "./ApiSchemas.ts"

// The control API, declared once: the gateway serves it (src/http/HttpApp.ts), `GET /openapi.json` and `/docs`
// describe it, and the `hestia` CLI calls it through the HttpApiClient derived from it. Every error's status comes
// from the one table (src/domain/HttpErrors.ts). Every group but `health` needs credentials when auth is on; the
// check itself runs before routing (HttpApp.ts), so an unknown path without them is a 401 too.

const E = HttpErrors

const health = HttpApiGroup.make("health")
  .add(
    HttpApiEndpoint.get("healthz", "/healthz")
      .addSuccess(Health)
      .annotate(OpenApi.Summary, "The gateway's own health")
      .annotate(
        OpenApi.Description,
        "Always 200 (a healthcheck must not kill a gateway whose database writes fail: `degraded`). Open even with " +
          "auth on; says whether auth is enabled, with a warning when it is not."
      )
  )
  .annotate(OpenApi.Description, "Open to everyone, even with auth on")

const services = HttpApiGroup.make("services")
  .add(
    HttpApiEndpoint.get("list", "/v1/services")
      .addSuccess(ServiceList)
      .annotate(OpenApi.Summary, "Every service with its status")
  )
  .add(
    HttpApiEndpoint.get("status", "/v1/services/:id/status")
      .setPath(ServicePath)
      .addSuccess(ServiceStatus)
      .addError(E.UnknownService.schema)
      .annotate(OpenApi.Summary, "One service's status")
      .annotate(
        OpenApi.Description,
        "State, queue, placement and last error; `automation` for Semaphore services, `container` for containers."
      )
  )
  .add(
    HttpApiEndpoint.post("start", "/v1/services/:id/start")
      .setPath(ServicePath)
      .setUrlParams(StartParams)
      .addSuccess(StartAnswer)
      .addSuccess(StartAnswer, { status: 202 })
      .addError(E.UnknownService.schema)
      .addError(E.BadRequest.schema)
      .addError(E.StartupFailed.schema)
      .addError(E.QueueTimeout.schema)
      .annotate(OpenApi.Summary, "Start a service")
      .annotate(
        OpenApi.Description,
        "`202` start initiated, `200` already hot. With `?wait=true` the answer comes once it is hot (`200`), or is " +
          "the start's typed error (`503 StartupFailed`, `504 QueueTimeout` after `request_timeout_seconds`)."
      )
  )
  .add(
    HttpApiEndpoint.post("stop", "/v1/services/:id/stop")
      .setPath(ServicePath)
      .addSuccess(ServiceStatus, { status: 202 })
      .addError(E.UnknownService.schema)
      .annotate(OpenApi.Summary, "Stop a service (a start in progress is cancelled)")
  )
  .addError(E.Unauthorized.schema)

const groups = HttpApiGroup.make("groups")
  .add(
    HttpApiEndpoint.post("stop", "/v1/groups/:name/stop")
      .setPath(GroupPath)
      .addSuccess(GroupStopAnswer, { status: 202 })
      .addError(E.UnknownGroup.schema)
      .annotate(OpenApi.Summary, "Stop every member of a group (starts in progress cancelled)")
  )
  .addError(E.Unauthorized.schema)

const requests = HttpApiGroup.make("requests")
  .add(
    HttpApiEndpoint.post("dispatch", "/v1/requests")
      .setPayload(DispatchBody)
      .addSuccess(DispatchAnswer)
      .addError(E.BadRequest.schema)
      .addError(E.UnknownService.schema)
      .addError(E.RequestBodyTooLarge.schema)
      .addError(E.UpstreamBodyTooLarge.schema)
      .addError(E.UpstreamUnavailable.schema)
      .addError(E.UpstreamTimeout.schema)
      .addError(E.UpstreamPoolFull.schema)
      .addError(E.NoHealthyInstance.schema)
      .addError(E.ServiceBusy.schema)
      .addError(E.QueueFull.schema)
      .addError(E.QueueTimeout.schema)
      .addError(E.StartupFailed.schema)
      .annotate(OpenApi.Summary, "Send one request to a service and get its answer as JSON")
      .annotate(
        OpenApi.Description,
        "The proxy's own path (cold start, gates, X-Forwarded-*), with the answer collected: the HTTP status is the " +
          "upstream's. Both bodies are bounded by `max_dispatch_body_bytes`; JSON nested deeper than 256 levels and " +
          "header values with CR, LF or NUL are refused with 400 before anything is sent."
      )
  )
  .addError(E.Unauthorized.schema)

const activity = HttpApiGroup.make("activity")
  .add(
    HttpApiEndpoint.get("list", "/v1/activity")
      .setUrlParams(ActivityParams)
      .addSuccess(ActivityPage)
      .addError(E.UnknownService.schema)
      .addError(E.BadRequest.schema)
      .annotate(OpenApi.Summary, "The persisted timeline, newest first, one page at a time")
  )
  .addError(E.Unauthorized.schema)

const sse = (op: Record<string, any>) => {
  const ok = op.responses["200"]
  return {
    ...op,
    responses: {
      ...op.responses,
      "200": { ...ok, content: { ...ok.content, "text/event-stream": { schema: { type: "string" } } } }
    }
  }
}

const logs = HttpApiGroup.make("logs")
  .add(
    HttpApiEndpoint.get("tail", "/v1/services/:id/logs")
      .setPath(ServicePath)
      .setUrlParams(LogsParams)
      .addSuccess(LogTail)
      .addError(E.UnknownService.schema)
      .addError(E.BadRequest.schema)
      .addError(E.TooManyFollowers.schema)
      .annotate(OpenApi.Summary, "A service's captured stdout/stderr")
      .annotate(
        OpenApi.Description,
        "The last `tail` lines as JSON, oldest first; with `follow=1` the same as Server-Sent Events (`line` events " +
          "whose id is the line's seq, so `Last-Event-ID` resumes), then each new line."
      )
      .annotate(OpenApi.Transform, sse)
  )
  .addError(E.Unauthorized.schema)

const events = HttpApiGroup.make("events")
  .add(
    HttpApiEndpoint.get("stream", "/v1/events")
      .addSuccess(EventStream)
      .addError(E.TooManySubscribers.schema)
      .annotate(OpenApi.Summary, "Every lifecycle event as it happens (Server-Sent Events)")
      .annotate(
        OpenApi.Description,
        "A `snapshot` of every service first, then one SSE event per lifecycle event (its type is the event name, " +
          "`data` is JSON), and a heartbeat comment every 15 s."
      )
  )
  .addError(E.Unauthorized.schema)

const metrics = HttpApiGroup.make("metrics")
  .add(
    HttpApiEndpoint.get("prometheus", "/metrics")
      .addSuccess(PrometheusText)
      .annotate(OpenApi.Summary, "Prometheus metrics")
  )
  .add(HttpApiEndpoint.get("json", "/v1/metrics").addSuccess(MetricsJson).annotate(OpenApi.Summary, "Metrics as JSON"))
  .add(
    HttpApiEndpoint.get("history", "/v1/metrics/history")
      .setUrlParams(HistoryParams)
      .addSuccess(MetricsHistory)
      .addError(E.UnknownService.schema)
      .addError(E.BadRequest.schema)
      .annotate(OpenApi.Summary, "The last hour in memory: requests/s per 10 s and each cold start")
  )
  .add(
    HttpApiEndpoint.get("service", "/v1/services/:id/metrics")
      .setPath(ServicePath)
      .addSuccess(ServiceMetricsJson)
      .addError(E.UnknownService.schema)
      .annotate(OpenApi.Summary, "One service's metrics as JSON")
  )
  .addError(E.Unauthorized.schema)

const strategies = HttpApiGroup.make("strategies")
  .add(
    HttpApiEndpoint.get("list", "/v1/strategies")
      .addSuccess(StrategyList)
      .annotate(OpenApi.Summary, "Every strategy file, its state, and the services that use it")
  )
  .addError(E.Unauthorized.schema)

const config = HttpApiGroup.make("config")
  .add(
    HttpApiEndpoint.post("reload", "/v1/config/reload")
      .addSuccess(ReloadAnswer)
      .addError(E.ConfigInvalid.schema)
      .annotate(OpenApi.Summary, "Read the configuration file again and apply it")
      .annotate(
        OpenApi.Description,
        "The same as saving the file (watched) or SIGHUP. An invalid file is refused (`400 ConfigInvalid`, the " +
          "running configuration stays); a valid one is applied: services added, removed ones drained and stopped, " +
          "changed ones take their new settings."
      )
  )
  .addError(E.Unauthorized.schema)

const docs = HttpApiGroup.make("docs")
  .add(
    HttpApiEndpoint.get("openapi", "/openapi.json")
      .addSuccess(OpenApiDocument)
      .annotate(OpenApi.Summary, "This document (OpenAPI 3.1)")
  )
  .add(HttpApiEndpoint.get("page", "/docs").addSuccess(Html).annotate(OpenApi.Summary, "This document as a web page"))
  .addError(E.Unauthorized.schema)

const SECURITY_SCHEMES = {
  apiKey: { type: "apiKey", in: "header", name: "X-API-Key", description: "an API key" },
  bearer: { type: "http", scheme: "bearer", description: "an API key as a Bearer token" },
  basic: {
    type: "http",
    scheme: "basic",
    description: "the dashboard's login (auth.dashboard), or any user name with an API key as the password"
  }
}

/**
 * What HttpApi does not derive: each route's credentials (from the gateway's own rule, Auth's guardFor), and the
 * 400 answer, which is always BadRequest (the gateway answers a request that does not decode as BadRequest, through
 * the one table, never as HttpApi's own HttpApiDecodeError).
 */
const describe = (spec: Record<string, any>) => {
  const decodeError = "#/components/schemas/HttpApiDecodeError"
  for (const [path, item] of Object.entries<Record<string, any>>(spec.paths)) {
    for (const [method, op] of Object.entries<Record<string, any>>(item)) {
      const guard = guardFor(method.toUpperCase(), path.replace(/\{[^}]+\}/g, "x"))
      op.security =
        guard === "open"
          ? []
          : guard === "dashboard"
            ? [{ basic: [] }]
            : Object.keys(SECURITY_SCHEMES).map((name) => ({ [name]: [] }))
      const refused = op.responses["400"]
      if (refused === undefined) continue
      const schema = refused.content["application/json"].schema
      const others = (schema.anyOf ?? [schema]).filter((member: { $ref?: string }) => member.$ref !== decodeError)
      if (others.length === 0) delete op.responses["400"]
      else
        op.responses["400"] = {
          description: HttpErrors.BadRequest.description,
          content: { "application/json": { schema: others.length === 1 ? others[0] : { anyOf: others } } }
        }
    }
  }
  for (const name of ["HttpApiDecodeError", "Issue", "PropertyKey"]) delete spec.components.schemas[name]
  spec.components.securitySchemes = SECURITY_SCHEMES
  return spec
}

export class ControlApi extends HttpApi.make("hestia")
  .add(health)
  .add(services)
  .add(groups)
  .add(requests)
  .add(activity)
  .add(logs)
  .add(events)
  .add(metrics)
  .add(strategies)
  .add(config)
  .add(docs)
  .addError(E.InternalError.schema)
  .annotate(OpenApi.Title, "Hestia control API")
  .annotate(OpenApi.Version, "1")
  .annotate(
    OpenApi.Description,
    "The gateway's control routes. The proxy itself, `ANY /services/{id}/{path}`, forwards requests to the " +
      "services byte for byte and is not described here. Errors are JSON `{error, message, ...}`."
  )
  .annotate(OpenApi.Transform, describe) {}
