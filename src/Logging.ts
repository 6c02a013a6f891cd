import { Cause, HashMap, Layer, List, Logger, type LogLevel } from "effect"

/** One JSON object per line on stdout: ts, level, msg, then the annotations (event, serviceId, ...) flat. */
export const jsonLogger = Logger.make(({ annotations, cause, date, logLevel, message, spans }) => {
  const line: Record<string, unknown> = {
    ts: date.toISOString(),
    level: logLevel.label.toLowerCase(),
    msg: Array.isArray(message) ? message.map(String).join(" ") : String(message)
  }
  for (const [key, value] of HashMap.toEntries(annotations)) line[key] = value
  if (!Cause.isEmpty(cause)) line.cause = Cause.pretty(cause)
  const span = List.head(spans)
  if (span._tag === "Some") line.span = span.value.label
  process.stdout.write(`${JSON.stringify(line)}\n`)
})

export const layer = (level: LogLevel.LogLevel) =>
  Layer.merge(Logger.replace(Logger.defaultLogger, jsonLogger), Logger.minimumLogLevel(level))
