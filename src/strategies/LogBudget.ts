import { Clock, Effect } from "effect"

// How often one key (a strategy's failures, its output) may write a log line: `perWindow` lines per `windowMs`; the
// rest are counted, and the next line that is let through says how many were left out. A strategy that fails on
// every request writes one line per window, not one per request.

export interface LogBudget {
  /** Whether a line for `key` may be written now, and how many were left out since the last one that was. */
  readonly take: (key: string) => Effect.Effect<{ readonly allowed: boolean; readonly suppressed: number }>
}

interface Window {
  start: number
  used: number
  suppressed: number
}

export const makeLogBudget = (options: {
  readonly perWindow: number
  readonly windowMs: number
  /** Keys remembered at once; the oldest is forgotten first (its suppressed count with it). */
  readonly maxKeys: number
}): LogBudget => {
  const windows = new Map<string, Window>()
  return {
    take: (key) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        let window = windows.get(key)
        if (window === undefined) {
          if (windows.size >= options.maxKeys) windows.delete(windows.keys().next().value!)
          window = { start: now, used: 0, suppressed: 0 }
          windows.set(key, window)
        }
        if (now - window.start >= options.windowMs) {
          window.start = now
          window.used = 0
        }
        if (window.used >= options.perWindow) {
          window.suppressed++
          return { allowed: false, suppressed: 0 }
        }
        window.used++
        const suppressed = window.suppressed
        window.suppressed = 0
        return { allowed: true, suppressed }
      })
  }
}
