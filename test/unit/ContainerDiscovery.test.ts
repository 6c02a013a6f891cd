import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { serviceFromLabels } from "../../src/config/ContainerDiscovery.ts"
import type { MachineConfig } from "../../src/config/HestiaConfig.ts"
import type { ListedContainer } from "../../src/orchestrators/DockerEngine.ts"

const nas: MachineConfig = {
  id: "nas",
  host: "nas.lan",
  semaphoreMachineId: undefined,
  dockerUrl: "tcp://nas.lan:2375",
  containerDiscovery: true,
  labels: {}
}

const listed = (labels: Record<string, string>, publishedPorts: ListedContainer["publishedPorts"] = []) =>
  ({
    id: "abc",
    name: "webui",
    image: "app:1",
    state: "exited",
    labels,
    publishedPorts,
    networkMode: "bridge"
  }) satisfies ListedContainer

const refused = (container: ListedContainer) => Effect.flip(serviceFromLabels(nas, container))

describe("ContainerDiscovery: a labelled container as a service", () => {
  it.effect("hestia.service, hestia.port, hestia.health_path and hestia.idle_timeout_ms make a container service", () =>
    Effect.gen(function* () {
      const service = yield* serviceFromLabels(
        nas,
        listed({
          "hestia.service": "webui",
          "hestia.port": "3000",
          "hestia.health_path": "/health",
          "hestia.idle_timeout_ms": "900000",
          "com.docker.compose.project": "home"
        })
      )
      assert.strictEqual(service.id, "webui")
      assert.strictEqual(service.source, "labels")
      assert.strictEqual(service.kind, "container")
      assert.strictEqual(service.baseUrl, "http://{host}:3000")
      assert.strictEqual(service.healthUrl, "http://{host}:3000/health")
      assert.strictEqual(service.idleTimeoutMs, 900_000)
      assert.deepStrictEqual(service.machines, ["nas"])
      assert.strictEqual(service.container?.name, "webui")
      assert.isUndefined(service.container?.image)
    })
  )

  it.effect("without hestia.port the first published port; hestia.base_url instead of both", () =>
    Effect.gen(function* () {
      const published = yield* serviceFromLabels(
        nas,
        listed({ "hestia.service": "a" }, [{ containerPort: 8080, hostPort: 18080 }])
      )
      assert.strictEqual(published.baseUrl, "http://{host}:18080")
      const named = yield* serviceFromLabels(
        nas,
        listed({ "hestia.service": "b", "hestia.base_url": "http://webui:8080/", "hestia.health_path": "/ok" })
      )
      assert.strictEqual(named.baseUrl, "http://webui:8080/")
      assert.strictEqual(named.healthUrl, "http://webui:8080/ok")
    })
  )

  it.effect("bad labels are ConfigErrors naming the container and the label", () =>
    Effect.gen(function* () {
      const noPort = yield* refused(listed({ "hestia.service": "a" }))
      assert.strictEqual(noPort.path, "hestia.port")
      assert.strictEqual(noPort.file, 'labels of container "webui" on machine "nas"')
      const typo = yield* refused(listed({ "hestia.service": "a", "hestia.port": "1", "hestia.idle_timout_ms": "5" }))
      assert.strictEqual(
        typo.message,
        'labels of container "webui" on machine "nas": hestia.idle_timout_ms: unknown label'
      )
      assert.strictEqual((yield* refused(listed({ "hestia.service": "a", "hestia.port": "http" }))).path, "hestia.port")
      assert.strictEqual(
        (yield* refused(listed({ "hestia.service": "a b", "hestia.port": "1" }))).path,
        "hestia.service"
      )
      const path = yield* refused(listed({ "hestia.service": "a", "hestia.port": "1", "hestia.health_path": "health" }))
      assert.strictEqual(path.path, "hestia.health_path")
      const url = yield* refused(listed({ "hestia.service": "a", "hestia.base_url": "ftp://x" }))
      assert.strictEqual(url.path, "labels.base_url")
    })
  )
})
