import type {
  BadRequest,
  ConfigInvalid,
  GatewayStopping,
  InvalidModelRequest,
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

export interface ErrorResponse {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: Record<string, unknown>
}

/** Seconds a client is told to wait before retrying a service that is busy starting or failed to start. */
const RETRY_AFTER_SECONDS = "5"
/** For a service that is busy rather than starting: a slot frees as soon as one request ends. */
const BUSY_RETRY_AFTER_SECONDS = "1"

/** The one place where typed errors become HTTP status, headers and JSON body. */
export const toErrorResponse = (error: GatewayError): ErrorResponse => {
  const body = { error: error._tag, message: error.message }
  switch (error._tag) {
    case "UnknownService":
      return { status: 404, headers: {}, body: { ...body, serviceId: error.serviceId } }
    case "UnknownGroup":
      return { status: 404, headers: {}, body: { ...body, group: error.group } }
    case "ConfigInvalid":
      return { status: 400, headers: {}, body: { ...body, problem: error.problem } }
    case "Unauthorized":
      return { status: 401, headers: { "www-authenticate": `${error.challenge ?? "Bearer"} realm="hestia"` }, body }
    case "QueueFull":
      return {
        status: 503,
        headers: { "retry-after": RETRY_AFTER_SECONDS },
        body: { ...body, serviceId: error.serviceId, capacity: error.capacity }
      }
    case "QueueTimeout":
      // The start goes on: the client is told how far it got, and when to try again.
      return {
        status: 504,
        headers: { "retry-after": RETRY_AFTER_SECONDS },
        body: {
          ...body,
          serviceId: error.serviceId,
          waitedMs: error.waitedMs,
          ...(error.attempts === undefined ? {} : { attempts: error.attempts }),
          ...(error.attempt === undefined ? {} : { attempt: error.attempt })
        }
      }
    case "StartupFailed":
      return {
        status: 503,
        headers: { "retry-after": RETRY_AFTER_SECONDS },
        body: { ...body, serviceId: error.serviceId, attempts: error.attempts }
      }
    case "UpstreamUnavailable":
      return { status: 502, headers: {}, body: { ...body, serviceId: error.serviceId } }
    case "UpstreamTimeout":
      return {
        status: 504,
        headers: {},
        body: {
          ...body,
          serviceId: error.serviceId,
          ...(error.timeoutMs === undefined ? {} : { timeoutMs: error.timeoutMs })
        }
      }
    case "UpstreamPoolFull":
      return {
        status: 503,
        headers: { "retry-after": BUSY_RETRY_AFTER_SECONDS },
        body: { ...body, serviceId: error.serviceId, connections: error.connections, waitedMs: error.waitedMs }
      }
    case "ServiceBusy":
      return {
        status: 503,
        headers: { "retry-after": BUSY_RETRY_AFTER_SECONDS },
        body: { ...body, serviceId: error.serviceId, limit: error.limit, waitedMs: error.waitedMs }
      }
    // The rest of the body is not read: the connection cannot be reused.
    case "RequestBodyTooLarge":
      return { status: 413, headers: { connection: "close" }, body: { ...body, limitBytes: error.limitBytes } }
    case "UpstreamBodyTooLarge":
      return { status: 502, headers: {}, body: { ...body, serviceId: error.serviceId, limitBytes: error.limitBytes } }
    case "RequestBodyTimeout":
      return {
        status: 408,
        headers: { connection: "close" },
        body: { ...body, serviceId: error.serviceId, idleMs: error.idleMs }
      }
    case "TooManySubscribers":
      return { status: 503, headers: { "retry-after": RETRY_AFTER_SECONDS }, body: { ...body, limit: error.limit } }
    case "BadRequest":
      return { status: 400, headers: {}, body }
    case "UnknownModel":
      return { status: 404, headers: {}, body: { ...body, model: error.model, known: error.known } }
    case "InvalidModelRequest":
      return { status: 400, headers: {}, body: { ...body, known: error.known } }
    case "TooManyFollowers":
      return {
        status: 503,
        headers: { "retry-after": RETRY_AFTER_SECONDS },
        body: { ...body, serviceId: error.serviceId, limit: error.limit }
      }
    case "GatewayStopping":
      return { status: 503, headers: { "retry-after": BUSY_RETRY_AFTER_SECONDS, connection: "close" }, body }
  }
}
