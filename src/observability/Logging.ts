import { Cause, Context, FiberRef, FiberRefs, HashMap, Layer, List, Logger, type LogLevel, Tracer } from "effect"
import { TracingEnabled } from "./Telemetry.ts"

/**
 * One JSON object per line: ts, level, msg, then the annotations (event, serviceId, requestId, ...) flat, and the
 * trace and span ids of the current span when traces are exported (so a line leads to its trace).
 */
export const makeJsonLogger = (write: (line: string) => void) =>
  Logger.make(({ annotations, cause, context, date, logLevel, message, spans }) => {
    const line: Record<string, unknown> = {
      ts: date.toISOString(),
      level: logLevel.label.toLowerCase(),
      msg: Array.isArray(message) ? message.map(String).join(" ") : String(message)
    }
    for (const [key, value] of HashMap.toEntries(annotations)) line[key] = value
    if (!Cause.isEmpty(cause)) line.cause = Cause.pretty(cause)
    const span = List.head(spans)
    if (span._tag === "Some") line.span = span.value.label
    const services = FiberRefs.getOrDefault(context, FiberRef.currentContext)
    if (Context.get(services, TracingEnabled)) {
      const current = Context.getOption(services, Tracer.ParentSpan)
      if (current._tag === "Some") {
        line.traceId = current.value.traceId
        line.spanId = current.value.spanId
      }
    }
    write(`${JSON.stringify(line)}\n`)
  })

// ---------------------------------------------------------------------------
// Pretty: one line a person reads per event, `12:03:04 demo  starting on local (attempt 1/3)…`
// ---------------------------------------------------------------------------

export interface PrettyOptions {
  /** ANSI colours: only for a terminal (and never with NO_COLOR). */
  readonly colour: boolean
  /** Attempts per machine of a service (retry_count + 1), for "attempt 1/3". */
  readonly attemptsOf?: (serviceId: string) => number | undefined
  /** The service column's width: the longest service id. */
  readonly width?: number
}

const ANSI = { dim: "2", red: "31", yellow: "33", cyan: "36", green: "32" } as const

const seconds = (ms: unknown) => {
  const n = Number(ms)
  return n < 10_000 ? `${(n / 1000).toFixed(1)} s` : `${Math.round(n / 1000)} s`
}

type Fields = Readonly<Record<string, unknown>>

/** The text of an event, without the service id (it has its own column). Undefined: use the log message. */
const eventText = (fields: Fields, attemptsOf: PrettyOptions["attemptsOf"]): string | undefined => {
  const of = () => {
    const total = typeof fields.serviceId === "string" ? attemptsOf?.(fields.serviceId) : undefined
    return total === undefined ? `${fields.attempt}` : `${fields.attempt}/${total}`
  }
  switch (fields.event) {
    case "start_requested":
      return `start requested (${fields.trigger}), will try ${(fields.machines as ReadonlyArray<string>).join(", ")}`
    case "attempt_started":
      return `starting on ${fields.machineId} (attempt ${of()})…`
    case "attempt_failed":
      return `attempt ${of()} on ${fields.machineId} failed: ${fields.error}: ${fields.message}`
    case "ready":
      return `ready on ${fields.machineId} after ${seconds(fields.durationMs)} (${fields.released} waiting request(s) released)`
    case "start_failed":
      return `start failed after ${(fields.attempts as ReadonlyArray<unknown>).length} attempt(s), ${seconds(fields.durationMs)}`
    case "state":
      return `${fields.from} → ${fields.to}`
    case "idle_stop":
      return `idle for ${seconds(fields.idleMs)}, stopping`
    case "stopped":
      return `stopped (${fields.reason})`
    case "process_output":
      return `${fields.stream === "stderr" ? "!" : "|"} `
    case "process_spawned":
      return `process ${fields.pid} spawned`
    case "process_stopped":
      return `process ${fields.pid} stopped`
    default:
      return undefined
  }
}

export const makePrettyLogger = (write: (line: string) => void, options: PrettyOptions) => {
  const paint = (code: string, text: string) => (options.colour ? `\u001b[${code}m${text}\u001b[0m` : text)
  const width = Math.min(options.width ?? 0, 24)
  return Logger.make(({ annotations, cause, date, logLevel, message }) => {
    const fields = Object.fromEntries(HashMap.toEntries(annotations)) as Record<string, unknown>
    const msg = Array.isArray(message) ? message.map(String).join(" ") : String(message)
    const serviceId = typeof fields.serviceId === "string" ? fields.serviceId : undefined
    const time = date.toTimeString().slice(0, 8)
    const known = eventText(fields, options.attemptsOf)
    // Output lines carry the child's own text after the marker; other events have their own wording.
    let text =
      fields.event === "process_output"
        ? `${known}${msg}`
        : (known ??
          (serviceId !== undefined && msg.startsWith(`${serviceId}: `) ? msg.slice(serviceId.length + 2) : msg))
    const level = logLevel._tag
    if (level === "Error" || level === "Fatal") text = paint(ANSI.red, `error: ${text}`)
    else if (level === "Warning") text = paint(ANSI.yellow, `warning: ${text}`)
    else if (fields.event === "ready") text = paint(ANSI.green, text)
    const service = serviceId === undefined ? "" : `${paint(ANSI.cyan, serviceId.padEnd(width))}  `
    let line = `${paint(ANSI.dim, time)} ${service}${text}`
    if (!Cause.isEmpty(cause)) line += `\n${Cause.pretty(cause).replace(/^/gm, "    ")}`
    write(`${line}\n`)
  })
}

// ---------------------------------------------------------------------------
// Writing to stdout: a reader that goes away (`| head`, a restarted collector) never stops the gateway.
// ---------------------------------------------------------------------------

/**
 * A writer for stdout or stderr that survives its reader closing. Without an 'error' listener, the EPIPE of the next
 * write after `| head -1` exits is an uncaught exception; with it, the stream is marked closed and later lines are
 * dropped (once, `note` says so elsewhere). The gateway keeps serving.
 */
export const safeWriter = (stream: NodeJS.WritableStream, name: string, note?: (text: string) => void) => {
  let open = true
  const close = (error: NodeJS.ErrnoException) => {
    if (!open) return
    open = false
    note?.(`hestia: ${name} closed (${error.code ?? error.message}); log lines to it are dropped from now on\n`)
  }
  stream.on("error", close)
  return (line: string) => {
    if (!open) return
    try {
      stream.write(line)
    } catch (error) {
      close(error as NodeJS.ErrnoException)
    }
  }
}

let writers: { readonly stdout: (line: string) => void; readonly stderr: (line: string) => void } | undefined

/** Install the guards on both streams (once), before anything writes: the runtime's own last words included. */
export const guardStdio = () => {
  if (writers === undefined) {
    const stderr = safeWriter(process.stderr, "stderr")
    writers = { stderr, stdout: safeWriter(process.stdout, "stdout", stderr) }
  }
  return writers
}

/** The process's stdout and stderr, safe to write to after their reader has gone. */
export const stdout = (line: string) => guardStdio().stdout(line)
export const stderr = (line: string) => guardStdio().stderr(line)

export const jsonLogger = makeJsonLogger(stdout)

export type LogFormat = "json" | "pretty"

/** The configured format, else pretty for a terminal and JSON for a pipe or file. */
export const resolveFormat = (configured: LogFormat | undefined, isTerminal = process.stdout.isTTY === true) =>
  configured ?? (isTerminal ? "pretty" : "json")

export const layer = (
  level: LogLevel.LogLevel,
  format: LogFormat = "json",
  pretty: Omit<PrettyOptions, "colour"> = {}
) =>
  Layer.merge(
    Logger.replace(
      Logger.defaultLogger,
      format === "json"
        ? jsonLogger
        : makePrettyLogger(stdout, {
            ...pretty,
            colour: process.stdout.isTTY === true && process.env.NO_COLOR === undefined
          })
    ),
    Logger.minimumLogLevel(level)
  )
