import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect, Schedule, Stream } from "effect"
import { LiveConfig } from "../config/LiveConfig.ts"
import { UnknownService } from "../domain/Errors.ts"
import { type LogLine, RING_LINES, ServiceLogs } from "../observability/ServiceLogs.ts"
import { DEFAULT_TAIL, type MAX_TAIL } from "./ApiSchemas.ts"
import { ControlApi } from "./ControlApi.ts"
import { wholeNumber } from "./SearchParams.ts"
import { Draining } from "./Shutdown.ts"

type Holds<T extends true> = T
/** The declaration's bound on `tail` is the ring's size (checked by tsc). */
export type TailBound = Holds<
  [typeof MAX_TAIL, typeof RING_LINES] extends [typeof RING_LINES, typeof MAX_TAIL] ? true : false
>

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
export const LogsHandlers = HttpApiBuilder.group(ControlApi, "logs", (handlers) =>
  Effect.gen(function* () {
    const live = yield* LiveConfig
    const serviceLogs = yield* ServiceLogs
    const draining = yield* Draining
    return handlers.handle("tail", ({ path: { id }, urlParams, request }) =>
      Effect.gen(function* () {
        if (!live.current().services.has(id)) return yield* new UnknownService({ serviceId: id })
        const tail = urlParams.tail ?? DEFAULT_TAIL
        if (urlParams.follow !== true) return { serviceId: id, lines: serviceLogs.tail(id, tail).map(lineJson) }
        const lastEventId = wholeNumber(String(request.headers["last-event-id"] ?? ""))
        // A full house is a 503 before answering; the follower itself belongs to the response stream, so a client
        // that leaves (even before the first byte) releases it.
        const refused = serviceLogs.refusal(id)
        if (refused !== undefined) return yield* refused
        return follow(serviceLogs, draining, id, lastEventId === undefined ? tail : RING_LINES, lastEventId)
      })
    )
  })
)

const follow = (
  serviceLogs: ServiceLogs,
  draining: Draining,
  id: string,
  tail: number,
  lastEventId: number | undefined
) => {
  const body = Stream.unwrapScoped(
    Effect.map(serviceLogs.follow(id, tail, lastEventId), (follower) => {
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
}
