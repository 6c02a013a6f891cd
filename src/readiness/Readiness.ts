import { Clock, Effect, Schedule } from "effect"
import { request } from "undici"
import type { ServiceConfig } from "../config/HestiaConfig.ts"
import { ReadinessTimeout } from "../domain/Errors.ts"
import type { Target } from "../domain/Placement.ts"

/** One probe never waits longer than this, so a hung health endpoint cannot stall readiness. */
const PROBE_TIMEOUT_MS = 2_000

// Every 100 ms for the first 5 s (most services boot within that, and a refused loopback connect costs nothing),
// then backing off to 1 s: a waiting request is released at most ~100 ms after the service turns healthy.
const probeSchedule = Schedule.spaced("100 millis").pipe(
  Schedule.upTo("5 seconds"),
  Schedule.andThen(Schedule.exponential("150 millis", 1.5).pipe(Schedule.union(Schedule.spaced("1 second"))))
)

type ProbeResult = { readonly ok: boolean; readonly detail: string }

const probeOnce = (url: string): Effect.Effect<ProbeResult> =>
  Effect.tryPromise({
    try: (signal) =>
      request(url, { method: "GET", signal, headersTimeout: PROBE_TIMEOUT_MS, bodyTimeout: PROBE_TIMEOUT_MS }).then(
        async (response) => {
          await response.body.dump()
          return response.statusCode
        }
      ),
    catch: (error) => (error as { code?: string }).code ?? String(error)
  }).pipe(
    Effect.timeoutFail({ duration: PROBE_TIMEOUT_MS, onTimeout: () => "probe timed out" }),
    Effect.match({
      onSuccess: (status) => ({ ok: status >= 200 && status < 300, detail: `HTTP ${status}` }),
      onFailure: (reason) => ({ ok: false, detail: reason })
    })
  )

/** Waits until a started service can take requests: its health URL answers 2xx, or `warmup_ms` has passed. */
export class Readiness extends Effect.Service<Readiness>()("hestia/Readiness", {
  succeed: {
    wait: Effect.fn("Readiness.wait")(function* (service: ServiceConfig, target: Target) {
      const healthUrl = target.healthUrl
      yield* Effect.annotateCurrentSpan({ "hestia.service.id": service.id, "hestia.machine.id": target.machineId })
      if (healthUrl === undefined) {
        yield* Effect.annotateCurrentSpan({ "hestia.readiness.mode": "warmup", "hestia.readiness.probes": 0 })
        yield* Effect.sleep(service.warmupMs)
        return { probes: 0 }
      }
      const startedAt = yield* Clock.currentTimeMillis
      let probes = 0
      let last = "none"
      const probe = Effect.suspend(() => {
        probes++
        return probeOnce(healthUrl)
      }).pipe(
        Effect.tap((result) => {
          last = result.detail
        }),
        Effect.filterOrFail((result) => result.ok)
      )
      yield* Effect.retry(probe, probeSchedule).pipe(
        Effect.timeoutFail({
          duration: service.requestTimeoutMs,
          onTimeout: () => undefined
        }),
        Effect.catchAll(() =>
          Effect.flatMap(
            Clock.currentTimeMillis,
            (now) => new ReadinessTimeout({ serviceId: service.id, waitedMs: now - startedAt, probes, lastProbe: last })
          )
        ),
        Effect.tapError((error) => Effect.annotateCurrentSpan("error.type", error._tag)),
        // Also when it fails, or loses the race against the process exiting: how far it got is the point.
        Effect.onExit(() =>
          Effect.annotateCurrentSpan({
            "hestia.readiness.mode": "probe",
            "hestia.readiness.probes": probes,
            "hestia.readiness.last": last
          })
        )
      )
      return { probes }
    })
  }
}) {}
