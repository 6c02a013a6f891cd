import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Ref, TestClock } from "effect"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { targetsFor } from "../../src/domain/Placement.ts"
import { Readiness } from "../../src/readiness/Readiness.ts"
import * as StartupPolicy from "../../src/registry/StartupPolicy.ts"
import * as Simulated from "../fixtures/SimulatedMachines.ts"

const yaml = (settings: Record<string, unknown>) => `machines:
  gpu: { host: gpu.lan }
  laptop: { host: laptop.lan }
services:
  svc: ${JSON.stringify({ base_url: "http://{host}:1", warmup_ms: 0, machines: ["gpu", "laptop"], ...settings })}
`

/** The policy alone: Simulated machines, warmup readiness, every hook call recorded as a line. */
const runPolicy = (settings: Record<string, unknown>, script: Simulated.SimulatedScript, options = {}) =>
  Effect.gen(function* () {
    const config = yield* HestiaConfig
    const service = config.services.get("svc")!
    const seen = yield* Ref.make<ReadonlyArray<string>>([])
    const note = (line: string) => Ref.update(seen, (all) => [...all, line])
    const span = yield* Effect.makeSpan("test.coldStart")
    const fiber = yield* Effect.fork(
      StartupPolicy.run(service, targetsFor(service, config), span, {
        attemptStarted: (target, attempt, of) => note(`start ${target.machineId} ${attempt}/${of}`),
        probing: (target, attempt) => note(`probe ${target.machineId} ${attempt}`),
        attemptFailed: (failure) => note(`failed ${failure.machine} ${failure.attempt} ${failure.error}`),
        cleanupFailed: (target, error) => note(`cleanup failed ${target.machineId} ${error._tag}`),
        probed: () => {}
      })
    )
    yield* TestClock.adjust("10 minutes")
    const exit = yield* Fiber.await(fiber)
    const calls = yield* Effect.flatMap(Simulated.SimulatedMachines, (m) => m.calls)
    return { exit, seen: yield* Ref.get(seen), calls }
  }).pipe(
    Effect.provide(
      Layer.mergeAll(Simulated.layer(script, options), Readiness.Default).pipe(
        Layer.provideMerge(HestiaConfig.layerYaml(yaml(settings)))
      )
    )
  )

describe("StartupPolicy (alone: Simulated machines, TestClock)", () => {
  it.effect("tries each machine retry_count + 1 times, retry_delay_ms apart, cleaning up every failed attempt", () =>
    Effect.gen(function* () {
      const { exit, seen, calls } = yield* runPolicy({ retry_count: 1, retry_delay_ms: 500 }, ({ machineId }) =>
        machineId === "gpu" ? Simulated.fail(100, "no GPU") : Simulated.ready(100)
      )
      assert.isTrue(Exit.isSuccess(exit))
      if (Exit.isSuccess(exit)) assert.strictEqual(exit.value.target.machineId, "laptop")
      assert.deepStrictEqual(seen, [
        "start gpu 1/2",
        "failed gpu 1 SimulatedFailure",
        "start gpu 2/2",
        "failed gpu 2 SimulatedFailure",
        "start laptop 1/2",
        "probe laptop 1"
      ])
      assert.deepStrictEqual(
        calls.map((c) => `${c.op} ${c.machineId} @${c.at}`),
        // boot 100 ms; stop at once; 500 ms between attempts on a machine; the next machine at once.
        ["start gpu @0", "stop gpu @100", "start gpu @600", "stop gpu @700", "start laptop @700"]
      )
    })
  )

  it.effect("every machine failing is StartupFailed listing each attempt in order", () =>
    Effect.gen(function* () {
      const { exit } = yield* runPolicy({ retry_count: 0 }, () => Simulated.fail(10, "boom"))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined
      assert.strictEqual(error?._tag, "StartupFailed")
      assert.deepStrictEqual(
        error?.attempts.map((a) => [a.machine, a.attempt, a.error, a.message]),
        [
          ["gpu", 1, "SimulatedFailure", "boom"],
          ["laptop", 1, "SimulatedFailure", "boom"]
        ]
      )
    })
  )

  it.effect("an instance that dies before readiness is a failed attempt (its exit error), not a start", () =>
    Effect.gen(function* () {
      // Boots in 0 ms and dies 0 ms later: readiness (warmup 50 ms) loses the race to the exit.
      const { exit, seen } = yield* runPolicy({ retry_count: 0, warmup_ms: 50 }, ({ machineId }) =>
        machineId === "gpu" ? Simulated.crash(0, 0) : Simulated.ready(0)
      )
      assert.isTrue(Exit.isSuccess(exit))
      assert.deepStrictEqual(seen.slice(0, 3), ["start gpu 1/1", "probe gpu 1", "failed gpu 1 ProcessExited"])
    })
  )

  it.effect("a failed cleanup is reported through its hook, and the policy goes on", () =>
    Effect.gen(function* () {
      const { exit, seen } = yield* runPolicy(
        { retry_count: 0 },
        ({ machineId }) => (machineId === "gpu" ? Simulated.fail(10) : Simulated.ready(10)),
        { stopFails: "stop refused" }
      )
      assert.isTrue(Exit.isSuccess(exit))
      assert.deepStrictEqual(seen, [
        "start gpu 1/1",
        "cleanup failed gpu SimulatedFailure",
        "failed gpu 1 SimulatedFailure",
        "start laptop 1/1",
        "probe laptop 1"
      ])
    })
  )

  it.effect("interrupting the policy stops the attempt in progress", () =>
    Effect.gen(function* () {
      const config = yield* HestiaConfig
      const service = config.services.get("svc")!
      const span = yield* Effect.makeSpan("test.coldStart")
      const noop = () => Effect.void
      const fiber = yield* Effect.fork(
        StartupPolicy.run(service, targetsFor(service, config), span, {
          attemptStarted: noop,
          probing: noop,
          attemptFailed: noop,
          cleanupFailed: noop,
          probed: () => {}
        })
      )
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(fiber)
      const calls = yield* Effect.flatMap(Simulated.SimulatedMachines, (m) => m.calls)
      assert.deepStrictEqual(
        calls.map((c) => `${c.op} ${c.machineId}`),
        ["start gpu", "stop gpu"]
      )
    }).pipe(
      Effect.provide(
        Layer.mergeAll(
          Simulated.layer(() => Simulated.ready(60_000)),
          Readiness.Default
        ).pipe(Layer.provideMerge(HestiaConfig.layerYaml(yaml({}))))
      )
    )
  )
})
