import { Effect, Queue, type Scope } from "effect"
import { LiveConfig } from "../config/LiveConfig.ts"
import { TooManyFollowers } from "../domain/Errors.ts"

export type LogStream = "stdout" | "stderr"

/** One captured line. `seq` counts every line of the service since the gateway started (1, 2, ...). */
export interface LogLine {
  readonly seq: number
  /** Clock time, ms. */
  readonly at: number
  readonly stream: LogStream
  readonly line: string
}

/** Lines kept per service: the ring's size. */
export const RING_LINES = 1_000
/** Longer lines are cut (with `…`): a ring holds at most RING_LINES × MAX_LINE_CHARS characters. */
export const MAX_LINE_CHARS = 8_192
/** Concurrent followers of one service's log, and of all services together. */
export const MAX_FOLLOWERS_PER_SERVICE = 16
export const MAX_FOLLOWERS = 64
/** Lines held for one follower that reads too slowly; past it lines are skipped and counted. */
export const FOLLOWER_BUFFER = 1_000

/** What a follower reads: a line, or how many lines it missed by reading too slowly. */
export type FollowItem =
  | { readonly _tag: "Line"; readonly line: LogLine }
  | { readonly _tag: "Dropped"; readonly lines: number }

interface Follower {
  readonly queue: Queue.Queue<LogLine>
  dropped: number
}

/** A fixed-size ring: the newest RING_LINES lines, oldest first when read. */
class Ring {
  readonly lines: Array<LogLine> = []
  next = 0
  seq = 0
  readonly followers = new Set<Follower>()

  push(line: LogLine) {
    if (this.lines.length < RING_LINES) this.lines.push(line)
    else {
      this.lines[this.next] = line
      this.next = (this.next + 1) % RING_LINES
    }
  }

  /** The last `n` lines, or those after `afterSeq`, oldest first. */
  read(n: number, afterSeq = 0): Array<LogLine> {
    const ordered =
      this.lines.length < RING_LINES ? this.lines : [...this.lines.slice(this.next), ...this.lines.slice(0, this.next)]
    const fresh = afterSeq > 0 ? ordered.filter((line) => line.seq > afterSeq) : ordered
    return n <= 0 ? [] : fresh.slice(-n)
  }
}

const cut = (line: string) => (line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS - 1)}…` : line)

/**
 * Per-service logs: the captured stdout/stderr of each service's processes (containers later), the last RING_LINES
 * lines in memory (never in SQLite), for `GET /v1/services/{id}/logs`. `append` is the only way in; it is
 * synchronous so that a child's output callback can call it without forking.
 */
export class ServiceLogs extends Effect.Service<ServiceLogs>()("hestia/ServiceLogs", {
  effect: Effect.gen(function* () {
    const live = yield* LiveConfig
    const clock = yield* Effect.clock
    // Only configured services get a ring, so the number of rings is bounded by the config (a reload adds and drops).
    const rings = new Map(Array.from(live.current().services.keys(), (id) => [id, new Ring()] as const))
    yield* live.follow({
      apply: (next) =>
        Effect.sync(() => {
          for (const id of rings.keys()) if (!next.services.has(id)) rings.delete(id)
          for (const id of next.services.keys()) if (!rings.has(id)) rings.set(id, new Ring())
        })
    })
    let followers = 0

    /** Record one line of a service's output and hand it to its followers (a full follower skips it, counted). */
    const append = (serviceId: string, stream: LogStream, line: string): void => {
      const ring = rings.get(serviceId)
      if (ring === undefined) return
      const entry: LogLine = { seq: ++ring.seq, at: clock.unsafeCurrentTimeMillis(), stream, line: cut(line) }
      ring.push(entry)
      for (const follower of ring.followers) {
        if (!Queue.unsafeOffer(follower.queue, entry)) follower.dropped++
      }
    }

    /** The last `n` lines of a service (all kept lines after `afterSeq` when given), oldest first. */
    const tail = (serviceId: string, n: number, afterSeq?: number): ReadonlyArray<LogLine> =>
      rings.get(serviceId)?.read(n, afterSeq) ?? []

    /** The error a new follower of `serviceId` would get now, if any (checked before answering a follow request). */
    const refusal = (serviceId: string): TooManyFollowers | undefined => {
      const size = rings.get(serviceId)?.followers.size ?? 0
      if (size < MAX_FOLLOWERS_PER_SERVICE && followers < MAX_FOLLOWERS) return undefined
      return new TooManyFollowers({
        serviceId,
        limit: size >= MAX_FOLLOWERS_PER_SERVICE ? MAX_FOLLOWERS_PER_SERVICE : MAX_FOLLOWERS
      })
    }

    /**
     * The last `n` lines, then each new line as it is appended, for as long as the scope lasts. Both are taken in one
     * synchronous step, so no line falls between them or comes twice.
     */
    const follow = (
      serviceId: string,
      n: number,
      afterSeq?: number
    ): Effect.Effect<
      { readonly backlog: ReadonlyArray<LogLine>; readonly take: Effect.Effect<ReadonlyArray<FollowItem>> },
      TooManyFollowers,
      Scope.Scope
    > =>
      Effect.gen(function* () {
        const ring = rings.get(serviceId)
        if (ring === undefined) return { backlog: [], take: Effect.never }
        const full = refusal(serviceId)
        if (full !== undefined) return yield* full
        const queue = yield* Queue.bounded<LogLine>(FOLLOWER_BUFFER)
        const follower: Follower = { queue, dropped: 0 }
        const backlog = yield* Effect.acquireRelease(
          Effect.sync(() => {
            ring.followers.add(follower)
            followers++
            return ring.read(n, afterSeq)
          }),
          () =>
            Effect.suspend(() => {
              ring.followers.delete(follower)
              followers--
              return Queue.shutdown(queue)
            })
        )
        const take = Effect.map(Queue.takeBetween(queue, 1, FOLLOWER_BUFFER), (chunk) => {
          const items: Array<FollowItem> = []
          for (const line of chunk) items.push({ _tag: "Line", line })
          // Lines are skipped only while the buffer is full, and a take empties it: the gap is after this chunk.
          if (follower.dropped > 0) {
            items.push({ _tag: "Dropped", lines: follower.dropped })
            follower.dropped = 0
          }
          return items
        })
        return { backlog, take }
      })

    return {
      append,
      tail,
      follow,
      refusal,
      /** Followers open now, all services together. */
      followers: () => followers
    }
  }),
  dependencies: [LiveConfig.Default]
}) {}
