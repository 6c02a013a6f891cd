import { Chunk, Effect, Fiber, Queue } from "effect"
import { type LifecycleEvent, LifecycleEvents } from "../registry/LifecycleEvents.ts"

const BATCH = 512

/**
 * Hand every lifecycle event published from now on to `write`, in batches of up to 512, on a fiber of the current
 * scope (never on the request path). A batch once taken is written even while the fiber is being interrupted, and
 * what is still queued when the scope closes is written then: nothing is lost at shutdown.
 */
export const eventWriter = (write: (batch: ReadonlyArray<LifecycleEvent>) => Effect.Effect<void>) =>
  Effect.gen(function* () {
    const events = yield* LifecycleEvents
    const subscription = yield* events.subscribe
    const writer = yield* Effect.uninterruptibleMask((restore) =>
      restore(Queue.takeBetween(subscription, 1, BATCH)).pipe(
        Effect.flatMap((batch) => write(Chunk.toReadonlyArray(batch)))
      )
    ).pipe(Effect.forever, Effect.forkScoped)
    yield* Effect.addFinalizer(() =>
      Fiber.interrupt(writer).pipe(
        Effect.zipRight(Queue.takeAll(subscription)),
        Effect.flatMap((rest) => (Chunk.isEmpty(rest) ? Effect.void : write(Chunk.toReadonlyArray(rest))))
      )
    )
  })
