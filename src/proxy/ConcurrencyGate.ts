import { Effect, Exit } from "effect"

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
   * A slot, waiting if need be; `onFull(waitedMs)` when the queue is full (at once) or the wait runs out. An
   * interrupted wait leaves the queue; a slot granted to a wait that then timed out is given back.
   */
  enter<E>(onFull: (waitedMs: number) => E): Effect.Effect<void, E> {
    return Effect.suspend(() => {
      if (this.tryEnter()) return Effect.void
      if (this.waiting.size >= this.queueCapacity) return Effect.fail(onFull(0))
      let granted = false
      return Effect.async<void>((resume) => {
        const ticket = () => {
          granted = true
          resume(Effect.void)
        }
        this.waiting.add(ticket)
        return Effect.sync(() => {
          this.waiting.delete(ticket)
        })
      }).pipe(
        Effect.timeoutFail({ duration: this.maxWaitMs, onTimeout: () => onFull(this.maxWaitMs) }),
        Effect.onExit((exit) => (Exit.isFailure(exit) && granted ? Effect.sync(() => this.leave()) : Effect.void))
      )
    })
  }
}
