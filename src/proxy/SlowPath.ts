import { Cause, Effect, Exit, type Fiber } from "effect"
import type { GatewayError } from "../domain/HttpErrors.ts"

/** An exchange (a proxied request or a websocket handshake) that may have to wait before it is sent upstream. */
export interface Waiting {
  /** The waiting fiber, interrupted when the client leaves. */
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined
  readonly sent: boolean
  fail(error: GatewayError): void
  release(): void
}

/**
 * The slow path of an exchange (a cold service, a full gate) on a supervised fiber of its own: a typed failure is
 * answered, and an exchange that never reached the upstream is released (once sent, undici's callbacks release it).
 */
export const runSlowPath = (
  runFork: <E>(effect: Effect.Effect<void, E>) => Fiber.RuntimeFiber<void, E>,
  exchange: Waiting,
  work: Effect.Effect<void, GatewayError>
) => {
  exchange.fiber = runFork(
    work.pipe(
      Effect.onExit((exit) =>
        Effect.sync(() => {
          if (Exit.isSuccess(exit)) return
          const failure = Cause.failureOption(exit.cause)
          if (failure._tag === "Some") exchange.fail(failure.value)
          if (!exchange.sent) exchange.release()
        })
      )
    )
  )
}
