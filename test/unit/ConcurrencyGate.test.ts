import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, TestClock } from "effect"
import { ConcurrencyGate } from "../../src/proxy/ConcurrencyGate.ts"
import { jsonDeeperThan } from "../../src/proxy/Dispatcher.ts"

const full = (waitedMs: number) => ({ _tag: "Full" as const, waitedMs })
const noop = () => {}

/** Lets forked waiters run until `n` of them are queued. */
const untilQueued = (gate: ConcurrencyGate, n: number) =>
  Effect.yieldNow().pipe(Effect.repeat({ until: () => gate.queued === n }))

describe("ConcurrencyGate (TestClock)", () => {
  it.effect("admits up to its limit at once, then waiters in arrival order as slots are left", () =>
    Effect.gen(function* () {
      const gate = new ConcurrencyGate(2, 5, 1_000)
      assert.isTrue(gate.tryEnter())
      assert.isTrue(gate.tryEnter())
      assert.isFalse(gate.tryEnter())
      const granted: Array<number> = []
      const waiters: Array<Fiber.RuntimeFiber<void, unknown>> = []
      for (const n of [1, 2, 3]) {
        waiters.push(yield* Effect.fork(gate.enter(() => granted.push(n), full)))
        yield* untilQueued(gate, n)
      }
      gate.leave()
      // The slot is handed over inside leave(), before the waiter's fiber runs again.
      assert.deepStrictEqual(granted, [1])
      yield* Fiber.join(waiters[0]!)
      assert.isNull(waiters[1]!.unsafePoll(), "the second waits until the next slot")
      gate.leave()
      yield* Fiber.join(waiters[1]!)
      assert.isNull(waiters[2]!.unsafePoll())
      assert.strictEqual(gate.active, 2, "slots pass to waiters without being freed")
      gate.leave()
      yield* Fiber.join(waiters[2]!)
      assert.deepStrictEqual(granted, [1, 2, 3])
      // While someone waits, tryEnter does not jump the queue.
      const late = yield* Effect.fork(gate.enter(noop, full))
      yield* untilQueued(gate, 1)
      gate.leave()
      assert.isFalse(gate.tryEnter())
      yield* Fiber.join(late)
    })
  )

  it.effect("a wait is bounded: after maxWaitMs the waiter fails with onFull and leaves the queue", () =>
    Effect.gen(function* () {
      const gate = new ConcurrencyGate(1, 5, 1_000)
      assert.isTrue(gate.tryEnter())
      const waiter = yield* Effect.fork(gate.enter(noop, full))
      yield* untilQueued(gate, 1)
      yield* TestClock.adjust(999)
      assert.isNull(waiter.unsafePoll())
      yield* TestClock.adjust(1)
      assert.deepStrictEqual(yield* Fiber.await(waiter), Exit.fail(full(1_000)))
      assert.strictEqual(gate.queued, 0)
      gate.leave()
      assert.strictEqual(gate.active, 0)
    })
  )

  it.effect("a full queue refuses at once; an interrupted waiter leaves the queue and takes no slot", () =>
    Effect.gen(function* () {
      const gate = new ConcurrencyGate(1, 1, 1_000)
      assert.isTrue(gate.tryEnter())
      const waiter = yield* Effect.fork(gate.enter(noop, full))
      yield* untilQueued(gate, 1)
      assert.deepStrictEqual(yield* Effect.exit(gate.enter(noop, full)), Exit.fail(full(0)))
      yield* Fiber.interrupt(waiter)
      assert.strictEqual(gate.queued, 0)
      gate.leave()
      assert.strictEqual(gate.active, 0)
      assert.isTrue(gate.tryEnter())
    })
  )
})

describe("jsonDeeperThan", () => {
  it("counts nesting outside strings, without recursion", () => {
    assert.isFalse(jsonDeeperThan('{"a":[1,{"b":[]}]}', 4))
    assert.isTrue(jsonDeeperThan('{"a":[1,{"b":[]}]}', 3))
    assert.isFalse(jsonDeeperThan('{"a":"[[[[[[\\"[[[["}', 1))
    assert.isTrue(jsonDeeperThan("[".repeat(100_000), 256))
  })
})
