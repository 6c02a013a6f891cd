import { assert, describe, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import { makeLogBudget } from "../../src/strategies/LogBudget.ts"

describe("LogBudget", () => {
  it.effect("lets perWindow lines through per window and key; the next one says how many were left out", () =>
    Effect.gen(function* () {
      const budget = makeLogBudget({ perWindow: 2, windowMs: 10_000, maxKeys: 8 })
      const take = (key: string) => budget.take(key)
      assert.deepStrictEqual(yield* take("a"), { allowed: true, suppressed: 0 })
      assert.deepStrictEqual(yield* take("a"), { allowed: true, suppressed: 0 })
      for (let i = 0; i < 5; i++) assert.deepStrictEqual(yield* take("a"), { allowed: false, suppressed: 0 })
      // Another key has its own budget.
      assert.deepStrictEqual(yield* take("b"), { allowed: true, suppressed: 0 })
      yield* TestClock.adjust("9999 millis")
      assert.isFalse((yield* take("a")).allowed)
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* take("a"), { allowed: true, suppressed: 6 })
      assert.deepStrictEqual(yield* take("a"), { allowed: true, suppressed: 0 })
    })
  )

  it.effect("remembers at most maxKeys keys, forgetting the oldest", () =>
    Effect.gen(function* () {
      const budget = makeLogBudget({ perWindow: 1, windowMs: 10_000, maxKeys: 2 })
      yield* budget.take("a")
      yield* budget.take("b")
      assert.isFalse((yield* budget.take("a")).allowed)
      yield* budget.take("c") // forgets "a"
      assert.isTrue((yield* budget.take("a")).allowed)
    })
  )
})
