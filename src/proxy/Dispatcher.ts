import type { IncomingMessage } from "node:http"
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Cause, Deferred, Effect, Exit, Option, ParseResult, Schema } from "effect"
import { Auth } from "../auth/Auth.ts"
import { HestiaConfig } from "../config/HestiaConfig.ts"
import { BadRequest, RequestBodyTooLarge, UnknownService, UpstreamBodyTooLarge } from "../domain/Errors.ts"
import { type GatewayError, toErrorResponse } from "../domain/HttpErrors.ts"
import { DispatchBody } from "../http/ApiSchemas.ts"
import { requestRecorder, UNKNOWN_SERVICE } from "../observability/Metrics.ts"
import * as Telemetry from "../observability/Telemetry.ts"
import { ServiceRegistry } from "../registry/ServiceRegistry.ts"
import {
  headersObject,
  invalidHeader,
  parseServicePath,
  requestIdOf,
  SERVICES_PREFIX,
  upstreamBase,
  upstreamHeaders,
  upstreamPath
} from "./ForwardingRules.ts"
import { CLIENT_CLOSED, CLIENT_GONE, type ServiceUpstream, UpstreamExchange, UpstreamPools } from "./UpstreamPools.ts"

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

/** Deeper JSON is refused before it is parsed: re-encoding it would overflow the stack. */
export const MAX_JSON_DEPTH = 256

/** Whether `text` nests arrays and objects deeper than `max` (strings skipped); one pass, no recursion. */
export const jsonDeeperThan = (text: string, max: number) => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92) i++
      else if (c === 34) inString = false
    } else if (c === 34) inString = true
    else if (c === 91 || c === 123) {
      if (++depth > max) return true
    } else if (c === 93 || c === 125) depth--
  }
  return false
}

/**
 * The request body, never more than `limit` bytes: a declared Content-Length over it is refused before reading,
 * a body that grows past it is refused as soon as it does, and nothing more is read (the answer closes the connection).
 */
export const readBoundedBody = (req: IncomingMessage, limit: number) =>
  Effect.async<Buffer, RequestBodyTooLarge | BadRequest>((resume) => {
    const declared = Number(req.headers["content-length"])
    if (declared > limit) {
      req.pause()
      resume(Effect.fail(new RequestBodyTooLarge({ limitBytes: limit })))
      return
    }
    const chunks: Array<Buffer> = []
    let size = 0
    const cleanup = () => {
      req.removeListener("data", onData)
      req.removeListener("end", onEnd)
      req.removeListener("error", onError)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        cleanup()
        req.pause()
        chunks.length = 0
        resume(Effect.fail(new RequestBodyTooLarge({ limitBytes: limit })))
      } else chunks.push(chunk)
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeed(Buffer.concat(chunks, size)))
    }
    const onError = (error: Error) => {
      cleanup()
      resume(Effect.fail(new BadRequest({ reason: `request body: ${error.message}` })))
    }
    req.on("data", onData)
    req.once("end", onEnd)
    req.once("error", onError)
    return Effect.sync(cleanup)
  })

/** The upstream's answer collected into at most `limit` bytes; past it the upstream request is aborted. */
class CollectingExchange extends UpstreamExchange {
  // The answer reports the upstream's own headers.
  protected override readonly setsRequestId = false
  private readonly chunks: Array<Buffer> = []
  private size = 0
  private head: { status: number; headers: Record<string, string | Array<string>> } | undefined = undefined

  constructor(
    service: ServiceUpstream,
    requestId: string,
    private readonly limit: number,
    private readonly resumeWith: (exit: Exit.Exit<DispatchResponse, GatewayError>) => void
  ) {
    super(service, requestId)
  }

  private tooLarge() {
    this.chunks.length = 0
    this.abort(new UpstreamBodyTooLarge({ serviceId: this.service.serviceId, limitBytes: this.limit }))
  }

  protected onResponseHead(status: number, headers: Array<string>) {
    this.head = { status, headers: headersObject(headers) }
    const declared = Number(this.head.headers["content-length"])
    if (declared > this.limit) {
      this.tooLarge()
      return false
    }
    return true
  }

  protected onResponseData(chunk: Buffer) {
    this.size += chunk.length
    if (this.size > this.limit) {
      this.tooLarge()
      return false
    }
    this.chunks.push(chunk)
    return true
  }

  protected onResponseEnd() {
    const head = this.head!
    this.resumeWith(Exit.succeed({ ...head, body: Buffer.concat(this.chunks, this.size) }))
  }

  protected onFailure(error: GatewayError) {
    this.resumeWith(Exit.fail(error))
  }
}

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

const decodeDispatchBody = Schema.decodeUnknown(DispatchBody)

/**
 * `POST /v1/requests`: the proxy's own path (auth, path checks, cold start, gates, X-Forwarded-*), with the answer
 * collected instead of streamed, both bodies bounded by `max_dispatch_body_bytes`.
 */
export class Dispatcher extends Effect.Service<Dispatcher>()("hestia/Dispatcher", {
  scoped: Effect.gen(function* () {
    const config = yield* HestiaConfig
    const registry = yield* ServiceRegistry
    const auth = yield* Auth
    const pools = yield* UpstreamPools
    const clock = yield* Effect.clock
    const recorder = requestRecorder(registry.has)
    const tracing = yield* Telemetry.TracingEnabled
    const strip = auth.strip
    const limit = config.maxDispatchBodyBytes

    const dispatchOnce = Effect.fn("ServiceProxy.dispatch")(function* (input: DispatchRequest) {
      const path = input.path.startsWith("/") ? input.path : `/${input.path}`
      const parsed = parseServicePath(`${SERVICES_PREFIX}${input.serviceId}${path}`)
      if (parsed instanceof BadRequest) return yield* parsed
      const service = pools.service(parsed.serviceId)
      if (service === undefined) return yield* new UnknownService({ serviceId: parsed.serviceId })
      // The caller's mistakes are found before anything is sent (and are not the upstream's 502).
      for (const [name, value] of Object.entries(input.headers)) {
        const problem = invalidHeader(name, value)
        if (problem !== undefined) return yield* new BadRequest({ reason: problem })
      }
      const requestId = requestIdOf(input.headers)
      const answered = yield* Deferred.make<DispatchResponse, GatewayError>()
      const exchange = new CollectingExchange(service, requestId, limit, (exit) => Deferred.unsafeDone(answered, exit))
      return yield* Effect.gen(function* () {
        exchange.lease = yield* registry.acquire(parsed.serviceId, requestId)
        const raw = Object.entries(input.headers).flat()
        const span = tracing ? Option.getOrUndefined(yield* Effect.option(Effect.currentSpan)) : undefined
        span?.attribute("hestia.request.id", requestId)
        const headers = upstreamHeaders(raw, strip, { clientIp: undefined, proto: "http", host: undefined, requestId })
        yield* pools.start(exchange, {
          method: input.method,
          path: upstreamPath(upstreamBase(exchange.lease.target), parsed.path, parsed.query),
          headers: span === undefined ? headers : Telemetry.withTraceparent(headers, span),
          body: input.body ?? null,
          servicePath: parsed
        })
        return yield* Deferred.await(answered)
      }).pipe(
        // Interrupted (the caller left) or refused at a gate: nothing may stay held.
        Effect.onExit((exit) =>
          Exit.isSuccess(exit)
            ? Effect.void
            : Effect.sync(() => {
                exchange.abort(CLIENT_GONE)
                if (!exchange.sent) exchange.release()
              })
        )
      )
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

    /** The route: a bounded body, a depth check, the schema, then `dispatch`. */
    const route = Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const bytes = yield* readBoundedBody(NodeHttpServerRequest.toIncomingMessage(request), limit)
      const text = bytes.toString("utf8")
      if (jsonDeeperThan(text, MAX_JSON_DEPTH)) {
        return yield* new BadRequest({ reason: `request body: JSON nested deeper than ${MAX_JSON_DEPTH} levels` })
      }
      let json: unknown
      try {
        json = text === "" ? null : JSON.parse(text)
      } catch (error) {
        return yield* new BadRequest({ reason: `request body: ${(error as Error).message}` })
      }
      const input = yield* decodeDispatchBody(json).pipe(
        Effect.mapError((error) => new BadRequest({ reason: ParseResult.TreeFormatter.formatErrorSync(error) }))
      )
      const headers: Record<string, string> = { ...input.headers }
      let body: string | undefined
      if (typeof input.body === "string") body = input.body
      else if (input.body !== undefined) {
        body = JSON.stringify(input.body)
        if (!Object.keys(headers).some((name) => name.toLowerCase() === "content-type")) {
          headers["content-type"] = "application/json"
        }
      }
      const answer = yield* dispatch({
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

    return { dispatch, route }
  }),
  dependencies: [ServiceRegistry.Default, Auth.Default, UpstreamPools.Default]
}) {}
