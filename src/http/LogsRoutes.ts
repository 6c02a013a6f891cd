import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Schedule, Schema, Stream } from "effect"
import { LiveConfig } from "../config/LiveConfig.ts"
import { UnknownService } from "../domain/Errors.ts"
import { type LogLine, RING_LINES, ServiceLogs } from "../observability/ServiceLogs.ts"
import { decodeSearchParams, flagParam, intParam, wholeNumber } from "./SearchParams.ts"
import { Draining } from "./Shutdown.ts"

export const DEFAULT_TAIL = 100

/** `?tail=N&follow=1`: the last N lines (0–RING_LINES, default 100); with follow, then every new line as SSE. */
export const LogsParams = Schema.Struct({
  tail: Schema.optional(intParam("tail", 0, RING_LINES)),
  follow: Schema.optional(flagParam("follow"))
})

const ServiceParams = Schema.Struct({ id: Schema.String })

const lineJson = (line: LogLine) => ({
  seq: line.seq,
  ts: new Date(line.at).toISOString(),
  stream: line.stream,
  line: line.line
})

/** Each line is an SSE `line` event whose id is its sequence number, so an EventSource resumes where it left off. */
const lineFrame = (line: LogLine) => `id: ${line.seq}\nevent: line\ndata: ${JSON.stringify(lineJson(line))}\n\n`

const RECONNECT_MS = 3_000

/**
 * `GET /v1/services/{id}/logs`: JSON `{serviceId, lines}`, oldest first; with `follow=1` a Server-Sent Events stream
 * of the same lines, then each new one (`dropped` events count lines skipped for a reader that fell 1000 behind).
 * A reconnecting EventSource sends `Last-Event-ID` and gets only the lines after it that the ring still holds.
 */
export const logs = Effect.gen(function* () {
  const { id } = yield* HttpRouter.schemaPathParams(ServiceParams)
  const params = yield* decodeSearchParams(LogsParams)
  const config = (yield* LiveConfig).current()
  if (!config.services.has(id)) return yield* new UnknownService({ serviceId: id })
  const serviceLogs = yield* ServiceLogs
  const tail = params.tail ?? DEFAULT_TAIL
  if (params.follow !== true) {
    return yield* HttpServerResponse.json({ serviceId: id, lines: serviceLogs.tail(id, tail).map(lineJson) })
  }
  const request = yield* HttpServerRequest.HttpServerRequest
  const lastEventId = wholeNumber(String(request.headers["last-event-id"] ?? ""))
  // A full house is a 503 before answering; the follower itself belongs to the response stream, so a client that
  // leaves (even before the first byte) releases it.
  const refused = serviceLogs.refusal(id)
  if (refused !== undefined) return yield* refused
  const draining = yield* Draining
  const body = Stream.unwrapScoped(
    Effect.map(serviceLogs.follow(id, lastEventId === undefined ? tail : RING_LINES, lastEventId), (follower) => {
      const live = Stream.repeatEffect(follower.take).pipe(
        Stream.flattenIterables,
        Stream.map((item) =>
          item._tag === "Line"
            ? lineFrame(item.line)
            : `event: dropped\ndata: ${JSON.stringify({ lines: item.lines, reason: "reader too slow" })}\n\n`
        )
      )
      const heartbeats = Stream.fromSchedule(Schedule.spaced("15 seconds")).pipe(Stream.as(": heartbeat\n\n"))
      return Stream.make(`retry: ${RECONNECT_MS}\n\n`, ...follower.backlog.map(lineFrame)).pipe(
        Stream.concat(Stream.merge(live, heartbeats, { haltStrategy: "left" }))
      )
    })
  ).pipe(
    // Lost a race for the last place: say so in the stream (the EventSource retries later).
    Stream.catchAll((error) =>
      Stream.make(`event: refused\ndata: ${JSON.stringify({ error: error._tag, message: error.message })}\n\n`)
    ),
    // A stopping gateway ends the stream at once (an EventSource reconnects to the next one).
    Stream.interruptWhen(draining.begun),
    Stream.encodeText
  )
  return HttpServerResponse.stream(body, {
    contentType: "text/event-stream",
    headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
  })
})
