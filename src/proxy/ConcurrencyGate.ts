import { Effect } from "effect"

/**
 * Admission to something that takes at most `limit` requests at once (a service's `max_concurrent_requests`, the
 * connections of an upstream pool). `tryEnter` is the hot path: a comparison and an increment, no fiber. Past the
 * limit, `enter` waits in a FIFO queue of at most `queueCapacity` for at most `maxWaitMs` (Effect's Clock); `leave`
 * hands the slot straight to the longest waiter.
 */
export class ConcurrencyGate {
  active = 0
  /** Insertion-ordered, so the first entry is the longest waiter; a waiter that gives up deletes itself in O(1). */
  private readonly waiting = new Set<() => void>()

  constructor(
    readonly limit: number,
    readonly queueCapacity: number,
    readonly maxWaitMs: number
  ) {}

  get queued() {
    return this.waiting.size
  }

  tryEnter(): boolean {
    if (this.active < this.limit && this.waiting.size === 0) {
      this.active++
      return true
    }
    return false
  }

  leave(): void {
    const next = this.waiting.values().next()
    if (next.done === true) {
      this.active--
      return
    }
    // The slot passes to the waiter: `active` stays as it is.
    this.waiting.delete(next.value)
    next.value()
  }

  /**
   * A slot, waiting if need be; `onGrant` runs exactly once, synchronously, the moment the slot is this caller's
   * (inside the `leave` that frees it, so a queued request goes out in the same tick as the one before it ends, not
   * when its fiber is next scheduled). `onFull(waitedMs)` when the queue is full (at once) or the wait runs out;
   * an interrupted or timed-out wait leaves the queue and never gets a slot.
   */
  enter<E>(onGrant: () => void, onFull: (waitedMs: number) => E): Effect.Effect<void, E> {
    return Effect.suspend(() => {
      if (this.tryEnter()) {
        onGrant()
        return Effect.void
      }
      if (this.waiting.size >= this.queueCapacity) return Effect.fail(onFull(0))
      let granted = false
      const wait = Effect.async<void>((resume) => {
        const ticket = () => {
          granted = true
          onGrant()
          resume(Effect.void)
        }
        this.waiting.add(ticket)
        return Effect.sync(() => {
          this.waiting.delete(ticket)
        })
      })
      return Effect.flatten(
        Effect.timeoutTo(wait, {
          duration: this.maxWaitMs,
          onSuccess: () => Effect.void,
          // Granted in the very tick the time ran out: the slot is taken, so this is a success.
          onTimeout: () => Effect.suspend(() => (granted ? Effect.void : Effect.fail(onFull(this.maxWaitMs))))
        })
      )
    })
  }
}
