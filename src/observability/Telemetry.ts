import type { IncomingHttpHeaders } from "node:http"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import type { SpanExporter, SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Config, Context, Effect, Exit, Layer, Option, type Tracer } from "effect"

/**
 * Whether spans leave the process. Off (the default), the proxy's fast path creates no span and adds no
 * traceparent: a client's own traceparent then passes through untouched.
 */
export class TracingEnabled extends Context.Reference<TracingEnabled>()("hestia/TracingEnabled", {
  defaultValue: () => false
}) {}

type SdkTraceBase = typeof import("@opentelemetry/sdk-trace-base")

/**
 * A lazily imported module's exports. Bundled, a CommonJS package imported with `import()` arrives as
 * `{ default: module.exports }` without named exports (esbuild's Node interop), so both shapes are accepted.
 */
export const interop = <M extends object>(module: M | { readonly default: M }, probe: keyof M): M =>
  probe in module ? (module as M) : (module as { readonly default: M }).default

// The OpenTelemetry SDK is loaded only when traces are on: a gateway without them does not even import it.
const sdk = (processor: (base: SdkTraceBase) => Promise<SpanProcessor>, serviceName: string) =>
  Layer.unwrapEffect(
    Effect.promise(async () => {
      const [NodeSdk, base] = await Promise.all([
        import("@effect/opentelemetry/NodeSdk").then((m) => interop(m, "layer")),
        import("@opentelemetry/sdk-trace-base").then((m) => interop(m, "BatchSpanProcessor"))
      ])
      const spanProcessor = await processor(base)
      return Layer.merge(
        NodeSdk.layer(() => ({ spanProcessor, resource: { serviceName } })),
        Layer.succeed(TracingEnabled, true)
      )
    })
  )

const setting = (name: string) =>
  Config.string(name).pipe(Config.option, Config.map(Option.filter((value) => value.trim() !== "")))

/**
 * Traces over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (the
 * exporter reads those and `OTEL_EXPORTER_OTLP_HEADERS` itself); nothing at all otherwise, or with `OTEL_SDK_DISABLED=true`.
 * Provide it outside every other layer: the tracer it installs is inherited by what is built after it.
 */
export const layer: Layer.Layer<never> = Layer.unwrapEffect(
  Effect.gen(function* () {
    const endpoint = yield* setting("OTEL_EXPORTER_OTLP_ENDPOINT")
    const tracesEndpoint = yield* setting("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    const disabled = yield* setting("OTEL_SDK_DISABLED")
    if (Option.isNone(endpoint) && Option.isNone(tracesEndpoint)) return Layer.empty
    if (Option.getOrUndefined(disabled)?.toLowerCase() === "true") return Layer.empty
    const serviceName = Option.getOrElse(yield* setting("OTEL_SERVICE_NAME"), () => "hestia")
    return sdk(async (base) => {
      const { OTLPTraceExporter } = interop(
        await import("@opentelemetry/exporter-trace-otlp-http"),
        "OTLPTraceExporter"
      )
      return new base.BatchSpanProcessor(new OTLPTraceExporter())
    }, serviceName)
  }).pipe(Effect.orDie)
)

/** Tests: every span handed to `exporter` as it ends (e.g. an `InMemorySpanExporter`). */
export const layerExporter = (exporter: SpanExporter, serviceName = "hestia") =>
  sdk(async (base) => new base.SimpleSpanProcessor(exporter), serviceName)

// ---------------------------------------------------------------------------
// Proxied requests: plain functions for the node:http listener (no fiber), used only when tracing is on.
// ---------------------------------------------------------------------------

/** The span of one proxied request, a child of the client's `traceparent` when it sent one. */
export const startRequestSpan = (
  tracer: Tracer.Tracer,
  headers: IncomingHttpHeaders,
  startTime: bigint,
  attributes: Readonly<Record<string, unknown>>
): Tracer.Span => {
  const parent = HttpTraceContext.w3c(headers as never)
  const span = tracer.span("ServiceProxy.request", parent, Context.empty(), [], startTime, "server", {
    root: Option.isNone(parent)
  })
  for (const key in attributes) span.attribute(key, attributes[key])
  return span
}

/** The W3C `traceparent` naming `span` as the parent of what the upstream does. */
export const traceparent = (span: Tracer.Span) => `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`

/** Flat [name, value, ...] upstream headers with any client `traceparent` replaced by ours. */
export const withTraceparent = (headers: Array<string>, span: Tracer.Span): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.toLowerCase() !== "traceparent") out.push(headers[i]!, headers[i + 1]!)
  }
  out.push("traceparent", traceparent(span))
  return out
}

/** What went wrong with a request, for its span: the typed error's tag (or the status code, for an upstream's 5xx). */
export interface RequestFailure {
  readonly _tag: string
  readonly message: string
}

export const endRequestSpan = (
  span: Tracer.Span,
  status: number,
  endTime: bigint,
  failure: RequestFailure | undefined
) => {
  span.attribute("http.response.status_code", status)
  if (failure !== undefined) {
    span.attribute("error.type", failure._tag)
    span.end(endTime, Exit.fail(failure))
  } else if (status >= 500) {
    span.attribute("error.type", String(status))
    span.end(endTime, Exit.fail({ _tag: String(status), message: `upstream answered ${status}` }))
  } else {
    span.end(endTime, Exit.void)
  }
}

/** Marks the current span as failed with the typed error's tag (OTel's `error.type`). */
export const tagError = <E extends { readonly _tag: string }>(error: E) =>
  Effect.annotateCurrentSpan("error.type", error._tag)
