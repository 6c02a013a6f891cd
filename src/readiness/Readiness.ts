import { HttpClient, type HttpClientError } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { Clock, Effect, Schedule, Stream } from "effect"
import type { ServiceConfig } from "../config/HestiaConfig.ts"
import { ReadinessTimeout } from "../domain/Errors.ts"
import { type HealthCheck, healthChecks } from "../domain/Instances.ts"
import type { Target } from "../domain/Placement.ts"

/** One probe never waits longer than this, so a hung health endpoint cannot stall readiness. */
export const PROBE_TIMEOUT_MS = 2_000

/** A health answer's body is read (so the connection is reused) up to this much, then cut. */
const MAX_PROBE_BODY_BYTES = 64 * 1024

// Every 10 ms for the first 3 s: most services come up within that, a refused loopback connect costs next to nothing,
// and a waiting request is released within ~10 ms of the first healthy answer (a fixed cadence: the probe's own time
// does not add to the gap). Then every 100 ms up to 10 s, then backing off to once a second for the slow starters
// (model servers loading weights).
export const probeSchedule = Schedule.fixed("10 millis").pipe(
  Schedule.upTo("3 seconds"),
  Schedule.andThen(Schedule.spaced("100 millis").pipe(Schedule.upTo("7 seconds"))),
  Schedule.andThen(Schedule.exponential("150 millis", 1.5).pipe(Schedule.union(Schedule.spaced("1 second"))))
)

export type ProbeResult = { readonly ok: boolean; readonly detail: string }

/** `ECONNREFUSED` rather than undici's whole sentence: the code is what a person reads in `lastProbe`. */
const transportDetail = (error: HttpClientError.HttpClientError) => {
  const cause = error.cause as { code?: unknown; cause?: { code?: unknown } } | undefined
  const code = cause?.code ?? cause?.cause?.code
  return typeof code === "string" ? code : error.message
}

/**
 * Waits until a started service can take requests: its health URL answers 2xx (for a service with instances: one
 * instance's health answers), or `warmup_ms` has passed.
 */
export class Readiness extends Effect.Service<Readiness>()("hestia/Readiness", {
  effect: Effect.gen(function* () {
    // Probes are not traced: at 10 ms apart they would drown the start's trace; Readiness.wait carries the count.
    const client = (yield* HttpClient.HttpClient).pipe(HttpClient.withTracerDisabledWhen(() => true))

    const probeOnce = (url: string, anyAnswer = false): Effect.Effect<ProbeResult> =>
      client.get(url).pipe(
        Effect.tap((response) =>
          response.stream.pipe(
            Stream.runFoldWhile(
              0,
              (read) => read < MAX_PROBE_BODY_BYTES,
              (read, chunk) => read + chunk.length
            ),
            // A body cut short says nothing the status has not said.
            Effect.ignore
          )
        ),
        Effect.timeoutFail({ duration: PROBE_TIMEOUT_MS, onTimeout: () => "probe timed out" }),
        Effect.match({
          onSuccess: (response) => ({
            ok: anyAnswer || (response.status >= 200 && response.status < 300),
            detail: `HTTP ${response.status}`
          }),
          onFailure: (reason) => ({ ok: false, detail: typeof reason === "string" ? reason : transportDetail(reason) })
        })
      )

    /**
     * One round over a service's health checks, at once: ready when one of them is (a service with instances is up
     * when one instance is). The detail is the answering check's, else each failure's.
     */
    const probeAll = (checks: ReadonlyArray<HealthCheck>): Effect.Effect<ProbeResult> =>
      checks.length === 1
        ? probeOnce(checks[0]!.url, checks[0]!.anyAnswer)
        : Effect.map(
            Effect.forEach(checks, (check) => probeOnce(check.url, check.anyAnswer), { concurrency: "unbounded" }),
            (results) =>
              results.find((result) => result.ok) ?? {
                ok: false,
                detail: results.map((result, i) => `${checks[i]!.url}: ${result.detail}`).join("; ")
              }
          )

    return {
      /** One probe of a health URL (2 s at most); with `anyAnswer`, any HTTP answer counts as up. */
      probe: probeOnce,
      /**
       * One probe round of what readiness asks of a service on `target` (its instances' health, or its health URL);
       * undefined when there is nothing to ask (readiness is a warmup then). A status read of an external service
       * asks this way.
       */
      probeService: (service: ServiceConfig, target: Target): Effect.Effect<ProbeResult> | undefined => {
        const checks = healthChecks(service, target)
        return checks.length === 0 ? undefined : probeAll(checks)
      },
      /** Each attempt gets `startup_timeout_seconds` to turn healthy; the request's own wait is the registry's. */
      wait: Effect.fn("Readiness.wait")(function* (
        service: ServiceConfig,
        target: Target,
        /** Told of every probe's result as it comes (the start's progress: status, "still starting" lines). */
        observe: (probes: number, last: string) => void = () => {}
      ) {
        const checks = healthChecks(service, target)
        yield* Effect.annotateCurrentSpan({ "hestia.service.id": service.id, "hestia.machine.id": target.machineId })
        if (checks.length === 0) {
          yield* Effect.annotateCurrentSpan({ "hestia.readiness.mode": "warmup", "hestia.readiness.probes": 0 })
          yield* Effect.sleep(service.warmupMs)
          return { probes: 0 }
        }
        const startedAt = yield* Clock.currentTimeMillis
        let probes = 0
        let last = "none"
        const probe = Effect.suspend(() => {
          probes++
          return probeAll(checks)
        }).pipe(
          Effect.tap((result) => {
            last = result.detail
            observe(probes, last)
          }),
          Effect.filterOrFail((result) => result.ok)
        )
        yield* Effect.retry(probe, probeSchedule).pipe(
          Effect.timeoutFail({
            duration: service.startupTimeoutMs,
            onTimeout: () => undefined
          }),
          Effect.catchAll(() =>
            Effect.flatMap(
              Clock.currentTimeMillis,
              (now) =>
                new ReadinessTimeout({ serviceId: service.id, waitedMs: now - startedAt, probes, lastProbe: last })
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
  }),
  dependencies: [NodeHttpClient.layerUndici]
}) {}
