import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-base"
import { Effect, Layer } from "effect"
import { request } from "undici"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { HttpGateway } from "../../src/http/HttpGateway.ts"
import * as Telemetry from "../../src/observability/Telemetry.ts"
import * as OrchestratorByKind from "../../src/orchestrators/OrchestratorByKind.ts"
import { ServiceRegistry } from "../../src/registry/ServiceRegistry.ts"
import { call, callJson, eventually, freePort, gatewayUrl, gatewayYaml, processService } from "../fixtures/Gateway.ts"
import {
  captureLogs,
  childrenOf,
  openSse,
  parentId,
  parsePrometheus,
  renderTree,
  sampleValue,
  spanId,
  traceId
} from "../fixtures/Observability.ts"

const ports = {
  echo: await freePort(),
  traced: await freePort(),
  sse: await freePort(),
  plain: await freePort()
}

const yaml = gatewayYaml(
  processService("obs-echo", ports.echo, { settings: { idle_timeout_ms: 0 } }) +
    processService("obs-traced", ports.traced, { extraArgs: ["--boot-ms", "300"], settings: { idle_timeout_ms: 0 } }) +
    processService("obs-sse", ports.sse, { extraArgs: ["--boot-ms", "200"], settings: { idle_timeout_ms: 0 } })
)

/** The real gateway, with traces going to `exporter` (when given) and log lines into `lines`. */
const observedGateway = (text: string, lines: Array<string>, exporter?: InMemorySpanExporter) =>
  Layer.mergeAll(HttpGateway.Default, ServiceRegistry.Default).pipe(
    Layer.provide(OrchestratorByKind.layer),
    Layer.provide(HestiaConfig.layerYaml(text)),
    Layer.provide(NodeContext.layer),
    Layer.provide(captureLogs(lines)),
    Layer.provide(exporter === undefined ? Layer.empty : Telemetry.layerExporter(exporter)),
    Layer.orDie
  )

const exporter = new InMemorySpanExporter()
const lines: Array<string> = []

const TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"
const PARENT_A = "00f067aa0ba902b7"
const TRACE_B = "5bf92f3577b34da6a3ce929d0e0e4737"
const PARENT_B = "10f067aa0ba902b8"

const parseTraceparent = (value: unknown) => {
  const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(String(value))
  assert.isNotNull(match, `a W3C traceparent: ${String(value)}`)
  return { traceId: match![1]!, spanId: match![2]!, flags: match![3]! }
}

const seenBy = (base: string, serviceId: string) =>
  Effect.map(callJson(`${base}/services/${serviceId}/_seen`), (response) => response.json as Array<any>)

const spansNamed = (name: string) => exporter.getFinishedSpans().filter((span) => span.name === name)

layer(observedGateway(yaml, lines, exporter), { excludeTestServices: true, timeout: "30 seconds" })(
  "observability over real HTTP (tracing on)",
  (it) => {
    it.effect("traceparent from the client is honoured and a child traceparent goes upstream, cold and hot", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const cold = yield* call(`${base}/services/obs-traced/first`, {
          headers: { traceparent: `00-${TRACE_A}-${PARENT_A}-01`, "x-request-id": "cold-req-1" }
        })
        assert.strictEqual(cold.status, 200)
        const hot = yield* call(`${base}/services/obs-traced/second`, {
          headers: { traceparent: `00-${TRACE_B}-${PARENT_B}-01` }
        })
        assert.strictEqual(hot.status, 200)
        yield* call(`${base}/services/obs-traced/third`)

        const seen = yield* seenBy(base, "obs-traced")
        const upstream = (url: string) => parseTraceparent(seen.find((entry) => entry.url === url)?.traceparent)
        const first = upstream("/first")
        const second = upstream("/second")
        const third = upstream("/third")
        assert.strictEqual(first.traceId, TRACE_A)
        assert.notStrictEqual(first.spanId, PARENT_A, "upstream gets the gateway's own span as parent")
        assert.strictEqual(second.traceId, TRACE_B)
        assert.notStrictEqual(second.spanId, PARENT_B)
        assert.notStrictEqual(third.traceId, TRACE_A)
        assert.notStrictEqual(third.traceId, TRACE_B)

        // The gateway's request spans: children of the client's span, parents of the upstream's.
        const requestSpans = yield* eventually(
          Effect.sync(() => spansNamed("ServiceProxy.request")),
          (spans) => [TRACE_A, TRACE_B].every((id) => spans.some((span) => traceId(span) === id))
        )
        const coldRequest = requestSpans.find((span) => traceId(span) === TRACE_A)!
        assert.strictEqual(parentId(coldRequest), PARENT_A)
        assert.strictEqual(spanId(coldRequest), first.spanId)
        assert.strictEqual(coldRequest.attributes["hestia.service.id"], "obs-traced")
        assert.strictEqual(coldRequest.attributes["http.response.status_code"], 200)
        assert.strictEqual(coldRequest.attributes["hestia.request.id"], "cold-req-1")
        const hotRequest = requestSpans.find((span) => traceId(span) === TRACE_B)!
        assert.strictEqual(parentId(hotRequest), PARENT_B)
        assert.strictEqual(spanId(hotRequest), second.spanId)

        // The cold request waited in the registry, linked to the cold start's own trace.
        const [acquire] = childrenOf(exporter.getFinishedSpans(), coldRequest)
        assert.strictEqual(acquire?.name, "ServiceRegistry.acquire")
        const coldStart = spansNamed("ServiceRegistry.coldStart").find(
          (span) => span.attributes["hestia.service.id"] === "obs-traced"
        ) as ReadableSpan
        assert.isDefined(coldStart)
        assert.isTrue(acquire!.links.some((link) => link.context.spanId === spanId(coldStart)))
        assert.isTrue(coldStart.links.some((link) => link.context.spanId === spanId(acquire!)))
        assert.strictEqual(coldStart.attributes["hestia.outcome"], "ready")

        // A real process start: the pid on Orchestrator.start, the probes on Readiness.wait.
        const start = exporter
          .getFinishedSpans()
          .find((span) => span.name === "Orchestrator.start" && traceId(span) === traceId(coldStart))!
        assert.isNumber(start.attributes["process.pid"])
        assert.strictEqual(start.attributes["hestia.orchestrator"], "process")
        const readiness = exporter
          .getFinishedSpans()
          .find((span) => span.name === "Readiness.wait" && traceId(span) === traceId(coldStart))!
        assert.isAtLeast(readiness.attributes["hestia.readiness.probes"] as number, 1)
        assert.strictEqual(readiness.attributes["hestia.readiness.last"], "HTTP 200")
        if (process.env.HESTIA_PRINT_TRACE) console.log(renderTree(exporter.getFinishedSpans(), coldStart))
      })
    )

    it.effect("log lines are JSON with the request id (and trace id) of the request they are about", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        yield* call(`${base}/services/obs-echo/logged`, { headers: { "x-request-id": "log-req-42" } })
        const parsed = lines.map((line) => JSON.parse(line) as Record<string, unknown>)
        for (const entry of parsed) {
          assert.isString(entry.ts)
          assert.isString(entry.level)
          assert.isString(entry.msg)
        }
        const queued = parsed.find((entry) => entry.event === "request_queued" && entry.serviceId === "obs-echo")
        assert.strictEqual(queued?.requestId, "log-req-42")
        assert.match(String(queued?.traceId), /^[0-9a-f]{32}$/)
        const requested = parsed.find((entry) => entry.event === "start_requested" && entry.serviceId === "obs-echo")
        assert.strictEqual(requested?.requestId, "log-req-42")
        const ready = parsed.find((entry) => entry.event === "ready" && entry.serviceId === "obs-echo")
        assert.strictEqual(ready?.machineId, "local")
        assert.isNumber(ready?.durationMs)
        // A request's lines carry its own trace; the start's lines carry the cold start's trace.
        const coldStart = spansNamed("ServiceRegistry.coldStart").find(
          (span) => span.attributes["hestia.service.id"] === "obs-echo"
        )
        assert.strictEqual(ready?.traceId, coldStart && traceId(coldStart))
        assert.notStrictEqual(ready?.traceId, queued?.traceId)
        const released = parsed.find((entry) => entry.event === "request_released" && entry.serviceId === "obs-echo")
        assert.strictEqual(released?.requestId, "log-req-42")
        assert.isNumber(released?.waitedMs)
      })
    )

    it.effect("/metrics is valid Prometheus text and its counters move", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const scrape = Effect.map(call(`${base}/metrics`), (response) => {
          assert.strictEqual(response.status, 200)
          assert.match(String(response.headers["content-type"]), /^text\/plain; version=0\.0\.4/)
          return parsePrometheus(response.text)
        })
        const before = yield* scrape
        for (let i = 0; i < 3; i++) assert.strictEqual((yield* call(`${base}/services/obs-echo/n/${i}`)).status, 200)
        assert.strictEqual((yield* call(`${base}/services/no-such-service/x`)).status, 404)
        const after = yield* eventually(
          scrape,
          (p) =>
            sampleValue(p, "hestia_requests_total", { service: "obs-echo", code: "2xx" }) -
              sampleValue(before, "hestia_requests_total", { service: "obs-echo", code: "2xx" }) ===
            3
        )
        const delta = (name: string, labels: Record<string, string>) =>
          sampleValue(after, name, labels) - sampleValue(before, name, labels)
        assert.strictEqual(delta("hestia_request_duration_seconds_count", { service: "obs-echo" }), 3)
        assert.strictEqual(delta("hestia_requests_total", { service: "_unknown", code: "4xx" }), 1)
        assert.strictEqual(
          sampleValue(after, "hestia_cold_starts_total", { service: "obs-echo", outcome: "success" }),
          1
        )
        assert.strictEqual(
          sampleValue(after, "hestia_cold_start_duration_seconds_count", { service: "obs-echo", outcome: "success" }),
          1
        )
        assert.strictEqual(
          sampleValue(after, "hestia_startup_attempts_total", {
            service: "obs-echo",
            machine: "local",
            outcome: "success"
          }),
          1
        )
        assert.strictEqual(sampleValue(after, "hestia_service_state", { service: "obs-echo", state: "hot" }), 1)
        assert.strictEqual(sampleValue(after, "hestia_in_flight", { service: "obs-echo" }), 0)
        assert.strictEqual(sampleValue(after, "hestia_queue_depth", { service: "obs-echo" }), 0)
        assert.strictEqual(sampleValue(after, "hestia_idle_stops_total", { service: "obs-echo" }), 0)
        for (const family of [
          "hestia_requests_total",
          "hestia_request_duration_seconds",
          "hestia_cold_starts_total",
          "hestia_cold_start_duration_seconds",
          "hestia_queue_wait_seconds",
          "hestia_queue_depth",
          "hestia_in_flight",
          "hestia_service_state",
          "hestia_idle_stops_total",
          "hestia_startup_attempts_total"
        ]) {
          assert.isTrue(after.types.has(family), `${family} has a TYPE line`)
          assert.isTrue(after.help.has(family), `${family} has a HELP line`)
        }
        assert.isTrue([...after.types.keys()].every((family) => family.startsWith("hestia_")))
        // Labels are bounded: no raw path ever appears.
        assert.isFalse(after.samples.some((sample) => Object.values(sample.labels).some((v) => v.includes("/"))))
      })
    )

    it.effect("a client that leaves before the answer counts as 499 (4xx); the gateway carries on", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        yield* call(`${base}/services/obs-echo/warm`)
        const scrape = Effect.map(call(`${base}/metrics`), (response) => parsePrometheus(response.text))
        const before = sampleValue(yield* scrape, "hestia_requests_total", { service: "obs-echo", code: "4xx" })
        yield* Effect.promise(async () => {
          const controller = new AbortController()
          const pending = request(`${base}/services/obs-echo/slow?ms=5000`, { signal: controller.signal })
          await new Promise((resolve) => setTimeout(resolve, 300))
          controller.abort()
          await pending.catch(() => undefined)
        })
        yield* eventually(
          scrape,
          (p) => sampleValue(p, "hestia_requests_total", { service: "obs-echo", code: "4xx" }) === before + 1
        )
        assert.strictEqual((yield* call(`${base}/healthz`)).status, 200)
        assert.strictEqual((yield* call(`${base}/services/obs-echo/after`)).status, 200)
      })
    )

    it.effect("JSON metrics: all, one service, an unknown service is 404", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        yield* call(`${base}/services/obs-echo/json`)
        const all = yield* callJson(`${base}/v1/metrics`)
        assert.strictEqual(all.status, 200)
        assert.isTrue(
          all.json.metrics.some(
            (metric: any) => metric.name === "hestia_requests_total" && metric.labels.service === "obs-echo"
          )
        )
        const one = yield* callJson(`${base}/v1/services/obs-echo/metrics`)
        assert.strictEqual(one.status, 200)
        assert.strictEqual(one.json.serviceId, "obs-echo")
        assert.isTrue(one.json.metrics.every((metric: any) => metric.labels.service === "obs-echo"))
        assert.strictEqual((yield* callJson(`${base}/v1/services/nope/metrics`)).status, 404)
      })
    )

    it.scoped("SSE: a subscriber sees cold → starting → hot in order for a cold start", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const sse = yield* openSse(`${base}/v1/events`)
        assert.strictEqual(sse.status, 200)
        assert.match(String(sse.headers["content-type"]), /^text\/event-stream/)
        yield* eventually(
          Effect.sync(() => sse.frames),
          (frames) => frames.some((frame) => frame.event === "snapshot")
        )
        const snapshot = JSON.parse(sse.frames.find((frame) => frame.event === "snapshot")!.data)
        assert.strictEqual(snapshot.services.find((s: any) => s.serviceId === "obs-sse")?.state, "cold")
        assert.strictEqual((yield* call(`${base}/services/obs-sse/x`)).status, 200)
        const forService = (frames: ReadonlyArray<{ event: string; data: string }>) =>
          frames
            .filter((frame) => frame.event !== "snapshot" && !frame.event.startsWith(":"))
            .map((frame) => ({ event: frame.event, data: JSON.parse(frame.data) }))
            .filter((frame) => frame.data.serviceId === "obs-sse")
        const frames = yield* eventually(
          Effect.sync(() => forService(sse.frames)),
          (frames) => frames.some((frame) => frame.event === "state" && frame.data.to === "hot")
        )
        const states = frames.filter((frame) => frame.event === "state").map((frame) => frame.data)
        assert.deepStrictEqual(
          states.map((state) => `${state.from} → ${state.to}`),
          ["cold → starting", "starting → hot"]
        )
        assert.strictEqual(states[1].machine, "local")
        for (const state of states) assert.match(state.at, /^\d{4}-\d\d-\d\dT/)
        const kinds = frames.map((frame) => frame.event)
        assert.includeMembers(kinds, ["start_requested", "attempt_started", "request_queued", "ready"])
        assert.isBelow(kinds.indexOf("start_requested"), kinds.lastIndexOf("ready"))
      })
    )
  }
)

layer(
  observedGateway(
    gatewayYaml(processService("obs-plain", ports.plain, { settings: { idle_timeout_ms: 0 } })),
    [],
    undefined
  ),
  { excludeTestServices: true, timeout: "30 seconds" }
)("observability over real HTTP (tracing off)", (it) => {
  it.effect("without tracing the client's traceparent passes through untouched and none is invented", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      yield* call(`${base}/services/obs-plain/with`, { headers: { traceparent: `00-${TRACE_A}-${PARENT_A}-01` } })
      yield* call(`${base}/services/obs-plain/without`)
      const seen = yield* seenBy(base, "obs-plain")
      assert.strictEqual(seen.find((entry) => entry.url === "/with")?.traceparent, `00-${TRACE_A}-${PARENT_A}-01`)
      assert.isUndefined(seen.find((entry) => entry.url === "/without")?.traceparent)
      const metrics = parsePrometheus((yield* call(`${base}/metrics`)).text)
      assert.isAtLeast(sampleValue(metrics, "hestia_requests_total", { service: "obs-plain", code: "2xx" }), 2)
    })
  )
})
