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

export const jsonLogger = makeJsonLogger((line) => process.stdout.write(line))

export const layer = (level: LogLevel.LogLevel) =>
  Layer.merge(Logger.replace(Logger.defaultLogger, jsonLogger), Logger.minimumLogLevel(level))
