import type * as Http from "node:http"
import type { Socket } from "node:net"
import { Deferred, Effect, Schedule } from "effect"
import * as Logging from "../observability/Logging.ts"

/**
 * The gateway has begun to stop: what never ends by itself (the SSE streams, websockets) ends when this opens, and
 * every answer from now on closes its connection.
 */
export class Draining extends Effect.Service<Draining>()("hestia/Draining", {
  effect: Effect.gen(function* () {
    const begun = yield* Deferred.make<void>()
    let draining = false
    return {
      begin: Effect.suspend(() => {
        draining = true
        return Deferred.succeed(begun, undefined)
      }),
      /** Read per request (a boolean, no fiber). */
      isDraining: () => draining,
      /** Completes when the stop begins: `Stream.interruptWhen(draining.begun)` ends a stream then. */
      begun: Deferred.await(begun)
    }
  })
}) {}

/** How often idle keep-alive connections are closed while the gateway drains (a finished response leaves one). */
const IDLE_SWEEP_MS = 50
/** After the grace, how long the cut connections may take to be gone before the stop goes on regardless. */
const CUT_WAIT_MS = 1_000

/**
 * The server's connections that speak HTTP (a websocket's socket is taken out at its upgrade: it has its own close).
 * Node's `closeIdleConnections` leaves out a connection that never sent a request (a browser's preconnect, a
 * client's spare): a drain closes those too. One entry per connection, never per request.
 */
export const trackConnections = (server: Http.Server) => {
  const sockets = new Set<Socket>()
  server.on("connection", (socket: Socket) => {
    sockets.add(socket)
    socket.once("close", () => sockets.delete(socket))
  })
  return sockets
}

/** No answer in progress on it: idle between requests, or no request yet. */
const isIdle = (socket: Socket) => (socket as Socket & { _httpMessage?: unknown })._httpMessage == null

export interface DrainOptions {
  readonly server: Http.Server
  /** From `trackConnections`. */
  readonly sockets: ReadonlySet<Socket>
  readonly graceMs: number
  readonly draining: Draining
  /** The websockets: closed with 1001 at once, cut with the rest at the end of the grace. */
  readonly websockets: { readonly goAway: () => number; readonly destroyAll: () => void }
}

const connections = (server: Http.Server) =>
  Effect.async<number>((resume) => {
    server.getConnections((_error, count) => resume(Effect.succeed(count ?? 0)))
  })

/**
 * The graceful stop of the listening socket: no new connections; websockets get their close frame and SSE streams
 * end at once; idle keep-alive connections close (and every connection once its answer is out); open requests and
 * streams have `graceMs` to finish. Then whatever is left is cut, and the caller's finalizers (the services' stops)
 * run.
 */
export const drain = ({ server, sockets, graceMs, draining, websockets }: DrainOptions) =>
  Effect.gen(function* () {
    const startedAt = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
    const open = yield* connections(server)
    const closed = yield* Deferred.make<void>()
    server.close(() => Deferred.unsafeDone(closed, Effect.void))
    yield* draining.begin
    const closeIdle = () => {
      for (const socket of sockets) if (isIdle(socket)) socket.destroy()
    }
    const openWebsockets = websockets.goAway()
    closeIdle()
    yield* Effect.logInfo(
      `stopping: no new connections; ${open} open (${openWebsockets} websockets) have up to ${graceMs} ms to finish (a second SIGTERM or Ctrl-C exits at once)`
    ).pipe(Effect.annotateLogs({ event: "shutdown_draining", graceMs, connections: open, websockets: openWebsockets }))
    const sweep = Effect.sync(closeIdle).pipe(Effect.repeat(Schedule.spaced(IDLE_SWEEP_MS)), Effect.asVoid)
    // Finalizers run uninterruptible, and the fiber running this one is itself being interrupted: marking the whole
    // wait interruptible would let that pending interruption end it at once. Only the losers of the race and the
    // timeout are made interruptible, so they can be stopped.
    const finished = yield* Deferred.await(closed).pipe(
      Effect.interruptible,
      Effect.raceFirst(Effect.interruptible(sweep)),
      Effect.timeout(graceMs),
      Effect.option
    )
    const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
    if (finished._tag === "Some") {
      yield* Effect.logInfo(`stopped serving: every connection finished within ${now - startedAt} ms`).pipe(
        Effect.annotateLogs({ event: "shutdown_drained", ms: now - startedAt })
      )
      return
    }
    const left = yield* connections(server)
    yield* Effect.logWarning(`shutdown grace of ${graceMs} ms over: cutting ${left} connections`).pipe(
      Effect.annotateLogs({ event: "shutdown_cut", graceMs, connections: left })
    )
    server.closeAllConnections()
    websockets.destroyAll()
    yield* Deferred.await(closed).pipe(Effect.interruptible, Effect.timeout(CUT_WAIT_MS), Effect.ignore)
  })

/**
 * The first SIGTERM or SIGINT is the graceful stop (`NodeRuntime.runMain` interrupts the gateway, its finalizers
 * run); a second one exits at once. `process.exit` still runs the `exit` handlers, so the process groups the gateway
 * spawned are killed even then (orchestrators/Process.ts); without this listener the second signal's default action
 * would end the gateway with no handler run at all, leaving them behind.
 */
export const exitOnSecondSignal = () => {
  let received = 0
  const onSignal = (signal: NodeJS.Signals) => {
    if (++received < 2) return
    Logging.stderr(`hestia: ${signal} again: exiting at once, without waiting for open requests\n`)
    process.exit(signal === "SIGINT" ? 130 : 143)
  }
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)
}
