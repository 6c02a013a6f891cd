import { Data, Schema } from "effect"

// ---------------------------------------------------------------------------
// Errors that cross the wire (HTTP responses). Their HTTP mapping is in HttpErrors.ts.
// ---------------------------------------------------------------------------

export class UnknownService extends Schema.TaggedError<UnknownService>()("UnknownService", {
  serviceId: Schema.String
}) {
  override get message() {
    return `unknown service "${this.serviceId}"`
  }
}

export class UnknownGroup extends Schema.TaggedError<UnknownGroup>()("UnknownGroup", {
  group: Schema.String
}) {
  override get message() {
    return `unknown group "${this.group}"`
  }
}

/** A configuration reload that was refused: the file's problem, as a start would print it; the running one stays. */
export class ConfigInvalid extends Schema.TaggedError<ConfigInvalid>()("ConfigInvalid", {
  problem: Schema.String
}) {
  override get message() {
    return `configuration not reloaded: ${this.problem}`
  }
}

export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  reason: Schema.String,
  /** The scheme the client is asked for: API key as Bearer (default), or Basic for the dashboard. */
  challenge: Schema.optional(Schema.Literal("Bearer", "Basic"))
}) {
  override get message() {
    return this.reason
  }
}

export class QueueFull extends Schema.TaggedError<QueueFull>()("QueueFull", {
  serviceId: Schema.String,
  capacity: Schema.Number
}) {
  override get message() {
    return `service "${this.serviceId}" is starting and its queue of ${this.capacity} waiting requests is full`
  }
}

export class TooManyFollowers extends Schema.TaggedError<TooManyFollowers>()("TooManyFollowers", {
  serviceId: Schema.String,
  limit: Schema.Number
}) {
  override get message() {
    return `too many clients follow logs (at most ${this.limit}); try again later`
  }
}

export const StartAttempt = Schema.Struct({
  machine: Schema.String,
  attempt: Schema.Number,
  error: Schema.String,
  message: Schema.String
})
export type StartAttempt = typeof StartAttempt.Type

/** The attempt a start is making, as a client that gave up waiting is told. */
export const AttemptInProgress = Schema.Struct({
  machine: Schema.String,
  number: Schema.Number,
  of: Schema.Number,
  phase: Schema.Literal("starting", "probing"),
  /** ISO time the phase began. */
  since: Schema.String
})

export class QueueTimeout extends Schema.TaggedError<QueueTimeout>()("QueueTimeout", {
  serviceId: Schema.String,
  waitedMs: Schema.Number,
  /** The start goes on without this request: the attempts that failed so far, and the one in progress. */
  attempts: Schema.optional(Schema.Array(StartAttempt)),
  attempt: Schema.optional(AttemptInProgress)
}) {
  override get message() {
    const doing =
      this.attempt === undefined
        ? ""
        : `; still starting: attempt ${this.attempt.number}/${this.attempt.of} on ${this.attempt.machine} (${this.attempt.phase})`
    return `service "${this.serviceId}" did not become ready within ${this.waitedMs} ms${doing}`
  }
}

export class StartupFailed extends Schema.TaggedError<StartupFailed>()("StartupFailed", {
  serviceId: Schema.String,
  attempts: Schema.Array(StartAttempt)
}) {
  override get message() {
    return `service "${this.serviceId}" failed to start after ${this.attempts.length} attempt(s)`
  }
}

export class UpstreamUnavailable extends Schema.TaggedError<UpstreamUnavailable>()("UpstreamUnavailable", {
  serviceId: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `upstream of "${this.serviceId}" is unavailable: ${this.reason}`
  }
}

export class UpstreamTimeout extends Schema.TaggedError<UpstreamTimeout>()("UpstreamTimeout", {
  serviceId: Schema.String,
  /** The limit that ran out (`upstream_timeout_seconds`, or `stream_idle_timeout_seconds` for a silent stream). */
  timeoutMs: Schema.optional(Schema.Number)
}) {
  override get message() {
    return this.timeoutMs === undefined
      ? `upstream of "${this.serviceId}" did not answer in time`
      : `upstream of "${this.serviceId}" did not answer within ${this.timeoutMs} ms`
  }
}

/**
 * A service with `instances:` whose every instance is taken out (each refused or reset a connection, and its health
 * URL has not answered since).
 */
export class NoHealthyInstance extends Schema.TaggedError<NoHealthyInstance>()("NoHealthyInstance", {
  serviceId: Schema.String,
  /** How many instances it has, all of them out. */
  instances: Schema.Number
}) {
  override get message() {
    return `no instance of "${this.serviceId}" is healthy (${this.instances} taken out: each is back once its health URL answers)`
  }
}

/** Every connection of the upstream's pool stayed busy for the whole bounded wait. */
export class UpstreamPoolFull extends Schema.TaggedError<UpstreamPoolFull>()("UpstreamPoolFull", {
  serviceId: Schema.String,
  connections: Schema.Number,
  waitedMs: Schema.Number
}) {
  override get message() {
    return `all ${this.connections} connections to the upstream of "${this.serviceId}" stayed busy for ${this.waitedMs} ms`
  }
}

/** The service's `max_concurrent_requests` were all in progress for the whole bounded wait (or its queue was full). */
export class ServiceBusy extends Schema.TaggedError<ServiceBusy>()("ServiceBusy", {
  serviceId: Schema.String,
  limit: Schema.Number,
  waitedMs: Schema.Number
}) {
  override get message() {
    return `service "${this.serviceId}" already has its ${this.limit} concurrent requests (max_concurrent_requests)`
  }
}

/** A request body that is bigger than the gateway accepts (`max_dispatch_body_bytes` for `POST /v1/requests`). */
export class RequestBodyTooLarge extends Schema.TaggedError<RequestBodyTooLarge>()("RequestBodyTooLarge", {
  limitBytes: Schema.Number
}) {
  override get message() {
    return `request body is larger than the limit of ${this.limitBytes} bytes`
  }
}

/** An upstream answer to `POST /v1/requests` bigger than `max_dispatch_body_bytes`; the upstream request is aborted. */
export class UpstreamBodyTooLarge extends Schema.TaggedError<UpstreamBodyTooLarge>()("UpstreamBodyTooLarge", {
  serviceId: Schema.String,
  limitBytes: Schema.Number
}) {
  override get message() {
    return `the answer of "${this.serviceId}" is larger than the dispatcher's limit of ${this.limitBytes} bytes`
  }
}

/**
 * An upload that sent nothing for `body_idle_timeout_seconds` (or, on the model endpoints, while its body is read to
 * find the model: no service is known yet then).
 */
export class RequestBodyTimeout extends Schema.TaggedError<RequestBodyTimeout>()("RequestBodyTimeout", {
  serviceId: Schema.optional(Schema.String),
  idleMs: Schema.Number
}) {
  override get message() {
    const to = this.serviceId === undefined ? "" : ` to "${this.serviceId}"`
    return `the request body${to} stalled: nothing received for ${this.idleMs} ms`
  }
}

/** `GET /v1/events` already has its maximum of open subscribers. */
export class TooManySubscribers extends Schema.TaggedError<TooManySubscribers>()("TooManySubscribers", {
  limit: Schema.Number
}) {
  override get message() {
    return `the event stream already has its ${this.limit} subscribers`
  }
}

/** The models a model endpoint's error lists: at most 50 names (`more`: how many were left out), then the globs. */
export const KnownModels = Schema.Struct({
  names: Schema.Array(Schema.String),
  more: Schema.Number,
  patterns: Schema.Array(Schema.String)
})
export type KnownModels = typeof KnownModels.Type

const listKnown = (known: KnownModels) => {
  if (known.names.length === 0 && known.patterns.length === 0)
    return "no service declares models (models: in the config)"
  const names = known.names.length === 0 ? "none by name" : known.names.join(", ")
  const more = known.more > 0 ? ` and ${known.more} more` : ""
  const patterns = known.patterns.length === 0 ? "" : `; patterns: ${known.patterns.join(", ")}`
  return `known models: ${names}${more}${patterns}`
}

/** Names in messages are cut: a client may send a long one. */
const quoted = (name: string) => JSON.stringify(name.length > 100 ? `${name.slice(0, 100)}…` : name)

/** A model endpoint's request names a model no service serves. */
export class UnknownModel extends Schema.TaggedError<UnknownModel>()("UnknownModel", {
  model: Schema.String,
  known: KnownModels
}) {
  override get message() {
    return `model ${quoted(this.model)} is not served here; ${listKnown(this.known)}`
  }
}

/** A model endpoint's request that does not say which model: not a JSON object, or no string `model`. */
export class InvalidModelRequest extends Schema.TaggedError<InvalidModelRequest>()("InvalidModelRequest", {
  reason: Schema.String,
  known: KnownModels
}) {
  override get message() {
    return `${this.reason}; ${listKnown(this.known)}`
  }
}

/** A request the gateway refuses as malformed: bad control body, path escape, bad parameter. */
export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", {
  reason: Schema.String
}) {
  override get message() {
    return this.reason
  }
}

/** The gateway is stopping: it takes no new websocket (the client reconnects to the next gateway). */
export class GatewayStopping extends Schema.TaggedError<GatewayStopping>()("GatewayStopping", {}) {
  override get message() {
    return "the gateway is stopping"
  }
}

/** A request for a route the gateway does not have (method and path as asked). */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", {
  method: Schema.String,
  url: Schema.String
}) {
  override get message() {
    return `no route for ${this.method} ${this.url}`
  }
}

/** A defect in a control route: answered without its cause, which is logged. */
export class InternalError extends Schema.TaggedError<InternalError>()("InternalError", {}) {
  override get message() {
    return "internal error"
  }
}

// ---------------------------------------------------------------------------
// Failures of one start attempt. They never reach a client on their own: they are
// collected into StartupFailed.attempts (tag + message).
// ---------------------------------------------------------------------------

export class SpawnFailed extends Schema.TaggedError<SpawnFailed>()("SpawnFailed", {
  serviceId: Schema.String,
  command: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `could not spawn "${this.command}": ${this.reason}`
  }
}

export class ProcessExited extends Schema.TaggedError<ProcessExited>()("ProcessExited", {
  serviceId: Schema.String,
  pid: Schema.Number,
  code: Schema.NullOr(Schema.Number),
  signal: Schema.NullOr(Schema.String)
}) {
  override get message() {
    return `process ${this.pid} exited during start (code ${this.code ?? "none"}, signal ${this.signal ?? "none"})`
  }
}

export class PortInUse extends Schema.TaggedError<PortInUse>()("PortInUse", {
  serviceId: Schema.String,
  address: Schema.String
}) {
  override get message() {
    return `${this.address} is already in use by another process: not starting a second one there`
  }
}

export class ReadinessTimeout extends Schema.TaggedError<ReadinessTimeout>()("ReadinessTimeout", {
  serviceId: Schema.String,
  waitedMs: Schema.Number,
  probes: Schema.Number,
  lastProbe: Schema.String
}) {
  override get message() {
    return `not healthy after ${this.waitedMs} ms (${this.probes} probes, last: ${this.lastProbe})`
  }
}

export class SemaphoreUnreachable extends Schema.TaggedError<SemaphoreUnreachable>()("SemaphoreUnreachable", {
  url: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `Semaphore at ${this.url} is unreachable: ${this.reason}`
  }
}

export class SemaphoreAuthFailed extends Schema.TaggedError<SemaphoreAuthFailed>()("SemaphoreAuthFailed", {
  url: Schema.String,
  status: Schema.Number
}) {
  override get message() {
    return this.url.endsWith("/api/auth/login")
      ? `Semaphore refused the login of semaphore_username (HTTP ${this.status} from ${this.url})`
      : `Semaphore rejected the gateway's credentials (HTTP ${this.status} from ${this.url})`
  }
}

export class SemaphoreRequestFailed extends Schema.TaggedError<SemaphoreRequestFailed>()("SemaphoreRequestFailed", {
  url: Schema.String,
  status: Schema.Number,
  body: Schema.String
}) {
  override get message() {
    return `Semaphore answered HTTP ${this.status} to ${this.url}: ${this.body}`
  }
}

export class SemaphoreTaskFailed extends Schema.TaggedError<SemaphoreTaskFailed>()("SemaphoreTaskFailed", {
  taskId: Schema.Number,
  status: Schema.String
}) {
  override get message() {
    return `Semaphore task ${this.taskId} ended with status "${this.status}"`
  }
}

export class SemaphoreTaskTimeout extends Schema.TaggedError<SemaphoreTaskTimeout>()("SemaphoreTaskTimeout", {
  taskId: Schema.Number,
  waitedMs: Schema.Number,
  lastStatus: Schema.String
}) {
  override get message() {
    return `Semaphore task ${this.taskId} did not finish within ${this.waitedMs} ms (last status "${this.lastStatus}")`
  }
}

export class EngineUnreachable extends Schema.TaggedError<EngineUnreachable>()("EngineUnreachable", {
  /** The engine's address as configured (`unix:///var/run/docker.sock`, `tcp://nas.lan:2375`). */
  engine: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `container engine at ${this.engine} is unreachable: ${this.reason}`
  }
}

export class ContainerNotFound extends Schema.TaggedError<ContainerNotFound>()("ContainerNotFound", {
  engine: Schema.String,
  name: Schema.String
}) {
  override get message() {
    return `no container "${this.name}" on ${this.engine}, and no container.image to create it from`
  }
}

export class ImageMissing extends Schema.TaggedError<ImageMissing>()("ImageMissing", {
  engine: Schema.String,
  image: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `image ${this.image} is not on ${this.engine}: ${this.reason}`
  }
}

/** How many of a container's last output lines an exit carries. */
export const LOG_TAIL_LINES = 20

export class ContainerExited extends Schema.TaggedError<ContainerExited>()("ContainerExited", {
  engine: Schema.String,
  name: Schema.String,
  containerId: Schema.String,
  /** null when the engine did not say (the container was removed). */
  exitCode: Schema.NullOr(Schema.Number),
  /** Its last output lines (stdout and stderr), oldest first. */
  logTail: Schema.Array(Schema.String)
}) {
  override get message() {
    const tail = this.logTail.slice(-5)
    return `container "${this.name}" exited (code ${this.exitCode ?? "unknown"})${
      tail.length === 0 ? ", no output" : `; last output:\n${tail.join("\n")}`
    }`
  }
}

/** Any other answer of the engine that is not a success; `message` is the engine's own. */
export class EngineRequestFailed extends Schema.TaggedError<EngineRequestFailed>()("EngineRequestFailed", {
  engine: Schema.String,
  /** e.g. `POST /containers/{id}/start`. */
  operation: Schema.String,
  status: Schema.Number,
  message: Schema.String
}) {}

/**
 * Every way one start attempt can fail, by tag. An interface so that a test double's own failure can join the union
 * from its module (declaration merging) without production code knowing it.
 */
export interface StartErrors {
  readonly SpawnFailed: SpawnFailed
  readonly ProcessExited: ProcessExited
  readonly PortInUse: PortInUse
  readonly ReadinessTimeout: ReadinessTimeout
  readonly SemaphoreUnreachable: SemaphoreUnreachable
  readonly SemaphoreAuthFailed: SemaphoreAuthFailed
  readonly SemaphoreRequestFailed: SemaphoreRequestFailed
  readonly SemaphoreTaskFailed: SemaphoreTaskFailed
  readonly SemaphoreTaskTimeout: SemaphoreTaskTimeout
  readonly EngineUnreachable: EngineUnreachable
  readonly ContainerNotFound: ContainerNotFound
  readonly ImageMissing: ImageMissing
  readonly ContainerExited: ContainerExited
  readonly EngineRequestFailed: EngineRequestFailed
}

export type StartError = StartErrors[keyof StartErrors]

/** A stop fails only in ways a start can too; a process, once spawned, can always be killed. */
export interface StopErrors {
  readonly SemaphoreUnreachable: SemaphoreUnreachable
  readonly SemaphoreAuthFailed: SemaphoreAuthFailed
  readonly SemaphoreRequestFailed: SemaphoreRequestFailed
  readonly SemaphoreTaskFailed: SemaphoreTaskFailed
  readonly SemaphoreTaskTimeout: SemaphoreTaskTimeout
  readonly EngineUnreachable: EngineUnreachable
  readonly EngineRequestFailed: EngineRequestFailed
}

export type StopError = StopErrors[keyof StopErrors]

// ---------------------------------------------------------------------------
// Start-up only: printed, exit code 2.
// ---------------------------------------------------------------------------

export class ConfigError extends Data.TaggedError("ConfigError")<{
  readonly file: string
  readonly path: string
  readonly problem: string
}> {
  override get message() {
    return `${this.file}: ${this.path === "" ? "" : `${this.path}: `}${this.problem}`
  }
}

// ---------------------------------------------------------------------------
// Strategy plugins. A load failure at start becomes a ConfigError (exit 2); on reload it is logged and shown in
// `GET /v1/strategies`. A failed call never reaches a client: it is logged, counted, and means "no decision".
// ---------------------------------------------------------------------------

export class StrategyLoadFailed extends Data.TaggedError("StrategyLoadFailed")<{
  /** The file's path, as `strategies_dir` spells it. */
  readonly file: string
  readonly problem: string
}> {
  override get message() {
    return `${this.file}: ${this.problem}`
  }
}

/** Why a strategy call gave no decision (a label of `hestia_strategy_failures_total`). */
export type StrategyFailureReason = "threw" | "timeout" | "invalid_result" | "unavailable"

export class StrategyCallFailed extends Data.TaggedError("StrategyCallFailed")<{
  readonly strategy: string
  readonly reason: StrategyFailureReason
  readonly detail: string
}> {
  override get message() {
    return `strategy "${this.strategy}" gave no decision (${this.reason}): ${this.detail}`
  }
}

// ---------------------------------------------------------------------------
// Start-up only: printed, exit code 1.
// ---------------------------------------------------------------------------

const LISTEN_REASONS: Readonly<Record<string, string>> = {
  EADDRINUSE: "address in use",
  EACCES: "permission denied",
  EADDRNOTAVAIL: "address not available",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host not found"
}

/** The listening socket could not be opened (port in use, a privileged port, an address this machine lacks). */
export class ListenError extends Data.TaggedError("ListenError")<{
  readonly host: string
  readonly port: number
  /** The system's code (EADDRINUSE, ...), when it gave one. */
  readonly code: string | undefined
  readonly detail: string
}> {
  override get message() {
    const reason = (this.code === undefined ? undefined : LISTEN_REASONS[this.code]) ?? this.detail
    return `cannot listen on ${this.host}:${this.port}: ${reason}`
  }
}
