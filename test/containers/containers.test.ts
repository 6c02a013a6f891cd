import { assert, describe, it } from "@effect/vitest"
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-base"
import { Effect, Layer } from "effect"
import { HttpGateway } from "../../src/http/HttpGateway.ts"
import { ContainerRecords } from "../../src/orchestrators/ContainerRecords.ts"
import {
  containerGateway,
  containerState,
  containerYaml,
  engineNow,
  eventCount,
  existingContainer,
  imageService,
  runnableEngines,
  useEngine
} from "../fixtures/Containers.ts"
import { call, callJson, eventually, freePort } from "../fixtures/Gateway.ts"
import { engineCall } from "../fixtures/PrivateEngine.ts"

// Containers as services, through the gateway over real HTTP, on a private engine of the run's own (see
// test/fixtures/PrivateEngine.ts). vitest.config.ts leaves this file out when no engine can run here, and says so.

/** Builds the gateway on `yaml` for the rest of the test's scope. */
const gateway = (yaml: string, observe: Parameters<typeof containerGateway>[1] = {}) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(containerGateway(yaml, observe))
    const url = Effect.provide(
      Effect.map(HttpGateway, (g) => g.url),
      context
    )
    const records = Effect.provide(ContainerRecords, context)
    return { url: yield* url, records: yield* records }
  })

const status = (url: string, id: string) => Effect.map(callJson(`${url}/v1/services/${id}/status`), (r) => r.json)

for (const kind of runnableEngines) {
  describe(`containers on ${kind} (private engine)`, () => {
    const engine = useEngine(kind)

    it.scopedLive("an existing stopped container starts once for 200 concurrent requests, then answers", () =>
      Effect.gen(function* () {
        const port = yield* Effect.promise(freePort)
        const name = `existing-${port}`
        yield* existingContainer(engine.current, name, port, { args: ["--boot-ms", "300"] })
        const since = engineNow()
        const { url, records } = yield* gateway(
          containerYaml(engine.current, {
            existing: {
              base_url: `http://{host}:${port}`,
              health_url: `http://{host}:${port}/health`,
              container: { name },
              idle_timeout_ms: 0,
              queue_size: 500
            }
          })
        )
        const answers = yield* Effect.all(
          Array.from({ length: 200 }, () => call(`${url}/services/existing/hello`)),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(
          answers.filter((a) => a.status !== 200).map((a) => a.text),
          []
        )
        assert.strictEqual(yield* eventCount(engine.current, name, "start", since), 1)
        assert.strictEqual((yield* containerState(engine.current, name)).status, "running")
        const view = yield* records.view("existing")
        assert.strictEqual(view?.name, name)
        assert.strictEqual(view?.engine, engine.current.url)
        assert.match(view?.image ?? "", new RegExp(`(^|/)${engine.current.image}$`))
        assert.strictEqual(view?.state, "running")
        assert.isFalse(view?.created_by_hestia)
        assert.match(view?.id ?? "", /^[0-9a-f]{64}$/)
      })
    )

    it.scopedLive("a container created from the image answers, and is stopped (exited) when idle", () =>
      Effect.gen(function* () {
        const port = yield* Effect.promise(freePort)
        const name = `hestia-created-${port}`
        const { url } = yield* gateway(
          containerYaml(engine.current, {
            created: imageService(engine.current, port, { name }, { idle_timeout_ms: 1500 })
          })
        )
        const hello = yield* callJson(`${url}/services/created/hello`)
        assert.strictEqual(hello.status, 200)
        assert.strictEqual(hello.json.url, "/hello")
        const created = yield* containerState(engine.current, name)
        assert.strictEqual(created.status, "running")
        assert.strictEqual(created.labels["hestia.created_for"], "created")
        yield* eventually(status(url, "created"), (s) => s.state === "cold")
        assert.strictEqual((yield* containerState(engine.current, name)).status, "exited")
        // Started again on the next request, the same container.
        assert.strictEqual((yield* call(`${url}/services/created/again`)).status, 200)
        assert.strictEqual((yield* containerState(engine.current, name)).id, created.id)
      })
    )

    it.scopedLive(
      "the Orchestrator.start span names the container, its image and the engine; its output is logged",
      () =>
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const name = `hestia-traced-${port}`
          const exporter = new InMemorySpanExporter()
          const lines: Array<string> = []
          const { url } = yield* gateway(
            containerYaml(engine.current, { traced: imageService(engine.current, port, { name }) }),
            { lines, exporter }
          )
          assert.strictEqual((yield* call(`${url}/services/traced/x`)).status, 200)
          const { id } = yield* containerState(engine.current, name)
          const start = yield* eventually(
            Effect.sync(() => exporter.getFinishedSpans().find((span) => span.name === "Orchestrator.start")),
            (span) => span !== undefined
          )
          assert.strictEqual(start!.attributes["hestia.orchestrator"], "container")
          assert.strictEqual(start!.attributes["container.id"], id)
          assert.strictEqual(start!.attributes["container.name"], name)
          assert.match(String(start!.attributes["container.image.name"]), new RegExp(`${engine.current.image}$`))
          assert.strictEqual(start!.attributes["hestia.container.engine"], engine.current.url)
          assert.strictEqual(start!.attributes["container.start"], "started")
          // The upstream's own first line, from the container's stdout, as a JSON log line of the service.
          const output = yield* eventually(
            Effect.sync(() =>
              lines.map((line) => JSON.parse(line)).find((entry) => entry.event === "container_output")
            ),
            (entry) => entry !== undefined
          )
          assert.strictEqual(output.serviceId, "traced")
          assert.strictEqual(output.stream, "stdout")
          assert.strictEqual(output.containerId, id!.slice(0, 12))
          assert.match(output.msg, new RegExp(`^upstream listening on 127\\.0\\.0\\.1:${port}`))
        })
    )

    it.scopedLive("remove_on_stop: the container Hestia created is gone after the idle stop", () =>
      Effect.gen(function* () {
        const port = yield* Effect.promise(freePort)
        const name = `hestia-removed-${port}`
        const { url, records } = yield* gateway(
          containerYaml(engine.current, {
            removed: imageService(engine.current, port, { name, remove_on_stop: true }, { idle_timeout_ms: 1000 })
          })
        )
        assert.strictEqual((yield* call(`${url}/services/removed/x`)).status, 200)
        assert.isTrue((yield* records.view("removed"))?.created_by_hestia)
        yield* eventually(status(url, "removed"), (s) => s.state === "cold")
        assert.strictEqual((yield* containerState(engine.current, name)).status, "missing")
        assert.strictEqual((yield* records.view("removed"))?.state, "removed")
      })
    )

    it.scopedLive("pause_on_idle: idle pauses the container; the next request unpauses the same one", () =>
      Effect.gen(function* () {
        const port = yield* Effect.promise(freePort)
        const name = `hestia-paused-${port}`
        const { url } = yield* gateway(
          containerYaml(engine.current, {
            paused: imageService(engine.current, port, { name, pause_on_idle: true }, { idle_timeout_ms: 1000 })
          })
        )
        const first = yield* callJson(`${url}/services/paused/x`)
        assert.strictEqual(first.status, 200)
        yield* eventually(status(url, "paused"), (s) => s.state === "cold")
        const paused = yield* containerState(engine.current, name)
        assert.strictEqual(paused.status, "paused")
        const since = engineNow()
        const again = yield* callJson(`${url}/services/paused/y`)
        assert.strictEqual(again.status, 200)
        // The same process answered: its memory was kept, nothing was started.
        assert.strictEqual(again.json.pid, first.json.pid)
        assert.strictEqual((yield* containerState(engine.current, name)).status, "running")
        assert.strictEqual(yield* eventCount(engine.current, name, "start", since), 0)
        assert.strictEqual(yield* eventCount(engine.current, name, "unpause", since), 1)
      })
    )

    it.scopedLive(
      "a container that exits during its start → 503 StartupFailed with ContainerExited, code and output",
      () =>
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const { url } = yield* gateway(
            containerYaml(engine.current, {
              crashing: imageService(engine.current, port, {
                name: `hestia-crashing-${port}`,
                command: [process.execPath, "/app/upstream.mjs", "--exit-code", "3"]
              })
            })
          )
          const answer = yield* callJson(`${url}/services/crashing/x`)
          assert.strictEqual(answer.status, 503)
          assert.strictEqual(answer.json.error, "StartupFailed")
          const [attempt] = answer.json.attempts
          assert.strictEqual(attempt.error, "ContainerExited")
          assert.match(attempt.message, /exited \(code 3\)/)
          assert.match(attempt.message, /exiting at once with code 3, as asked$/)
        })
    )

    it.scopedLive(
      "a container stopped from outside while hot is noticed from the engine's events; the next request restarts it",
      () =>
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const name = `hestia-killed-${port}`
          const { url } = yield* gateway(
            containerYaml(engine.current, {
              killed: imageService(engine.current, port, { name }, { idle_timeout_ms: 0 })
            })
          )
          assert.strictEqual((yield* call(`${url}/services/killed/x`)).status, 200)
          yield* Effect.promise(() =>
            engineCall(engine.current.socket, "POST", `/containers/${name}/kill?signal=SIGKILL`)
          )
          const cold = yield* eventually(status(url, "killed"), (s) => s.state === "cold")
          // Cold with what it died of: the exit code and the container's last lines.
          assert.strictEqual(cold.lastError?.error, "ContainerExited")
          assert.match(cold.lastError.message, /code 137/)
          const activity = yield* callJson(`${url}/v1/activity?serviceId=killed`)
          const gone = activity.json.activity.find((row: any) => row.type === "upstream_gone")
          assert.match(gone.detail.reason, /ContainerExited: container "[^"]+" exited \(code 137\)/)
          assert.match(gone.detail.reason, /upstream listening on 127\.0\.0\.1/)
          const again = yield* call(`${url}/services/killed/y`)
          assert.strictEqual(again.status, 200)
          assert.strictEqual((yield* containerState(engine.current, name)).status, "running")
        })
    )

    it.scopedLive("an engine that is not there → EngineUnreachable; a missing image with pull off → ImageMissing", () =>
      Effect.gen(function* () {
        const port = yield* Effect.promise(freePort)
        const { url } = yield* gateway(
          containerYaml(engine.current, {
            nowhere: { ...imageService(engine.current, port), machines: ["gone"] },
            noimage: imageService(engine.current, port, { image: "hestia-missing:9", name: `hestia-noimage-${port}` }),
            unpullable: imageService(engine.current, port, {
              image: "127.0.0.1:1/nope:1",
              pull: true,
              name: `hestia-unpullable-${port}`
            })
          })
        )
        const nowhere = yield* callJson(`${url}/services/nowhere/x`)
        assert.strictEqual(nowhere.status, 503)
        assert.strictEqual(nowhere.json.attempts[0].error, "EngineUnreachable")
        assert.match(nowhere.json.attempts[0].message, /no-such\.sock is unreachable: .*ENOENT/)
        const noimage = yield* callJson(`${url}/services/noimage/x`)
        assert.strictEqual(noimage.status, 503)
        assert.strictEqual(noimage.json.attempts[0].error, "ImageMissing")
        assert.match(noimage.json.attempts[0].message, /hestia-missing:9 is not on .*container\.pull is off/)
        // With pull on, from a registry that refuses the connection: the pull's own failure.
        const pulled = yield* callJson(`${url}/services/unpullable/x`)
        assert.strictEqual(pulled.status, 503)
        assert.strictEqual(pulled.json.attempts[0].error, "ImageMissing")
        assert.match(pulled.json.attempts[0].message, /127\.0\.0\.1:1\/nope:1 is not on .*: pull failed: /)
      })
    )

    it.scopedLive(
      "a name with no container and no image → ContainerNotFound; the engine's own refusals → EngineRequestFailed",
      () =>
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const taken = `taken-${port}`
          yield* existingContainer(engine.current, taken, port)
          const { url } = yield* gateway(
            containerYaml(engine.current, {
              nobody: { base_url: `http://{host}:${port}`, container: { name: `nobody-${port}` } },
              // A command the image does not have: the engine refuses to start the container.
              refused: imageService(engine.current, port, {
                name: `hestia-refused-${port}`,
                command: ["/no/such/binary"]
              })
            })
          )
          const nobody = yield* callJson(`${url}/services/nobody/x`)
          assert.strictEqual(nobody.json.attempts[0].error, "ContainerNotFound")
          assert.match(nobody.json.attempts[0].message, new RegExp(`no container "nobody-${port}"`))
          const refused = yield* callJson(`${url}/services/refused/x`)
          assert.strictEqual(refused.status, 503)
          assert.strictEqual(refused.json.attempts[0].error, "EngineRequestFailed")
          assert.isAbove(refused.json.attempts[0].message.length, 0)
        })
    )

    // Podman runs HEALTHCHECKs from systemd timers, which a bare `podman system service` does not have.
    if (kind === "docker") {
      it.scopedLive("without a health_url the container's own HEALTHCHECK decides when it is ready", () =>
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const name = `checked-${port}`
          // Listening only after 1.5 s: with warmup_ms 0 and nothing else waiting, the first request would be refused.
          yield* existingContainer(engine.current, name, port, { args: ["--boot-ms", "1500"], healthcheck: true })
          const { url } = yield* gateway(
            containerYaml(engine.current, {
              checked: { base_url: `http://{host}:${port}`, container: { name }, warmup_ms: 0, idle_timeout_ms: 0 }
            })
          )
          const answer = yield* call(`${url}/services/checked/x`)
          assert.strictEqual(answer.status, 200)
          const inspected = yield* Effect.promise(() =>
            engineCall(engine.current.socket, "GET", `/containers/${name}/json`)
          )
          assert.strictEqual(inspected.json.State.Health.Status, "healthy")
        })
      )
    }
  })
}
