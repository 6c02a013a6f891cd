import { Clock, Deferred, Effect, FiberId, FiberSet } from "effect"
import type { GroupConfig } from "../config/GroupConfig.ts"
import type { ServiceOwner } from "./ServiceOwner.ts"
import type { StartProgress } from "./ServiceState.ts"
import type { StartGate } from "./StartGate.ts"

interface Waiting {
  readonly serviceId: string
  readonly turn: Deferred.Deferred<void>
  readonly progress: StartProgress
  /** The member it waited for, for its trace. */
  waitedFor: string | undefined
}

/**
 * One running member at a time (the persistent members aside): the gate its members' starts pass. A start that finds
 * another member running queues (first come, first served across the group, so two busy members alternate instead of
 * one starving the other); the running member is then evicted — once it has been hot `min_hot_ms`, it drains (takes
 * no new requests, finishes the ones it has, for at most `drain_timeout_ms`) and stops — and the first in the queue
 * runs. Every step happens under the lock the members share, so no decision is taken on a stale read.
 */
export const make = (options: {
  readonly group: GroupConfig
  readonly lock: Effect.Semaphore
  /** The members' owners, once they exist. */
  readonly owner: (serviceId: string) => ServiceOwner | undefined
  readonly fibers: FiberSet.FiberSet
}): StartGate => {
  const { group, lock } = options
  const persistent = new Set(group.persistent)
  let holder: string | undefined
  const queue: Array<Waiting> = []
  /** The holder an eviction is under way for (one at a time). */
  let evicting: string | undefined

  const locked = <A, E>(effect: Effect.Effect<A, E>) => lock.withPermits(1)(Effect.uninterruptible(effect))

  /** Under the lock: hand the place to the first in the queue, and start making room for the next one. */
  const advance: Effect.Effect<void> = Effect.suspend(() => {
    if (holder === undefined) {
      const next = queue.shift()
      if (next === undefined) return Effect.void
      holder = next.serviceId
      next.progress.waitingFor = undefined
      return Effect.zipRight(Deferred.succeed(next.turn, undefined), advance)
    }
    const head = queue[0]
    if (head === undefined || evicting === holder) return Effect.void
    for (const waiting of queue) {
      waiting.progress.waitingFor = holder
      waiting.waitedFor = holder
    }
    evicting = holder
    // In the registry's FiberSet: a gateway stop ends it.
    return Effect.asVoid(FiberSet.run(options.fibers, Effect.interruptible(evict(holder))))
  })

  /** Make `victim` room for the first in the queue: wait until it runs and has run long enough, drain it, stop it. */
  const evict = (victim: string) =>
    Effect.gen(function* () {
      const owner = options.owner(victim)
      if (owner === undefined) return
      const eviction = owner.eviction
      // A member still starting finishes its start first: cutting it off would waste the boot.
      if (!(yield* eviction.running)) return
      const since = eviction.hotSince()
      if (since !== undefined) {
        const hotFor = (yield* Clock.currentTimeMillis) - since
        if (hotFor < group.minHotMs) yield* Effect.sleep(group.minHotMs - hotFor)
      }
      const by = queue[0]?.serviceId
      if (by === undefined || holder !== victim) return
      const drainStart = yield* Clock.currentTimeMillis
      if (!(yield* eviction.drain(by))) return
      yield* Effect.timeoutOption(eviction.idle, group.drainTimeoutMs)
      yield* eviction.evict(by, (yield* Clock.currentTimeMillis) - drainStart)
    }).pipe(
      // When the victim became cold some other way (stopped, crashed), `leave` has moved on already.
      Effect.ensuring(
        locked(
          Effect.sync(() => {
            if (evicting === victim) evicting = undefined
          })
        )
      )
    )

  return {
    enter: (serviceId, progress) => {
      if (persistent.has(serviceId)) return Effect.void
      const turn = Deferred.unsafeMake<void>(FiberId.none)
      const waiting: Waiting = { serviceId, turn, progress, waitedFor: undefined }
      return locked(
        Effect.gen(function* () {
          if (holder === undefined || holder === serviceId) {
            holder = serviceId
            return false
          }
          queue.push(waiting)
          yield* advance
          return true
        })
      ).pipe(
        Effect.flatMap((queued) =>
          queued
            ? Deferred.await(turn).pipe(
                Effect.tap(() => Effect.annotateCurrentSpan("hestia.group.waited_for", waiting.waitedFor ?? "")),
                Effect.withSpan("ServiceRegistry.groupWait", {
                  attributes: { "hestia.group": group.id, "hestia.service.id": serviceId }
                }),
                // A start cancelled while it waits leaves the queue.
                Effect.onInterrupt(() =>
                  locked(
                    Effect.gen(function* () {
                      const at = queue.findIndex((waiting) => waiting.turn === turn)
                      if (at !== -1) queue.splice(at, 1)
                      else if (holder === serviceId) {
                        holder = undefined
                        yield* advance
                      }
                    })
                  )
                )
              )
            : Effect.void
        )
      )
    },
    leave: (serviceId) =>
      Effect.suspend(() => {
        if (holder !== serviceId) return Effect.void
        holder = undefined
        if (evicting === serviceId) evicting = undefined
        return advance
      }),
    claim: (serviceId) =>
      Effect.sync(() => {
        if (persistent.has(serviceId)) return undefined
        if (holder === undefined || holder === serviceId) {
          holder = serviceId
          return undefined
        }
        return holder
      })
  }
}
