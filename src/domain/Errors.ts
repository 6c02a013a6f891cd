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
  serviceId: Schema.String
}) {
  override get message() {
    return `upstream of "${this.serviceId}" did not answer in time`
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
    return `Semaphore rejected the API token (HTTP ${this.status} from ${this.url})`
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

/**
 * Every way one start attempt can fail, by tag. An interface so that a test double's own failure can join the union
 * from its module (declaration merging) without production code knowing it.
 */
export interface StartErrors {
  readonly SpawnFailed: SpawnFailed
  readonly ProcessExited: ProcessExited
  readonly ReadinessTimeout: ReadinessTimeout
  readonly SemaphoreUnreachable: SemaphoreUnreachable
  readonly SemaphoreAuthFailed: SemaphoreAuthFailed
  readonly SemaphoreRequestFailed: SemaphoreRequestFailed
  readonly SemaphoreTaskFailed: SemaphoreTaskFailed
  readonly SemaphoreTaskTimeout: SemaphoreTaskTimeout
}

export type StartError = StartErrors[keyof StartErrors]

/** A stop fails only in ways a start can too; a process, once spawned, can always be killed. */
export interface StopErrors {
  readonly SemaphoreUnreachable: SemaphoreUnreachable
  readonly SemaphoreAuthFailed: SemaphoreAuthFailed
  readonly SemaphoreRequestFailed: SemaphoreRequestFailed
  readonly SemaphoreTaskFailed: SemaphoreTaskFailed
  readonly SemaphoreTaskTimeout: SemaphoreTaskTimeout
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
