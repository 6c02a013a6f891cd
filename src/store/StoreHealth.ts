import { Cause, Effect, Metric, MetricLabel } from "effect"

/** What a failed write was for: the `operation` label of the metric and log lines (a fixed, small set). */
export const WRITE_OPERATIONS = [
  "activity",
  "service_state",
  "last_activity",
  "config_mirror",
  "process_record",
  "container_record",
  "key_sync",
  "key_last_use"
] as const
export type WriteOperation = (typeof WRITE_OPERATIONS)[number]

export const storeWriteFailures = Metric.counter("hestia_store_write_failures_total", {
  description: "Database writes that failed and were given up, by operation (bookkeeping only: the gateway goes on)."
})

export interface StoreWriteError {
  readonly operation: WriteOperation
  /** SQLite's own message, with its code when it has one (e.g. `SQLITE_READONLY: attempt to write a readonly database`). */
  readonly message: string
  /** ISO time. */
  readonly at: string
}

/** The store as `/healthz` shows it. */
export interface StoreStatus {
  /** `failing` while the latest write failed; back to `ok` with the next write that succeeds. */
  readonly writes: "ok" | "failing"
  readonly writeFailures: number
  readonly lastError: StoreWriteError | null
}

/** Why a write failed, in SQLite's words: SqlError's own message ("Failed to execute statement") says nothing. */
export const failureReason = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  const inner = typeof error === "object" && error !== null && "cause" in error ? error.cause : undefined
  const source = inner instanceof Error ? inner : error
  if (source instanceof Error) {
    const code = (source as { code?: unknown }).code
    return typeof code === "string" && !source.message.startsWith(code) ? `${code}: ${source.message}` : source.message
  }
  return String(source)
}

/**
 * The database is bookkeeping: a write that fails (read-only file, full disk) never fails or cancels what caused it.
 * It is logged with SQLite's reason, counted in `hestia_store_write_failures_total`, and `/healthz` says degraded
 * until a write succeeds again.
 */
export class StoreHealth extends Effect.Service<StoreHealth>()("hestia/StoreHealth", {
  effect: Effect.gen(function* () {
    const clock = yield* Effect.clock
    for (const operation of WRITE_OPERATIONS) {
      // Every series exists from the start, so a rate over it is defined before the first failure.
      yield* Metric.incrementBy(
        Metric.taggedWithLabels(storeWriteFailures, [MetricLabel.make("operation", operation)]),
        0
      )
    }
    let writeFailures = 0
    let failing = false
    let lastError: StoreWriteError | null = null

    const failed = (operation: WriteOperation, cause: Cause.Cause<unknown>, annotations: Record<string, unknown>) =>
      Effect.suspend(() => {
        const message = failureReason(cause)
        writeFailures++
        failing = true
        lastError = { operation, message, at: new Date(clock.unsafeCurrentTimeMillis()).toISOString() }
        return Effect.logError(`database write failed (${operation}): ${message}; the gateway goes on without it`).pipe(
          Effect.annotateLogs({ ...annotations, event: "store_write_failed", operation, error: message }),
          Effect.zipRight(
            Metric.increment(Metric.taggedWithLabels(storeWriteFailures, [MetricLabel.make("operation", operation)]))
          )
        )
      })

    const succeeded = Effect.suspend(() => {
      if (!failing) return Effect.void
      failing = false
      return Effect.logInfo("database writes succeed again").pipe(
        Effect.annotateLogs({ event: "store_write_recovered", writeFailures })
      )
    })

    /** Run a bookkeeping write: it never fails; a failure (typed or defect) is logged, counted and shown. */
    const bestEffort = <A, E, R>(
      operation: WriteOperation,
      write: Effect.Effect<A, E, R>,
      annotations: Record<string, unknown> = {}
    ): Effect.Effect<void, never, R> =>
      Effect.matchCauseEffect(write, {
        onSuccess: () => succeeded,
        onFailure: (cause) =>
          Cause.isInterruptedOnly(cause) ? Effect.interrupt : failed(operation, cause, annotations)
      })

    const status = (): StoreStatus => ({ writes: failing ? "failing" : "ok", writeFailures, lastError })

    return { bestEffort, status }
  })
}) {}
