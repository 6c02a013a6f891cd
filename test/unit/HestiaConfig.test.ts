import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, LogLevel } from "effect"
import { decodeService, embeddedDefaultConfig, envPrefix, parse } from "../../src/config/HestiaConfig.ts"

const withEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

const failure = (text: string, env: Record<string, string> = {}) =>
  Effect.gen(function* () {
    const result = yield* Effect.either(parse(text, "conf.yml").pipe(withEnv(env)))
    assert.isTrue(Either.isLeft(result), "expected a ConfigError")
    return (result as Either.Left<any, any>).left
  })

describe("HestiaConfig", () => {
  it.effect("applies defaults to a minimal service", () =>
    Effect.gen(function* () {
      const settings = yield* parse("services:\n  a: { base_url: 'http://h:1' }\n", "conf.yml").pipe(withEnv({}))
      const a = settings.services.get("a")!
      assert.strictEqual(settings.port, 8080)
      assert.strictEqual(settings.host, "0.0.0.0")
      assert.strictEqual(settings.database, "./data/hestia.db")
      assert.strictEqual(a.kind, "external")
      assert.strictEqual(a.source, "config")
      assert.strictEqual(a.idleTimeoutMs, 300_000)
      assert.strictEqual(a.queueSize, 100)
      assert.strictEqual(a.requestTimeoutMs, 60_000)
      assert.strictEqual(a.retryCount, 2)
      assert.strictEqual(a.retryDelayMs, 1_000)
      assert.strictEqual(a.warmupMs, 2_000)
    })
  )

  it.effect("accepts the original Hestia's flat keys and decides the orchestrator", () =>
    Effect.gen(function* () {
      const settings = yield* parse(
        `semaphore_base_url: http://semaphore:3000
semaphore_api_key: token
semaphore_project_id: 1
services:
  proc: { base_url: "http://127.0.0.1:1", command: "ollama serve", cwd: /tmp, env: { A: "1" } }
  remote:
    base_url: "http://gpu:11434"
    health_url: "http://gpu:11434/api/tags"
    warmup_ms: 5000
    idle_timeout_ms: 0
    queue_size: 10
    request_timeout_seconds: 1.5
    retry_count: 0
    retry_delay_ms: 10
    fallback_url: null
    semaphore_enabled: true
    semaphore_machine_id: gpu-01
    semaphore_start_template_id: 1
    semaphore_stop_template_id: 2
    semaphore_task_timeout: 300
    semaphore_poll_interval: 0.5
`,
        "conf.yml"
      ).pipe(withEnv({}))
      const proc = settings.services.get("proc")!
      assert.strictEqual(proc.kind, "process")
      assert.deepStrictEqual(proc.command, ["/bin/sh", "-c", "ollama serve"])
      const remote = settings.services.get("remote")!
      assert.strictEqual(remote.kind, "semaphore")
      assert.strictEqual(remote.requestTimeoutMs, 1_500)
      assert.strictEqual(remote.semaphore.pollIntervalMs, 500)
      assert.strictEqual(remote.semaphore.machineId, "gpu-01")
    })
  )

  it.effect("environment overrides: HESTIA_* and <SERVICE>_<KEY>, decoded by the same schema", () =>
    Effect.gen(function* () {
      const settings = yield* parse(
        "server: { port: 8080 }\nservices:\n  my-svc: { base_url: 'http://h:1' }\n",
        "conf.yml"
      ).pipe(
        withEnv({
          HESTIA_PORT: "9999",
          HESTIA_HOST: "127.0.0.1",
          HESTIA_LOG_LEVEL: "DEBUG",
          HESTIA_API_KEYS: "k1, k2",
          MY_SVC_IDLE_TIMEOUT_MS: "5000",
          MY_SVC_BASE_URL: "http://other:2",
          MY_SVC_COMMAND: '["node", "server.js"]'
        })
      )
      assert.strictEqual(settings.port, 9999)
      assert.strictEqual(settings.host, "127.0.0.1")
      assert.strictEqual(settings.logLevel, LogLevel.Debug)
      assert.deepStrictEqual(settings.auth.apiKeys, ["k1", "k2"])
      const svc = settings.services.get("my-svc")!
      assert.strictEqual(svc.idleTimeoutMs, 5000)
      assert.strictEqual(svc.baseUrl, "http://other:2")
      assert.deepStrictEqual(svc.command, ["node", "server.js"])
      assert.strictEqual(envPrefix("my-svc"), "MY_SVC")
    })
  )

  it.effect("YAML syntax errors name the file and the line", () =>
    Effect.gen(function* () {
      const error = yield* failure("services:\n  a: { base_url: 'http://h:1'\n")
      assert.strictEqual(error._tag, "ConfigError")
      assert.match(error.message, /^conf\.yml: line \d+, column \d+: invalid YAML: /)
    })
  )

  it.effect("a wrong type names the key path", () =>
    Effect.gen(function* () {
      const error = yield* failure("services:\n  a: { base_url: 'http://h:1', queue_size: 'many' }\n")
      assert.strictEqual(error.path, "services.a.queue_size")
      assert.match(error.message, /^conf\.yml: services\.a\.queue_size: /)
    })
  )

  it.effect("a negative timeout is refused", () =>
    Effect.gen(function* () {
      const error = yield* failure("services:\n  a: { base_url: 'http://h:1', idle_timeout_ms: -5 }\n")
      assert.strictEqual(error.path, "services.a.idle_timeout_ms")
      assert.match(error.problem, /non-negative/)
    })
  )

  it.effect("unknown keys are an error, not silence", () =>
    Effect.gen(function* () {
      const error = yield* failure("services:\n  a: { base_url: 'http://h:1', idle_timout_ms: 5 }\n")
      assert.strictEqual(error.message, "conf.yml: services.a.idle_timout_ms: unknown key")
      const top = yield* failure("sevices: {}\n")
      assert.strictEqual(top.message, "conf.yml: sevices: unknown key")
    })
  )

  it.effect("a bad environment value names the variable", () =>
    Effect.gen(function* () {
      const error = yield* failure("services:\n  a: { base_url: 'http://h:1' }\n", { A_QUEUE_SIZE: "-1" })
      assert.strictEqual(error.file, "environment variable A_QUEUE_SIZE")
      assert.strictEqual(error.path, "services.a.queue_size")
    })
  )

  it.effect("bad URLs, bad service ids, a mapping where one is expected, and unknown machines", () =>
    Effect.gen(function* () {
      assert.strictEqual((yield* failure("services:\n  a: { base_url: 'ftp://h' }\n")).path, "services.a.base_url")
      assert.strictEqual((yield* failure("services:\n  'a b': { base_url: 'http://h:1' }\n")).path, "services.a b")
      assert.match((yield* failure("services: [1, 2]\n")).problem, /^expected a mapping/)
      const machine = yield* failure("services:\n  a: { base_url: 'http://h:1', machines: [gpu] }\n")
      assert.strictEqual(machine.path, "services.a.machines")
      assert.match(machine.problem, /unknown machine "gpu"/)
      const semaphore = yield* failure("services:\n  a: { base_url: 'http://h:1', semaphore_enabled: true }\n")
      assert.strictEqual(semaphore.path, "services.a.semaphore_start_template_id")
    })
  )

  it.effect("the embedded default config is valid", () =>
    Effect.gen(function* () {
      const settings = yield* parse(embeddedDefaultConfig, "embedded").pipe(withEnv({}))
      assert.isTrue(settings.services.has("demo"))
    })
  )

  it.effect("a container block makes a container service, with defaults and the ports spelled out", () =>
    Effect.gen(function* () {
      const settings = yield* parse(
        `services:
  openwebui: { base_url: "http://{host}:3000", container: { name: open-webui } }
  scratch:
    base_url: http://{host}:18080
    container:
      image: ghcr.io/example/app:1.2
      env: { MODE: demo }
      ports: { "8080/tcp": 18080, "53/udp": "127.0.0.1:5353", "9000": 9000 }
      volumes: ["/srv/scratch:/data"]
      remove_on_stop: true
`,
        "conf.yml"
      ).pipe(withEnv({}))
      const existing = settings.services.get("openwebui")!
      assert.strictEqual(existing.kind, "container")
      assert.deepStrictEqual(existing.container, {
        name: "open-webui",
        image: undefined,
        pull: false,
        command: undefined,
        env: {},
        ports: {},
        networkMode: undefined,
        volumes: [],
        removeOnStop: false,
        pauseOnIdle: false
      })
      const scratch = settings.services.get("scratch")!.container!
      assert.strictEqual(scratch.name, "hestia-scratch")
      assert.deepStrictEqual(scratch.ports, { "8080/tcp": "18080", "53/udp": "127.0.0.1:5353", "9000/tcp": "9000" })
      assert.deepStrictEqual(scratch.env, { MODE: "demo" })
      assert.isTrue(scratch.removeOnStop)
      assert.strictEqual(settings.services.get("scratch")!.container?.image, "ghcr.io/example/app:1.2")
    })
  )

  it.effect("a container block is refused with process or Semaphore keys, and creation keys need an image", () =>
    Effect.gen(function* () {
      const both = yield* failure("services:\n  a: { base_url: 'http://h:1', command: x, container: { name: ab } }\n")
      assert.strictEqual(both.path, "services.a.command")
      const env = yield* failure("services:\n  a: { base_url: 'http://h:1', env: { A: b }, container: { name: ab } }\n")
      assert.strictEqual(env.path, "services.a.env")
      assert.match(env.problem, /container\.env/)
      const pull = yield* failure("services:\n  a: { base_url: 'http://h:1', container: { name: ab, pull: true } }\n")
      assert.strictEqual(pull.path, "services.a.container.pull")
      assert.match(pull.problem, /container\.image/)
      const keep = yield* failure(
        "services:\n  a: { base_url: 'http://h:1', container: { image: i, remove_on_stop: true, pause_on_idle: true } }\n"
      )
      assert.strictEqual(keep.path, "services.a.container.remove_on_stop")
      const port = yield* failure(
        "services:\n  a: { base_url: 'http://h:1', container: { image: i, ports: { web: 1 } } }\n"
      )
      assert.strictEqual(port.path, "services.a.container.ports.web")
      const name = yield* failure("services:\n  a: { base_url: 'http://h:1', container: { name: 'no spaces' } }\n")
      assert.strictEqual(name.path, "services.a.container.name")
    })
  )

  it.effect("machines name their Docker engine and whether its labelled containers become services", () =>
    Effect.gen(function* () {
      const settings = yield* parse(
        `machines:
  local: { host: 127.0.0.1 }
  nas: { host: nas.lan, docker_url: "tcp://nas.lan:2375", container_discovery: true }
  box: { host: box.lan, docker_url: "unix:///run/podman/podman.sock" }
`,
        "conf.yml"
      ).pipe(withEnv({}))
      assert.strictEqual(settings.machines.get("local")!.dockerUrl, undefined)
      assert.isFalse(settings.machines.get("local")!.containerDiscovery)
      assert.strictEqual(settings.machines.get("nas")!.dockerUrl, "tcp://nas.lan:2375")
      assert.isTrue(settings.machines.get("nas")!.containerDiscovery)
      assert.strictEqual(settings.machines.get("box")!.dockerUrl, "unix:///run/podman/podman.sock")
      const bad = yield* failure("machines:\n  nas: { host: nas.lan, docker_url: 'nas.lan:2375' }\n")
      assert.strictEqual(bad.path, "machines.nas.docker_url")
      assert.match(bad.problem, /unix:\/\/\//)
    })
  )

  it.effect("a service declared outside the file is checked by the same schema and keeps its source", () =>
    Effect.gen(function* () {
      const where = { file: "labels of container web", path: "labels" }
      const web = yield* decodeService(
        "web",
        { base_url: "http://{host}:3000", container: { name: "web" }, machines: ["nas"] },
        "labels",
        where
      )
      assert.strictEqual(web.source, "labels")
      assert.strictEqual(web.kind, "container")
      const bad = yield* Effect.flip(
        decodeService("web", { base_url: "http://{host}:3000", idle_timeout_ms: -1 }, "labels", where)
      )
      assert.strictEqual(bad.message.split(":")[0], "labels of container web")
      assert.strictEqual(bad.path, "labels.idle_timeout_ms")
    })
  )
})
