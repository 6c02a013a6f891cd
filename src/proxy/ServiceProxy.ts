import { randomUUID } from "node:crypto"
import type { IncomingMessage, ServerResponse } from "node:http"
import { Writable } from "node:stream"
import { Cause, Effect, Exit, Fiber, Option, Runtime, type Tracer } from "effect"
import { Pool } from "undici"
import { Auth } from "../auth/Auth.ts"
import { BadRequest, UnknownService, UpstreamTimeout, UpstreamUnavailable } from "../domain/Errors.ts"
import { type GatewayError, toErrorResponse } from "../domain/HttpErrors.ts"
import type { Target } from "../domain/Placement.ts"
import { requestRecorder, UNKNOWN_SERVICE } from "../observability/Metrics.ts"
import * as Telemetry from "../observability/Telemetry.ts"
import { type Lease, ServiceRegistry } from "../registry/ServiceRegistry.ts"

// ---------------------------------------------------------------------------
// Paths: the upstream URL is always the service's base URL plus the path, never anything else.
// ---------------------------------------------------------------------------

const SERVICES_PREFIX = "/services/"
const SERVICE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]*$/

export interface ServicePath {
  readonly serviceId: string
  /** The path below the service, raw as the client sent it ("" or starting with "/"). */
  readonly path: string
  /** The query string with its "?", raw ("" when none). */
  readonly query: string
}

export const isServicesUrl = (url: string) => url.startsWith(SERVICES_PREFIX) || url === "/services"

const decodeSegment = (segment: string): string | undefined => {
  try {
    return decodeURIComponent(segment)
  } catch {
    return undefined
  }
}

const NEEDS_CHECK = /[%\\]|(?:^|\/)\.\.?(?:\/|$)/

/**
 * Refuses any path an upstream could resolve outside the base path: dot segments, raw or percent-encoded,
 * encoded slashes or backslashes hiding them, and NUL bytes.
 */
export const checkPath = (path: string): BadRequest | undefined => {
  // Without escapes, backslashes or dot segments there is nothing to decode or refuse: the common case, checked once.
  if (!NEEDS_CHECK.test(path)) return undefined
  for (const segment of path.split(/[/\\]/)) {
    const decoded = decodeSegment(segment)
    if (decoded === undefined)
      return new BadRequest({ reason: `malformed percent-encoding in path segment "${segment}"` })
    if (decoded.includes("\0")) return new BadRequest({ reason: "NUL byte in path" })
    for (const part of decoded.split(/[/\\]/)) {
      if (part === "." || part === "..") {
        return new BadRequest({ reason: "path tries to leave the service's base URL (dot segment)" })
      }
    }
  }
  return undefined
}

/** `/services/{id}/{path}?{query}` → its parts, or the reason it is refused. */
export const parseServicePath = (url: string): ServicePath | BadRequest => {
  const rest = url.startsWith(SERVICES_PREFIX) ? url.slice(SERVICES_PREFIX.length) : ""
  const queryAt = rest.indexOf("?")
  const pathPart = queryAt === -1 ? rest : rest.slice(0, queryAt)
  const query = queryAt === -1 ? "" : rest.slice(queryAt)
  const slashAt = pathPart.indexOf("/")
  const rawId = slashAt === -1 ? pathPart : pathPart.slice(0, slashAt)
  const path = slashAt === -1 ? "" : pathPart.slice(slashAt)
  const serviceId = rawId.includes("%") ? decodeSegment(rawId) : rawId
  if (serviceId === undefined || !SERVICE_ID.test(serviceId)) {
    return new BadRequest({ reason: `invalid service id "${rawId}"` })
  }
  return checkPath(path) ?? { serviceId, path, query }
}

interface UpstreamBase {
  readonly origin: string
  /** The base URL's path without its trailing slash. */
  readonly basePath: string
  /** The base URL's path as written, for requests to the service root. */
  readonly rootPath: string
}

const upstreamBases = new WeakMap<Target, UpstreamBase>()

const upstreamBase = (target: Target): UpstreamBase => {
  let base = upstreamBases.get(target)
  if (base === undefined) {
    const url = new URL(target.baseUrl)
    base = { origin: url.origin, basePath: url.pathname.replace(/\/+$/, ""), rootPath: url.pathname }
    upstreamBases.set(target, base)
  }
  return base
}

/** The request-target sent upstream: base path + path + query. The origin is fixed by the pool. */
export const upstreamPath = (base: UpstreamBase, path: string, query: string) =>
  (path === "" ? base.rootPath : base.basePath + path) + query

// ---------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade"
])

/** Headers never sent upstream besides hop-by-hop ones: undici sets Host from the origin; node answers Expect. */
const REQUEST_ONLY = new Set(["host", "expect"])

const NO_NAMES: ReadonlySet<string> = new Set()

const connectionTokens = (value: string | ReadonlyArray<string> | undefined): ReadonlyArray<string> => {
  if (value === undefined) return []
  const joined = typeof value === "string" ? value : value.join(",")
  return joined.split(",").map((token) => token.trim().toLowerCase())
}

export interface ForwardedFor {
  readonly clientIp: string | undefined
  readonly proto: string
  readonly host: string | undefined
  readonly requestId: string
}

/** Flat [name, value, ...] headers for upstream: hop-by-hop and `strip` removed, X-Forwarded-* and X-Request-ID set. */
export const upstreamHeaders = (
  raw: ReadonlyArray<string>,
  strip: ReadonlySet<string>,
  forwarded: ForwardedFor
): Array<string> => {
  let named: ReadonlySet<string> = NO_NAMES
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === "connection") {
      named = new Set([...named, ...connectionTokens(raw[i + 1])])
    }
  }
  const out: Array<string> = []
  let priorFor: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || REQUEST_ONLY.has(lower) || strip.has(lower) || named.has(lower)) continue
    if (lower === "x-forwarded-for") {
      priorFor = priorFor === undefined ? raw[i + 1] : `${priorFor}, ${raw[i + 1]}`
      continue
    }
    if (lower === "x-forwarded-proto" || lower === "x-forwarded-host" || lower === "x-request-id") continue
    out.push(name, raw[i + 1]!)
  }
  const forwardedFor =
    forwarded.clientIp === undefined
      ? priorFor
      : priorFor === undefined
        ? forwarded.clientIp
        : `${priorFor}, ${forwarded.clientIp}`
  if (forwardedFor !== undefined) out.push("x-forwarded-for", forwardedFor)
  out.push("x-forwarded-proto", forwarded.proto)
  if (forwarded.host !== undefined) out.push("x-forwarded-host", forwarded.host)
  out.push("x-request-id", forwarded.requestId)
  return out
}

/**
 * Response headers for the client: hop-by-hop removed, everything else (Content-Encoding, Content-Length) untouched.
 * Edits undici's fresh headers object in place rather than copying it.
 */
export const clientHeaders = (headers: Record<string, string | Array<string> | undefined>) => {
  const connection = headers.connection
  if (connection !== undefined && connection !== "keep-alive" && connection !== "close") {
    for (const name of connectionTokens(connection)) delete headers[name]
  }
  for (const name of HOP_BY_HOP) if (headers[name] !== undefined) delete headers[name]
  return headers as Record<string, string | Array<string>>
}

const requestIdOf = (headers: IncomingMessage["headers"]) => {
  const given = headers["x-request-id"]
  return typeof given === "string" && given !== "" && given.length <= 200 ? given : randomUUID()
}

// ---------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------

export interface DispatchRequest {
  readonly serviceId: string
  readonly method: string
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string | undefined
}

export interface DispatchResponse {
  readonly status: number
  readonly headers: Record<string, string | Array<string>>
  readonly body: Buffer
}

/** How one upstream exchange ends: the response sink, and what to do with an error. */
interface Exchange {
  readonly onHead: (status: number, headers: Record<string, string | Array<string>>) => Writable
  readonly onError: (error: GatewayError) => void
  /** Called once the exchange is over, whatever the outcome. */
  readonly onDone: () => void
}

// A DOMException (an AbortError) has a numeric code; only undici's string codes mean anything here.
const errorCode = (error: unknown) => {
  const code = (error as { code?: unknown }).code
  return typeof code === "string" ? code : undefined
}

/** The typed error a response ended with, for its span's `error.type`. */
const failures = new WeakMap<ServerResponse, GatewayError>()

/** The status counted for a client that left before any answer (nginx's convention). */
const CLIENT_CLOSED = 499

const writeError = (res: ServerResponse, error: GatewayError, requestId?: string) => {
  failures.set(res, error)
  if (res.headersSent) {
    res.destroy()
    return
  }
  const { status, headers, body } = toErrorResponse(error)
  const payload = JSON.stringify(body)
  res.writeHead(status, {
    ...headers,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(payload),
    ...(requestId === undefined ? {} : { "x-request-id": requestId })
  })
  res.end(payload)
}

export class ServiceProxy extends Effect.Service<ServiceProxy>()("hestia/ServiceProxy", {
  scoped: Effect.gen(function* () {
    const registry = yield* ServiceRegistry
    const auth = yield* Auth
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    const clock = yield* Effect.clock
    const recorder = requestRecorder(registry.has)
    // Off (no OTLP endpoint): no span and no traceparent per request; the check below is the whole cost.
    const tracing = yield* Telemetry.TracingEnabled
    const tracer = yield* Effect.tracer
    // Gateway credentials to strip before forwarding; kept up to date by Auth (empty while auth is off).
    const strip = auth.strip

    const pools = new Map<string, Pool>()
    const poolFor = (origin: string) => {
      let pool = pools.get(origin)
      if (pool === undefined) {
        // bodyTimeout 0: a stream (SSE, NDJSON) may stay quiet for long; the client's disconnect ends it.
        pool = new Pool(origin, { connections: 256, keepAliveTimeout: 30_000, headersTimeout: 300_000, bodyTimeout: 0 })
        pools.set(origin, pool)
      }
      return pool
    }
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => Promise.allSettled(Array.from(pools.values(), (pool) => pool.destroy())))
    )

    /** The one upstream call, shared by the proxy route and the dispatcher. */
    const exchange = (
      serviceId: string,
      lease: Lease,
      request: { method: string; path: string; headers: Array<string>; body: IncomingMessage | string | null },
      signal: AbortSignal,
      sink: Exchange
    ) => {
      const base = upstreamBase(lease.target)
      let done = false
      const finish = () => {
        if (done) return
        done = true
        lease.release()
        sink.onDone()
      }
      try {
        poolFor(base.origin).stream(
          { method: request.method as "GET", path: request.path, headers: request.headers, body: request.body, signal },
          ({ statusCode, headers }) => sink.onHead(statusCode, clientHeaders(headers)),
          (error) => {
            if (error !== null) {
              const code = errorCode(error)
              if (code === "ECONNREFUSED") {
                runFork(registry.reportUnavailable(serviceId, lease.target, "connection refused"))
                sink.onError(new UpstreamUnavailable({ serviceId, reason: "connection refused" }))
              } else if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_CONNECT_TIMEOUT") {
                sink.onError(new UpstreamTimeout({ serviceId }))
              } else if (code !== "UND_ERR_ABORTED" && !signal.aborted) {
                sink.onError(new UpstreamUnavailable({ serviceId, reason: code ?? error.message }))
              }
            }
            finish()
          }
        )
      } catch (error) {
        sink.onError(new UpstreamUnavailable({ serviceId, reason: String(error) }))
        finish()
      }
    }

    /** Counts the request and ends its span once its response is over, or its client gone. */
    const observe = (res: ServerResponse, serviceId: string, startedAt: bigint, span: Tracer.Span | undefined) => {
      res.once("close", () => {
        const status = res.headersSent ? res.statusCode : CLIENT_CLOSED
        const now = clock.unsafeCurrentTimeNanos()
        recorder.observe(serviceId, status, Number(now - startedAt) / 1e9)
        if (span !== undefined) Telemetry.endRequestSpan(span, status, now, failures.get(res))
      })
    }

    const requestSpan = (req: IncomingMessage, serviceId: string | undefined, startedAt: bigint) =>
      Telemetry.startRequestSpan(tracer, req.headers, startedAt, {
        "hestia.service.id": serviceId ?? UNKNOWN_SERVICE,
        "http.request.method": req.method ?? "GET"
      })

    /** With tracing on, the upstream sees our span as its parent (a client's traceparent is replaced). */
    const withTrace = (span: Tracer.Span | undefined, requestId: string, headers: Array<string>) => {
      if (span === undefined) return headers
      span.attribute("hestia.request.id", requestId)
      return Telemetry.withTraceparent(headers, span)
    }

    const forward = (
      req: IncomingMessage,
      res: ServerResponse,
      parsed: ServicePath,
      lease: Lease,
      requestId: string,
      span?: Tracer.Span
    ) => {
      const abort = new AbortController()
      res.once("close", () => {
        if (!res.writableFinished) abort.abort()
      })
      const hasBody = req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined
      exchange(
        parsed.serviceId,
        lease,
        {
          method: req.method ?? "GET",
          path: upstreamPath(upstreamBase(lease.target), parsed.path, parsed.query),
          headers: withTrace(
            span,
            requestId,
            upstreamHeaders(req.rawHeaders, strip, {
              clientIp: req.socket.remoteAddress,
              proto: "http",
              host: req.headers.host,
              requestId
            })
          ),
          body: hasBody ? req : null
        },
        abort.signal,
        {
          onHead: (status, headers) => {
            headers["x-request-id"] = requestId
            res.writeHead(status, headers)
            return res
          },
          onError: (error) => writeError(res, error, requestId),
          onDone: () => {}
        }
      )
    }

    /** Wait for a service that is not hot, then forward; the client leaving stops the wait. */
    const forwardWhenReady = (req: IncomingMessage, res: ServerResponse, parsed: ServicePath, span?: Tracer.Span) => {
      const requestId = requestIdOf(req.headers)
      span?.attribute("hestia.request.id", requestId)
      const acquire = registry.acquire(parsed.serviceId, requestId)
      const fiber = runFork(
        (span === undefined ? acquire : Effect.withParentSpan(acquire, span)).pipe(
          Effect.match({
            onSuccess: (lease) => (res.destroyed ? lease.release() : forward(req, res, parsed, lease, requestId, span)),
            onFailure: (error) => writeError(res, error, requestId)
          })
        )
      )
      res.once("close", () => {
        if (fiber.unsafePoll() === null) runFork(Fiber.interrupt(fiber))
      })
    }

    /** node:http listener for `/services/...`: hot services go straight to undici, the rest waits in the registry. */
    const handle = (req: IncomingMessage, res: ServerResponse) => {
      const startedAt = clock.unsafeCurrentTimeNanos()
      const parsed = parseServicePath(req.url ?? "/")
      const serviceId = parsed instanceof BadRequest || !registry.has(parsed.serviceId) ? undefined : parsed.serviceId
      const span = tracing ? requestSpan(req, serviceId, startedAt) : undefined
      observe(res, serviceId ?? UNKNOWN_SERVICE, startedAt, span)
      // Before anything else: an unauthenticated client learns nothing, not even which services exist.
      const denied = auth.check({
        method: req.method ?? "GET",
        url: req.url ?? "/",
        headers: req.headers,
        remoteAddress: req.socket.remoteAddress,
        serviceId
      })
      if (denied !== undefined) return writeError(res, denied)
      if (parsed instanceof BadRequest) return writeError(res, parsed)
      if (serviceId === undefined) return writeError(res, new UnknownService({ serviceId: parsed.serviceId }))
      const lease = registry.tryAcquireHot(parsed.serviceId)
      if (lease !== undefined) return forward(req, res, parsed, lease, requestIdOf(req.headers), span)
      forwardWhenReady(req, res, parsed, span)
    }

    /** `POST /v1/requests`: the proxy's own path, with the response collected instead of streamed. */
    const dispatchOnce = Effect.fn("ServiceProxy.dispatch")(function* (input: DispatchRequest) {
      const path = input.path.startsWith("/") ? input.path : `/${input.path}`
      const parsed = parseServicePath(`${SERVICES_PREFIX}${input.serviceId}${path}`)
      if (parsed instanceof BadRequest) return yield* parsed
      if (!registry.has(parsed.serviceId)) return yield* new UnknownService({ serviceId: parsed.serviceId })
      const requestId = requestIdOf(input.headers)
      const lease = yield* registry.acquire(parsed.serviceId, requestId)
      const raw = Object.entries(input.headers).flat()
      const span = tracing ? Option.getOrUndefined(yield* Effect.option(Effect.currentSpan)) : undefined
      return yield* Effect.async<DispatchResponse, GatewayError>((resume, signal) => {
        const chunks: Array<Buffer> = []
        let head: { status: number; headers: Record<string, string | Array<string>> } | undefined
        let failed = false
        exchange(
          parsed.serviceId,
          lease,
          {
            method: input.method,
            path: upstreamPath(upstreamBase(lease.target), parsed.path, parsed.query),
            headers: withTrace(
              span,
              requestId,
              upstreamHeaders(raw, strip, { clientIp: undefined, proto: "http", host: undefined, requestId })
            ),
            body: input.body ?? null
          },
          signal,
          {
            onHead: (status, headers) => {
              head = { status, headers }
              return new Writable({
                write(chunk, _encoding, callback) {
                  chunks.push(chunk)
                  callback()
                }
              })
            },
            onError: (error) => {
              failed = true
              resume(Effect.fail(error))
            },
            onDone: () => {
              if (!failed && head !== undefined) resume(Effect.succeed({ ...head, body: Buffer.concat(chunks) }))
            }
          }
        )
      })
    })

    /** The dispatcher's requests count like proxied ones: by service and the status the caller gets. */
    const dispatch = (input: DispatchRequest) => {
      const startedAt = clock.unsafeCurrentTimeNanos()
      return dispatchOnce(input).pipe(
        Effect.onExit((exit) =>
          Effect.sync(() => {
            const failure = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
            const status = Exit.isSuccess(exit)
              ? exit.value.status
              : failure === undefined
                ? CLIENT_CLOSED
                : toErrorResponse(failure).status
            const serviceId = registry.has(input.serviceId) ? input.serviceId : UNKNOWN_SERVICE
            recorder.observe(serviceId, status, Number(clock.unsafeCurrentTimeNanos() - startedAt) / 1e9)
          })
        )
      )
    }

    return { handle, dispatch }
  }),
  dependencies: [ServiceRegistry.Default, Auth.Default]
}) {}
