import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Fiber, TestClock } from "effect"
import { parse } from "../../src/config/HestiaConfig.ts"
import type { Target } from "../../src/domain/Placement.ts"
import { Readiness } from "../../src/readiness/Readiness.ts"

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

  it.live("fails with ReadinessTimeout after request_timeout_seconds, naming the last probe", () =>
    Effect.gen(function* () {
      const health = yield* healthServer
      const readiness = yield* Readiness
      const service = yield* serviceFrom({ health_url: health.url, request_timeout_seconds: 0.3 })
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
      const service = yield* serviceFrom({ request_timeout_seconds: 0.3 })
      const result = yield* Effect.either(readiness.wait(service, target("http://127.0.0.1:1/health")))
      const error = (result as Either.Left<any, any>).left
      assert.strictEqual(error._tag, "ReadinessTimeout")
      assert.strictEqual(error.lastProbe, "ECONNREFUSED")
    }).pipe(Effect.provide(Readiness.Default))
  )
})
