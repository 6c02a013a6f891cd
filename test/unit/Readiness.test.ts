import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { HttpClient, HttpClientError, HttpClientResponse } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Clock, ConfigProvider, Effect, Either, Fiber, Layer, TestClock } from "effect"
import { parse } from "../../src/config/HestiaConfig.ts"
import type { Target } from "../../src/domain/Placement.ts"
import { PROBE_TIMEOUT_MS, Readiness } from "../../src/readiness/Readiness.ts"

const serviceFrom = (settings: Record<string, unknown>) =>
  parse(`services:\n  svc: ${JSON.stringify({ base_url: "http://127.0.0.1:1", ...settings })}\n`, "test").pipe(
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map())),
    Effect.map((config) => config.services.get("svc")!),
    Effect.orDie
  )

const target = (healthUrl: string | undefined): Target => ({
  machineId: "local",
  kind: "external",
  baseUrl: "http://127.0.0.1:1",
  healthUrl,
  semaphoreMachineId: undefined
})

/** A health endpoint answering 503 until `healthy()` is called. */
const healthServer = Effect.acquireRelease(
  Effect.promise(
    () =>
      new Promise<{ url: string; healthy: () => void; probes: () => number; server: Http.Server }>((resolve) => {
        let ok = false
        let probes = 0
        const server = Http.createServer((_req, res) => {
          probes++
          res.statusCode = ok ? 200 : 503
          res.end()
        })
        server.listen(0, "127.0.0.1", () =>
          resolve({
            url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/health`,
            healthy: () => {
              ok = true
            },
            probes: () => probes,
            server
          })
        )
      })
  ),
  ({ server }) => Effect.promise(() => new Promise((resolve) => server.close(resolve)))
)

describe("Readiness", () => {
  it.effect("without a health URL, waits warmup_ms of Clock time", () =>
    Effect.gen(function* () {
      const readiness = yield* Readiness
      const service = yield* serviceFrom({ warmup_ms: 5000 })
      const fiber = yield* Effect.fork(readiness.wait(service, target(undefined)))
      yield* TestClock.adjust("4999 millis")
      assert.isNull(fiber.unsafePoll())
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* Fiber.join(fiber), { probes: 0 })
    }).pipe(Effect.provide(Readiness.Default))
  )

  it.live("probes the health URL until it answers 2xx", () =>
    Effect.gen(function* () {
      const health = yield* healthServer
      const readiness = yield* Readiness
      const service = yield* serviceFrom({ health_url: health.url })
      const fiber = yield* Effect.fork(readiness.wait(service, target(health.url)))
      // Let a few probes fail before the service turns healthy.
      while (health.probes() < 3) yield* Effect.sleep("20 millis")
      health.healthy()
      const result = yield* Fiber.join(fiber)
      assert.isAtLeast(result.probes, 4)
      assert.strictEqual(result.probes, health.probes())
    }).pipe(Effect.provide(Readiness.Default), Effect.scoped)
  )

  it.live("fails with ReadinessTimeout after startup_timeout_seconds, naming the last probe", () =>
    Effect.gen(function* () {
      const health = yield* healthServer
      const readiness = yield* Readiness
      const service = yield* serviceFrom({ health_url: health.url, startup_timeout_seconds: 0.3 })
      const result = yield* Effect.either(readiness.wait(service, target(health.url)))
      assert.isTrue(Either.isLeft(result))
      const error = (result as Either.Left<any, any>).left
      assert.strictEqual(error._tag, "ReadinessTimeout")
      assert.strictEqual(error.lastProbe, "HTTP 503")
      assert.isAtLeast(error.probes, 1)
    }).pipe(Effect.provide(Readiness.Default), Effect.scoped)
  )

  it.live("a refused connection is a failed probe, not an error", () =>
    Effect.gen(function* () {
      const readiness = yield* Readiness
      const service = yield* serviceFrom({ startup_timeout_seconds: 0.3 })
      const result = yield* Effect.either(readiness.wait(service, target("http://127.0.0.1:1/health")))
      const error = (result as Either.Left<any, any>).left
      assert.strictEqual(error._tag, "ReadinessTimeout")
      assert.strictEqual(error.lastProbe, "ECONNREFUSED")
    }).pipe(Effect.provide(Readiness.Default))
  )
})

// -----------------------------------------------------------------------------
// On the TestClock, probes answered by a scripted HttpClient: the cadence and the limits, exactly.
// -----------------------------------------------------------------------------

interface Probed {
  readonly at: number
  readonly headers: Readonly<Record<string, string>>
}

/** Answers each probe from `answer` (its 0-based index): a status, `refused`, or `hang` (never answers). */
const scripted = (answer: (index: number) => number | "refused" | "hang") => {
  const probes: Array<Probed> = []
  const client = HttpClient.make((request) =>
    Effect.gen(function* () {
      const index = probes.length
      probes.push({ at: yield* Clock.currentTimeMillis, headers: request.headers })
      const next = answer(index)
      if (next === "hang") return yield* Effect.never
      if (next === "refused") {
        return yield* new HttpClientError.RequestError({
          request,
          reason: "Transport",
          cause: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9"), { code: "ECONNREFUSED" })
        })
      }
      return HttpClientResponse.fromWeb(request, new Response(next === 204 ? null : "ok", { status: next }))
    })
  )
  const layer = Readiness.DefaultWithoutDependencies.pipe(Layer.provide(Layer.succeed(HttpClient.HttpClient, client)))
  return { probes, layer }
}

const gaps = (probes: ReadonlyArray<Probed>) => probes.slice(1).map((p, i) => p.at - probes[i]!.at)

const HEALTH = "http://127.0.0.1:9/health"

describe("Readiness on the TestClock", () => {
  it.effect("probes every 10 ms for 3 s, every 100 ms up to 10 s, then backs off to once a second", () => {
    const { probes, layer } = scripted(() => "refused")
    return Effect.gen(function* () {
      const readiness = yield* Readiness
      const service = yield* serviceFrom({ health_url: HEALTH, startup_timeout_seconds: 30 })
      const fiber = yield* Effect.fork(readiness.wait(service, target(HEALTH)))
      yield* TestClock.adjust("30 seconds")
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.strictEqual(error._tag, "ReadinessTimeout")
      assert.strictEqual(error.lastProbe, "ECONNREFUSED")
      assert.strictEqual(error.probes, probes.length)
      assert.strictEqual(probes[0]!.at, 0)
      const first3s = probes.filter((p) => p.at <= 3_000)
      assert.deepStrictEqual(new Set(gaps(first3s)), new Set([10]))
      assert.isAtLeast(first3s.length, 300)
      const to10s = probes.filter((p) => p.at >= 3_100 && p.at <= 10_000)
      assert.deepStrictEqual(new Set(gaps(to10s)), new Set([100]))
      const later = gaps(probes.filter((p) => p.at >= 10_000))
      // Growing, then capped at 1 s.
      assert.deepStrictEqual(
        later.slice(0, 6),
        [...later.slice(0, 6)].sort((a, b) => a - b)
      )
      assert.isBelow(later[0]!, 1_000)
      assert.deepStrictEqual(new Set(later.slice(-5)), new Set([1_000]))
    }).pipe(Effect.provide(layer))
  })

  it.effect("a healthy answer ends the wait at once, 10 ms after the last refused probe", () => {
    const { probes, layer } = scripted((i) => (i < 25 ? "refused" : i < 40 ? 503 : 204))
    return Effect.gen(function* () {
      const readiness = yield* Readiness
      const service = yield* serviceFrom({ health_url: HEALTH })
      const fiber = yield* Effect.fork(readiness.wait(service, target(HEALTH)))
      yield* TestClock.adjust("399 millis")
      assert.isNull(fiber.unsafePoll())
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* Fiber.join(fiber), { probes: 41 })
      assert.strictEqual(probes.at(-1)!.at, 400)
    }).pipe(Effect.provide(layer))
  })

  it.effect("request_timeout_seconds does not limit readiness; startup_timeout_seconds does", () => {
    const { layer } = scripted(() => 503)
    return Effect.gen(function* () {
      const readiness = yield* Readiness
      const service = yield* serviceFrom({
        health_url: HEALTH,
        request_timeout_seconds: 0.1,
        startup_timeout_seconds: 0.5
      })
      const fiber = yield* Effect.fork(readiness.wait(service, target(HEALTH)))
      yield* TestClock.adjust("499 millis")
      assert.isNull(fiber.unsafePoll())
      yield* TestClock.adjust("1 millis")
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.deepInclude(error, { _tag: "ReadinessTimeout", waitedMs: 500, lastProbe: "HTTP 503" })
    }).pipe(Effect.provide(layer))
  })

  it.effect("startup_timeout_seconds defaults to 300 s, whatever request_timeout_seconds says", () =>
    Effect.gen(function* () {
      const service = yield* serviceFrom({ request_timeout_seconds: 2 })
      assert.strictEqual(service.startupTimeoutMs, 300_000)
      assert.strictEqual(service.requestTimeoutMs, 2_000)
      assert.strictEqual((yield* serviceFrom({ startup_timeout_seconds: 0.5 })).startupTimeoutMs, 500)
    })
  )

  it.effect("a probe that hangs is cut after 2 s; the next one follows on the next 10 ms beat", () => {
    const { probes, layer } = scripted((i) => (i === 0 ? "hang" : 200))
    return Effect.gen(function* () {
      const readiness = yield* Readiness
      const service = yield* serviceFrom({ health_url: HEALTH })
      const fiber = yield* Effect.fork(readiness.wait(service, target(HEALTH)))
      yield* TestClock.adjust(PROBE_TIMEOUT_MS - 1)
      assert.lengthOf(probes, 1)
      yield* TestClock.adjust("11 millis")
      assert.deepStrictEqual(yield* Fiber.join(fiber), { probes: 2 })
      assert.deepStrictEqual(
        probes.map((p) => p.at),
        [0, PROBE_TIMEOUT_MS + 10]
      )
    }).pipe(Effect.provide(layer))
  })

  it.effect("a hung probe is reported as such when the limit comes", () => {
    const { layer } = scripted(() => "hang")
    return Effect.gen(function* () {
      const readiness = yield* Readiness
      const service = yield* serviceFrom({ health_url: HEALTH, startup_timeout_seconds: 5 })
      const fiber = yield* Effect.fork(readiness.wait(service, target(HEALTH)))
      yield* TestClock.adjust("5 seconds")
      const error = yield* Effect.flip(Fiber.join(fiber))
      // 0 → cut at 2 s, 2.01 → cut at 4.01 s, 4.02 → cut by the 5 s limit.
      assert.deepInclude(error, { _tag: "ReadinessTimeout", probes: 3, lastProbe: "probe timed out" })
    }).pipe(Effect.provide(layer))
  })

  it.effect("probes carry no trace headers (they are not traced)", () => {
    const { probes, layer } = scripted(() => 200)
    return Effect.gen(function* () {
      const readiness = yield* Readiness
      const service = yield* serviceFrom({ health_url: HEALTH })
      yield* readiness.wait(service, target(HEALTH)).pipe(Effect.withSpan("test.parent"))
      assert.lengthOf(probes, 1)
      assert.doesNotHaveAnyKeys(probes[0]!.headers, ["traceparent", "b3"])
    }).pipe(Effect.provide(layer))
  })
})
