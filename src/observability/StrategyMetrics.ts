import { Metric, MetricBoundaries, MetricLabel } from "effect"
import type { StrategyFailureReason } from "../domain/Errors.ts"

// The strategy plugins' metrics. Apart from Metrics.ts (which reads the registry) so that the registry can depend on
// Strategies without an import cycle; they are in the same global registry and exposition.

export const strategyCallsTotal = Metric.counter("hestia_strategy_calls_total", {
  description: "Calls of strategy plugins, by strategy."
})
export const strategyFailuresTotal = Metric.counter("hestia_strategy_failures_total", {
  description:
    "Strategy calls that gave no decision, by strategy and reason (threw, timeout, invalid_result, unavailable); the default rule decided."
})
export const strategyCallDuration = Metric.histogram(
  "hestia_strategy_call_duration_seconds",
  MetricBoundaries.fromIterable([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]),
  "Time of a strategy call as its caller waits for it (worker round trip included), by strategy."
)
export const strategyRestartsTotal = Metric.counter("hestia_strategy_restarts_total", {
  description: "Strategy workers that ended abnormally (blocked, crashed, out of memory), by strategy."
})

/** The label of calls to a name no loaded strategy has: bounded, never the raw name. */
export const UNKNOWN_STRATEGY = "_unknown"

const REASONS: ReadonlyArray<StrategyFailureReason> = ["threw", "timeout", "invalid_result", "unavailable"]

export interface StrategyRecorder {
  readonly call: (seconds: number) => void
  readonly failure: (reason: StrategyFailureReason) => void
  readonly restart: () => void
}

/** Synchronous updates on label arrays made once per strategy (their identity is the metric's cache key). */
export const strategyRecorder = (strategy: string): StrategyRecorder => {
  const labels = [MetricLabel.make("strategy", strategy)]
  const byReason = new Map(REASONS.map((reason) => [reason, [...labels, MetricLabel.make("reason", reason)]] as const))
  // Present from the first load, so a rate over them is defined before the first failure.
  strategyCallsTotal.unsafeUpdate(0, labels)
  for (const reasonLabels of byReason.values()) strategyFailuresTotal.unsafeUpdate(0, reasonLabels)
  return {
    call: (seconds) => {
      strategyCallsTotal.unsafeUpdate(1, labels)
      strategyCallDuration.unsafeUpdate(seconds, labels)
    },
    failure: (reason) => strategyFailuresTotal.unsafeUpdate(1, byReason.get(reason)!),
    restart: () => strategyRestartsTotal.unsafeUpdate(1, labels)
  }
}
