import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import {
  BadRequest,
  ConfigInvalid,
  GatewayStopping,
  InternalError,
  InvalidModelRequest,
  NoHealthyInstance,
  NotFound,
  QueueFull,
  QueueTimeout,
  RequestBodyTimeout,
  RequestBodyTooLarge,
  ServiceBusy,
  StartupFailed,
  TooManyFollowers,
  TooManySubscribers,
  Unauthorized,
  UnknownGroup,
  UnknownModel,
  UnknownService,
  UpstreamBodyTooLarge,
  UpstreamPoolFull,
  UpstreamTimeout,
  UpstreamUnavailable
} from "./Errors.ts"

/** Every error that may become an HTTP answer. */
export type GatewayError =
  | UnknownService
  | UnknownGroup
  | ConfigInvalid
  | Unauthorized
  | QueueFull
  | QueueTimeout
  | StartupFailed
  | UpstreamUnavailable
  | UpstreamTimeout
  | UpstreamPoolFull
  | NoHealthyInstance
  | ServiceBusy
  | RequestBodyTooLarge
  | UpstreamBodyTooLarge
  | RequestBodyTimeout
  | TooManySubscribers
  | BadRequest
  | TooManyFollowers
  | UnknownModel
  | InvalidModelRequest
  | GatewayStopping
  | NotFound
  | InternalError

export interface ErrorResponse {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: Record<string, unknown>
}

/** Seconds a client is told to wait before retrying a service that is busy starting or failed to start. */
const RETRY_AFTER_SECONDS = "5"
/** For a service that is busy rather than starting: a slot frees as soon as one request ends. */
const BUSY_RETRY_AFTER_SECONDS = "1"

const retryAfter = (seconds: string) => () => ({ "retry-after": seconds })
/** The rest of the body is not read: the connection cannot be reused. */
const closeConnection = () => ({ connection: "close" })
const noHeaders = () => ({})

/** The body of every error answer: `{error: <tag>, message, ...the error's own fields}`. */
export type WireError<Self extends { readonly _tag: string }, Fields, Omitted extends PropertyKey> = {
  readonly error: Self["_tag"]
  readonly message: string
} & { readonly [K in Exclude<keyof Fields, "_tag" | Omitted>]: Fields[K] }

/** One typed error as HTTP: its status, its headers, and the schema of its JSON body (which both sides use). */
export interface HttpError<Self, Encoded> {
  readonly status: number
  readonly description: string
  readonly headers: (error: Self) => Record<string, string>
  /**
   * Body ⇄ error: the server encodes its answers with it, HttpApi declares it (with the status annotation, so the
   * OpenAPI document and the client read the status from here), and HttpApiClient decodes an answer into the error.
   */
  readonly schema: Schema.Schema<Self, Encoded>
}

interface ErrorClass<Self, Fields extends Schema.Struct.Fields> extends Schema.Schema<Self, any> {
  new (props: any): Self
  readonly _tag: string
  readonly fields: Fields
}

const httpError = <
  Self extends { readonly _tag: string; readonly message: string },
  Fields extends Schema.Struct.Fields,
  const Omitted extends keyof Fields = never
>(
  cls: ErrorClass<Self, Fields>,
  options: {
    readonly status: number
    readonly description: string
    readonly headers?: (error: Self) => Record<string, string>
    /** Fields not sent in the body: one that is the message, or one a header carries. */
    readonly omit?: ReadonlyArray<Omitted>
    /** The omitted fields, as far as the client can rebuild them from the message. */
    readonly restore?: (message: string) => Record<string, unknown>
  }
): HttpError<Self, WireError<Self, Schema.Struct.Encoded<Fields>, Omitted>> => {
  const omitted = new Set<PropertyKey>(["_tag", ...(options.omit ?? [])])
  const fields = Object.fromEntries(Object.entries(cls.fields).filter(([name]) => !omitted.has(name)))
  const names = Object.keys(fields)
  const body = Schema.Struct({ error: Schema.Literal(cls._tag), message: Schema.String, ...fields }).annotations({
    identifier: cls._tag,
    description: options.description
  })
  const schema = Schema.transform(body, Schema.typeSchema(cls), {
    strict: false,
    decode: ({ error: _, message, ...rest }) => new cls({ ...rest, ...options.restore?.(message) }),
    encode: (error: any) => {
      const wire: Record<string, unknown> = { error: error._tag, message: error.message }
      for (const name of names) if (error[name] !== undefined) wire[name] = error[name]
      return wire
    }
  }).annotations(HttpApiSchema.annotations({ status: options.status, description: options.description }))
  return {
    status: options.status,
    description: options.description,
    headers: options.headers ?? noHeaders,
    schema: schema as any
  }
}

/**
 * The one table from typed error to HTTP status, headers and body. The proxy and the control routes answer through
 * `toErrorResponse`; the HttpApi declaration (src/http/ControlApi.ts) declares each route's errors with `.schema`,
 * whose status annotation comes from here.
 */
export const HttpErrors = {
  UnknownService: httpError(UnknownService, { status: 404, description: "no service of that id is configured" }),
  UnknownGroup: httpError(UnknownGroup, { status: 404, description: "no group of that name is configured" }),
  ConfigInvalid: httpError(ConfigInvalid, {
    status: 400,
    description: "a reload found the configuration invalid: the running one stays, the problem says why"
  }),
  Unauthorized: httpError(Unauthorized, {
    status: 401,
    description: 'missing or wrong credentials; WWW-Authenticate: Bearer realm="hestia" (Basic for the dashboard)',
    headers: (error) => ({ "www-authenticate": `${error.challenge ?? "Bearer"} realm="hestia"` }),
    omit: ["reason", "challenge"],
    restore: (message) => ({ reason: message })
  }),
  QueueFull: httpError(QueueFull, {
    status: 503,
    description: "the service is starting and its queue is full; Retry-After",
    headers: retryAfter(RETRY_AFTER_SECONDS)
  }),
  // The start goes on: the client is told how far it got, and when to try again.
  QueueTimeout: httpError(QueueTimeout, {
    status: 504,
    description:
      "not ready within request_timeout_seconds; while the start goes on, the attempts failed so far and the one " +
      "in progress; Retry-After",
    headers: retryAfter(RETRY_AFTER_SECONDS)
  }),
  StartupFailed: httpError(StartupFailed, {
    status: 503,
    description: "every start attempt failed (each with its error); Retry-After",
    headers: retryAfter(RETRY_AFTER_SECONDS)
  }),
  UpstreamUnavailable: httpError(UpstreamUnavailable, {
    status: 502,
    description: "connection refused or reset by a service that was ready"
  }),
  UpstreamTimeout: httpError(UpstreamTimeout, {
    status: 504,
    description: "the upstream sent no response headers within upstream_timeout_seconds"
  }),
  UpstreamPoolFull: httpError(UpstreamPoolFull, {
    status: 503,
    description: "every connection to the upstream stayed busy for the bounded wait; Retry-After",
    headers: retryAfter(BUSY_RETRY_AFTER_SECONDS)
  }),
  NoHealthyInstance: httpError(NoHealthyInstance, {
    status: 503,
    description:
      "every instance of the service is taken out (refused or reset a connection; back once its health URL answers); Retry-After",
    headers: retryAfter(BUSY_RETRY_AFTER_SECONDS)
  }),
  ServiceBusy: httpError(ServiceBusy, {
    status: 503,
    description: "max_concurrent_requests reached and its queue full or the wait over; Retry-After",
    headers: retryAfter(BUSY_RETRY_AFTER_SECONDS)
  }),
  RequestBodyTooLarge: httpError(RequestBodyTooLarge, {
    status: 413,
    description: "the request body is over max_dispatch_body_bytes; the connection is closed",
    headers: closeConnection
  }),
  UpstreamBodyTooLarge: httpError(UpstreamBodyTooLarge, {
    status: 502,
    description: "the upstream's answer is over max_dispatch_body_bytes"
  }),
  RequestBodyTimeout: httpError(RequestBodyTimeout, {
    status: 408,
    description: "an upload sent nothing for body_idle_timeout_seconds; the connection is closed",
    headers: closeConnection
  }),
  TooManySubscribers: httpError(TooManySubscribers, {
    status: 503,
    description: "the event stream has its maximum of subscribers; Retry-After",
    headers: retryAfter(RETRY_AFTER_SECONDS)
  }),
  BadRequest: httpError(BadRequest, {
    status: 400,
    description: "a malformed request: bad parameter or body, path escape",
    omit: ["reason"],
    restore: (message) => ({ reason: message })
  }),
  TooManyFollowers: httpError(TooManyFollowers, {
    status: 503,
    description: "too many clients follow logs; Retry-After",
    headers: retryAfter(RETRY_AFTER_SECONDS)
  }),
  UnknownModel: httpError(UnknownModel, {
    status: 404,
    description: "no service serves the model the body names; the models served are listed"
  }),
  InvalidModelRequest: httpError(InvalidModelRequest, {
    status: 400,
    description: "a model endpoint's body that does not name a model (not a JSON object, no string model)"
  }),
  GatewayStopping: httpError(GatewayStopping, {
    status: 503,
    description: "the gateway is stopping and takes no new websocket; Retry-After, the connection is closed",
    headers: () => ({ "retry-after": BUSY_RETRY_AFTER_SECONDS, connection: "close" })
  }),
  NotFound: httpError(NotFound, { status: 404, description: "no such route" }),
  InternalError: httpError(InternalError, { status: 500, description: "a bug: logged with its cause" })
} satisfies { readonly [Tag in GatewayError["_tag"]]: HttpError<Extract<GatewayError, { _tag: Tag }>, any> }

const encoders = Object.fromEntries(
  Object.entries(HttpErrors).map(([tag, entry]) => [tag, Schema.encodeSync(entry.schema as Schema.Schema<any, any>)])
) as Record<GatewayError["_tag"], (error: GatewayError) => Record<string, unknown>>

/** The one place where typed errors become HTTP status, headers and JSON body. */
export const toErrorResponse = (error: GatewayError): ErrorResponse => {
  const entry = HttpErrors[error._tag] as HttpError<GatewayError, any>
  return { status: entry.status, headers: entry.headers(error), body: encoders[error._tag](error) }
}

/** Whether a failure is one of the errors of the table (by tag, and an instance of that error's class). */
export const isGatewayError = (error: unknown): error is GatewayError => {
  if (typeof error !== "object" || error === null || !("_tag" in error)) return false
  const tag = (error as { readonly _tag: unknown })._tag
  return typeof tag === "string" && Object.hasOwn(HttpErrors, tag) && guards[tag as GatewayError["_tag"]](error)
}

const guards = Object.fromEntries(
  Object.entries(HttpErrors).map(([tag, entry]) => [tag, Schema.is(entry.schema as Schema.Schema<any, any>)])
) as unknown as Record<GatewayError["_tag"], (u: unknown) => boolean>
