import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, LogLevel } from "effect"
import { decodeService, embeddedDefaultConfig, envPrefix, load, parse } from "../../src/config/HestiaConfig.ts"
import { repoRoot, tempDir } from "../fixtures/Gateway.ts"

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
          HESTIA_LOG_FORMAT: "Pretty",
          HESTIA_API_KEYS: "k1, k2",
          MY_SVC_IDLE_TIMEOUT_MS: "5000",
          MY_SVC_BASE_URL: "http://other:2",
          MY_SVC_COMMAND: '["node", "server.js"]'
        })
      )
      assert.strictEqual(settings.port, 9999)
      assert.strictEqual(settings.host, "127.0.0.1")
      assert.strictEqual(settings.logLevel, LogLevel.Debug)
      assert.strictEqual(settings.logFormat, "pretty")
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

  it.effect("log_format is json or pretty, absent by default (pretty on a terminal is decided at start)", () =>
    Effect.gen(function* () {
      const none = yield* parse("services: {}\n", "conf.yml").pipe(withEnv({}))
      assert.isUndefined(none.logFormat)
      const json = yield* parse("log_format: json\n", "conf.yml").pipe(withEnv({}))
      assert.strictEqual(json.logFormat, "json")
      const error = yield* failure("log_format: fancy\n")
      assert.strictEqual(error.path, "log_format")
      const bad = yield* failure("services: {}\n", { HESTIA_LOG_FORMAT: "xml" })
      assert.strictEqual(bad.file, "environment variable HESTIA_LOG_FORMAT")
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

  it.effect("the repository's example hestia_config.yml loads, without warnings", () =>
    Effect.gen(function* () {
      const text = readFileSync(Path.join(repoRoot, "hestia_config.yml"), "utf8")
      const settings = yield* parse(text, "hestia_config.yml").pipe(withEnv({}))
      assert.isTrue(settings.services.has("demo"))
      assert.strictEqual(settings.shutdownGraceMs, 10_000)
      assert.deepStrictEqual(settings.warnings, [])
    })
  )

  it.effect("the embedded default config is valid", () =>
    Effect.gen(function* () {
      const settings = yield* parse(embeddedDefaultConfig, "embedded").pipe(withEnv({}))
      assert.isTrue(settings.services.has("demo"))
    })
  )

  it.effect("shutdown_grace_ms: 10 s by default, from the file or HESTIA_SHUTDOWN_GRACE_MS, never negative", () =>
    Effect.gen(function* () {
      assert.strictEqual((yield* parse("{}", "conf.yml").pipe(withEnv({}))).shutdownGraceMs, 10_000)
      assert.strictEqual(
        (yield* parse("shutdown_grace_ms: 2500\n", "conf.yml").pipe(withEnv({}))).shutdownGraceMs,
        2500
      )
      const fromEnv = yield* parse("shutdown_grace_ms: 2500\n", "conf.yml").pipe(
        withEnv({ HESTIA_SHUTDOWN_GRACE_MS: "0" })
      )
      assert.strictEqual(fromEnv.shutdownGraceMs, 0)
      const negative = yield* failure("shutdown_grace_ms: -1\n")
      assert.strictEqual(negative.message, "conf.yml: shutdown_grace_ms: Expected a non-negative number, actual -1")
      const badEnv = yield* failure("{}", { HESTIA_SHUTDOWN_GRACE_MS: "soon" })
      assert.strictEqual(badEnv.file, "environment variable HESTIA_SHUTDOWN_GRACE_MS")
    })
  )

  it.effect("strategies_dir and strategy_timeout_ms: defaults, from the file or the environment, checked", () =>
    Effect.gen(function* () {
      const defaults = yield* parse("{}", "conf.yml").pipe(withEnv({}))
      assert.strictEqual(defaults.strategiesDir, "./strategies")
      assert.strictEqual(defaults.strategyTimeoutMs, 50)
      const fromFile = yield* parse("strategies_dir: /opt/s\nstrategy_timeout_ms: 200\n", "conf.yml").pipe(withEnv({}))
      assert.strictEqual(fromFile.strategiesDir, "/opt/s")
      assert.strictEqual(fromFile.strategyTimeoutMs, 200)
      const fromEnv = yield* parse("strategies_dir: /opt/s\n", "conf.yml").pipe(
        withEnv({ HESTIA_STRATEGIES_DIR: "/srv/strategies", HESTIA_STRATEGY_TIMEOUT_MS: "75" })
      )
      assert.strictEqual(fromEnv.strategiesDir, "/srv/strategies")
      assert.strictEqual(fromEnv.strategyTimeoutMs, 75)
      const zero = yield* failure("strategy_timeout_ms: 0\n")
      assert.strictEqual(zero.path, "strategy_timeout_ms")
      const badEnv = yield* failure("{}", { HESTIA_STRATEGY_TIMEOUT_MS: "fast" })
      assert.strictEqual(badEnv.file, "environment variable HESTIA_STRATEGY_TIMEOUT_MS")
      const empty = yield* failure("services:\n  a: { base_url: 'http://h:1', strategy: '' }\n")
      assert.strictEqual(empty.path, "services.a.strategy")
    })
  )
})

describe("configs of the first (Python) Hestia", () => {
  const python = readFileSync(Path.join(repoRoot, "test/fixtures/reference/python-hestia-config.yml"), "utf8")
  const semaphoreServices = ["cloud-ollama", "gpu-stable-diffusion", "dev-workspace", "global-api"]

  it.effect("its example config loads with its meaning, and exactly one warning: no Semaphore credentials", () =>
    Effect.gen(function* () {
      const settings = yield* parse(python, "python.yml").pipe(withEnv({}))
      assert.strictEqual(settings.services.size, 16)
      assert.deepStrictEqual(
        settings.warnings.map((w) => [w.key, w.kind]),
        [["semaphore_api_key", "warning"]]
      )
      for (const id of semaphoreServices) assert.include(settings.warnings[0]!.message, id)
      assert.include(settings.warnings[0]!.message, "SemaphoreAuthFailed")
      assert.deepStrictEqual(settings.semaphore, {
        baseUrl: "http://localhost:3000",
        apiKey: undefined,
        username: undefined,
        password: undefined,
        projectId: 1, // the first Hestia assumed project 1
        requestTimeoutMs: 30_000 // semaphore_timeout: 30 (seconds, per API call)
      })
      const cloud = settings.services.get("cloud-ollama")!
      assert.strictEqual(cloud.kind, "semaphore")
      assert.deepStrictEqual(cloud.semaphore, {
        enabled: true,
        machineId: "cloud-vm-01",
        startTemplateId: 1,
        stopTemplateId: 2,
        taskTimeoutMs: 300_000,
        pollIntervalMs: 2_000
      })
      assert.strictEqual(cloud.requestTimeoutMs, 180_000)
      assert.strictEqual(settings.services.get("minio")!.idleTimeoutMs, 0)
      assert.strictEqual(settings.services.get("postgres")!.fallbackUrl, "http://postgres-replica:3001")
      assert.strictEqual(settings.services.get("semaphore")!.kind, "external")
      assert.strictEqual(settings.services.get("dev-service")!.healthUrl, undefined)
    })
  )

  it.effect("its credentials from the environment: username/password or a token, and the warning goes", () =>
    Effect.gen(function* () {
      const login = yield* parse(python, "python.yml").pipe(
        withEnv({ SEMAPHORE_USERNAME: "admin", SEMAPHORE_PASSWORD: "0123" })
      )
      assert.deepStrictEqual(login.warnings, [])
      assert.strictEqual(login.semaphore.username, "admin")
      // Secrets are text, never YAML: "0123" is not the number 123.
      assert.strictEqual(login.semaphore.password, "0123")
      const token = yield* parse(python, "python.yml").pipe(withEnv({ SEMAPHORE_API_KEY: "tok" }))
      assert.deepStrictEqual(token.warnings, [])
      assert.strictEqual(token.semaphore.apiKey, "tok")
      // An empty variable (compose's ${SEMAPHORE_API_KEY:-}) is no token.
      const blank = yield* parse(python, "python.yml").pipe(withEnv({ SEMAPHORE_API_KEY: "" }))
      assert.strictEqual(blank.semaphore.apiKey, undefined)
      assert.deepStrictEqual(
        blank.warnings.map((w) => w.key),
        ["semaphore_api_key"]
      )
    })
  )

  it.effect("its service named `semaphore` shares SEMAPHORE_BASE_URL with the server setting, with a warning", () =>
    Effect.gen(function* () {
      const settings = yield* parse(python, "python.yml").pipe(
        withEnv({ SEMAPHORE_BASE_URL: "http://semaphore:3000", SEMAPHORE_API_KEY: "tok" })
      )
      assert.strictEqual(settings.semaphore.baseUrl, "http://semaphore:3000")
      assert.strictEqual(settings.services.get("semaphore")!.baseUrl, "http://semaphore:3000")
      assert.deepStrictEqual(settings.warnings, [
        {
          key: "SEMAPHORE_BASE_URL",
          message: "sets both semaphore_base_url and services.semaphore.base_url",
          kind: "warning"
        }
      ])
    })
  )

  it.effect("semaphore_timeout, semaphore_username/_password and semaphore_project_id: defaults and checks", () =>
    Effect.gen(function* () {
      const defaults = yield* parse("{}", "conf.yml").pipe(withEnv({}))
      assert.deepStrictEqual(defaults.semaphore, {
        baseUrl: undefined,
        apiKey: undefined,
        username: undefined,
        password: undefined,
        projectId: 1,
        requestTimeoutMs: 10_000
      })
      const set = yield* parse(
        "semaphore_timeout: 2.5\nsemaphore_username: admin\nsemaphore_password: secret\nsemaphore_project_id: 4\n",
        "conf.yml"
      ).pipe(withEnv({ SEMAPHORE_TIMEOUT: "1.5" }))
      assert.strictEqual(set.semaphore.requestTimeoutMs, 1_500)
      assert.strictEqual(set.semaphore.username, "admin")
      assert.strictEqual(set.semaphore.password, "secret")
      assert.strictEqual(set.semaphore.projectId, 4)
      assert.strictEqual((yield* failure("semaphore_timeout: 0\n")).path, "semaphore_timeout")
      const half = yield* failure("semaphore_username: admin\n")
      assert.strictEqual(
        half.message,
        "conf.yml: semaphore_password: required (or env SEMAPHORE_PASSWORD) with semaphore_username"
      )
      // Without the server a Semaphore service cannot start at all: still an error.
      const noServer = yield* failure(
        "services:\n  a: { base_url: 'http://h:1', semaphore_enabled: true, semaphore_start_template_id: 1 }\n"
      )
      assert.strictEqual(noServer.path, "semaphore_base_url")
    })
  )

  it.effect("booleans: true/false, yes/no, on/off, 1/0 in any case, in the environment and in the file", () =>
    Effect.gen(function* () {
      const yaml =
        "semaphore_base_url: http://s:3000\nsemaphore_api_key: t\nauth: { forward_authorization: 'Yes' }\n" +
        "services:\n  a: { base_url: 'http://h:1', semaphore_start_template_id: 1 }\n"
      for (const [value, kind] of [
        ["yes", "semaphore"],
        ["YES", "semaphore"],
        ["On", "semaphore"],
        ["1", "semaphore"],
        ["true", "semaphore"],
        ["TRUE", "semaphore"],
        ["no", "external"],
        ["Off", "external"],
        ["0", "external"],
        ["False", "external"]
      ] as const) {
        const settings = yield* parse(yaml, "conf.yml").pipe(withEnv({ A_SEMAPHORE_ENABLED: value }))
        assert.strictEqual(settings.services.get("a")!.kind, kind, value)
        assert.isTrue(settings.auth.forwardAuthorization)
      }
      const bad = yield* failure(yaml, { A_SEMAPHORE_ENABLED: "maybe" })
      assert.strictEqual(bad.file, "environment variable A_SEMAPHORE_ENABLED")
      assert.strictEqual(bad.path, "services.a.semaphore_enabled")
      assert.match(bad.problem, /yes\/no, on\/off, 1\/0/)
    })
  )

  it.effect(
    "strategy is kept as written; instances are read, labels and all; routing is accepted with a deprecation warning",
    () =>
      Effect.gen(function* () {
        const settings = yield* parse(
          `services:
  ollama:
    base_url: "http://localhost:11434"
    health_url: "http://localhost:11434/api/tags"
    strategy: "model_router"
    instances:
      - { url: "http://ollama-a:11434", region: "us-east" }
      - "http://ollama-b:11434"
    routing:
      model_key: "model"
      by_model: { llama3: "http://ollama-a:11434" }
  quiet: { base_url: "http://localhost:1", strategy: null }
`,
          "conf.yml"
        ).pipe(withEnv({}))
        assert.deepStrictEqual(
          settings.warnings.map((w) => [w.key, w.kind]),
          [["services.ollama.routing", "deprecated"]]
        )
        const ollama = settings.services.get("ollama")!
        assert.strictEqual(ollama.strategy, "model_router")
        assert.strictEqual(ollama.kind, "external")
        assert.deepStrictEqual(ollama.instances, [
          { url: "http://ollama-a:11434", healthUrl: undefined, labels: { region: "us-east" } },
          { url: "http://ollama-b:11434", healthUrl: undefined, labels: {} }
        ])
        assert.notProperty(ollama, "routing")
        assert.deepStrictEqual(settings.services.get("quiet")!.instances, [])
      })
  )
})

describe("instances:", () => {
  it.effect("base_url may be left out (the first instance's URL stands in); health_url per instance", () =>
    Effect.gen(function* () {
      const settings = yield* parse(
        `services:
  pool:
    instances:
      - http://127.0.0.1:9001
      - { url: "http://127.0.0.1:9002/", health_url: "http://127.0.0.1:9002/ready", zone: 2, gpu: true }
`,
        "conf.yml"
      ).pipe(withEnv({ POOL_IDLE_TIMEOUT_MS: "0" }))
      const pool = settings.services.get("pool")!
      assert.strictEqual(pool.baseUrl, "http://127.0.0.1:9001")
      assert.strictEqual(pool.idleTimeoutMs, 0)
      assert.deepStrictEqual(pool.instances[1], {
        url: "http://127.0.0.1:9002/",
        healthUrl: "http://127.0.0.1:9002/ready",
        labels: { zone: 2, gpu: true }
      })
    })
  )

  it.effect("a bad one, or one with something that starts the service, is refused in one line naming its key", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [string, string, string]> = [
        ["{ health_url: 'http://h:1/health' }", "services.s.base_url", "is missing"],
        ["{ instances: [] }", "services.s.base_url", "is missing"],
        ["{ instances: ['ftp://h:1'] }", "services.s.instances.0", "expected an http:// or https:// URL"],
        [
          "{ instances: [3] }",
          "services.s.instances.0",
          "expected a URL, or a mapping { url, health_url?, ...labels }"
        ],
        ["{ instances: [{ region: a }] }", "services.s.instances.0.url", "is missing"],
        [
          "{ instances: [{ url: 'http://h:1', health_url: 'nope' }] }",
          "services.s.instances.0.health_url",
          "expected an http:// or https:// URL"
        ],
        [
          "{ instances: ['http://h:1'], command: ['node', 'x.js'] }",
          "services.s.instances",
          "not with command: instances are upstreams that run on their own (the gateway starts none of them)"
        ],
        [
          "{ instances: ['http://h:1'], container: { name: xy } }",
          "services.s.instances",
          "not with container: instances are upstreams that run on their own (the gateway starts none of them)"
        ],
        [
          "{ instances: ['http://h:1'], semaphore_enabled: true, semaphore_start_template_id: 1 }",
          "services.s.instances",
          "not with semaphore_enabled: instances are upstreams that run on their own (the gateway starts none of them)"
        ],
        [
          "{ instances: ['http://h:1'], machines: [m] }",
          "services.s.instances",
          "not with machines: an instance names its own host in its URL"
        ],
        [
          "{ instances: ['http://h:1'], fallback_url: 'http://h:2' }",
          "services.s.instances",
          "not with fallback_url: the instances fail over among themselves"
        ],
        ["{ instances: ['http://h:1', 'http://h:1/'] }", "services.s.instances.1", "http://h:1/ is listed twice"],
        [
          "{ instances: ['http://{host}:1'] }",
          "services.s.instances.0",
          "{host} is filled from a machine: an instance's URL names its host"
        ]
      ]
      for (const [entry, path, problem] of cases) {
        const error = yield* failure(
          `semaphore_base_url: http://sem:3000\nmachines: { m: { host: h } }\nservices:\n  s: ${entry}\n`
        )
        assert.deepStrictEqual([error.path, error.problem], [path, problem], entry)
      }
    })
  )

  it.effect("model_strategy is a top-level name, also from HESTIA_MODEL_STRATEGY", () =>
    Effect.gen(function* () {
      const fromFile = yield* parse("model_strategy: by-body\n", "conf.yml").pipe(withEnv({}))
      assert.strictEqual(fromFile.modelStrategy, "by-body")
      const fromEnv = yield* parse("{}\n", "conf.yml").pipe(withEnv({ HESTIA_MODEL_STRATEGY: "other" }))
      assert.strictEqual(fromEnv.modelStrategy, "other")
      assert.strictEqual((yield* parse("{}\n", "conf.yml").pipe(withEnv({}))).modelStrategy, undefined)
      const empty = yield* failure("model_strategy: ''\n")
      assert.strictEqual(empty.path, "model_strategy")
    })
  )
})

describe("two local processes on one host and port", () => {
  const proc = (id: string, url: string, extra = "") =>
    `  ${id}: { base_url: "${url}", command: ["node", "x.js"]${extra} }\n`

  it.effect("are refused, naming both; this host's names are one host, a missing port is the scheme's", () =>
    Effect.gen(function* () {
      for (const [a, b] of [
        ["http://127.0.0.1:9000", "http://localhost:9000"],
        ["http://[::1]:9000", "http://0.0.0.0:9000/api"],
        ["http://localhost", "http://127.0.0.1:80"],
        ["https://LOCALHOST", "https://[::1]:443"]
      ] as const) {
        const error = yield* failure(`services:\n${proc("first", a)}${proc("second", b)}`)
        assert.strictEqual(error.path, "services.second.base_url", `${a} ${b}`)
        assert.strictEqual(
          error.problem,
          `${b} is the address of service "first" too (${a}): two local processes cannot listen on one host and port`
        )
      }
    })
  )

  it.effect("other ports, schemes, hosts or an external service on the same port are fine", () =>
    Effect.gen(function* () {
      const settings = yield* parse(
        `services:
${proc("a", "http://127.0.0.1:9000")}${proc("b", "http://127.0.0.1:9001")}${proc("c", "https://localhost")}${proc("d", "http://localhost")}${proc("e", "http://other.lan:9000")}  f: { base_url: "http://127.0.0.1:9000" }
`,
        "conf.yml"
      ).pipe(withEnv({}))
      assert.strictEqual(settings.services.size, 6)
    })
  )

  it.effect("{host} URLs compare as they resolve on each machine", () =>
    Effect.gen(function* () {
      const machines = "machines:\n  laptop: { host: 127.0.0.1 }\n  gpu: { host: gpu.lan }\nservices:\n"
      const apart = yield* parse(
        `${machines}${proc("a", "http://{host}:11434", ", machines: [gpu]")}${proc("b", "http://{host}:11434", ", machines: [laptop]")}`,
        "conf.yml"
      ).pipe(withEnv({}))
      assert.strictEqual(apart.services.size, 2)
      const sameMachine = yield* failure(
        `${machines}${proc("a", "http://{host}:11434", ", machines: [gpu, laptop]")}${proc("b", "http://127.0.0.1:11434")}`
      )
      assert.strictEqual(sameMachine.path, "services.b.base_url")
      assert.include(sameMachine.problem, 'service "a"')
      // Without machines, {host} is this host.
      const local = yield* failure(`services:\n${proc("a", "http://{host}:9000")}${proc("b", "http://127.0.0.1:9000")}`)
      assert.include(local.problem, 'service "a"')
      const remote = yield* failure(
        `${machines}${proc("a", "http://{host}:1", ", machines: [gpu]")}${proc("b", "http://gpu.lan:1")}`
      )
      assert.include(remote.problem, 'service "a"')
    })
  )

  it.effect("a colliding URL set by the environment names the variable", () =>
    Effect.gen(function* () {
      const error = yield* failure(
        `services:\n${proc("a", "http://127.0.0.1:9000")}${proc("b", "http://127.0.0.1:9001")}`,
        {
          B_BASE_URL: "http://localhost:9000"
        }
      )
      assert.strictEqual(error.file, "environment variable B_BASE_URL")
      assert.strictEqual(error.path, "services.b.base_url")
    })
  )
})

describe("HestiaConfig.load: which file", () => {
  const dir = tempDir("hestia-load-")
  const file = Path.join(dir, "hestia.yml")
  writeFileSync(file, "services:\n  a: { base_url: 'http://h:1' }\n")
  const loadWith = (env: Record<string, string>) =>
    Effect.either(load.pipe(Effect.provide(NodeContext.layer), withEnv(env)))

  it.effect("a path that exists but cannot be read is a ConfigError naming it, never the embedded default", () =>
    Effect.gen(function* () {
      const folder = Path.join(dir, "a-folder")
      mkdirSync(folder)
      for (const [path, problem] of [
        [folder, /^cannot read: it is a directory, not a file$/],
        // Root reads every file whatever its mode: an I/O error is the honest unreadable file here.
        ["/proc/self/mem", /^cannot read: .*EIO/],
        [Path.join(file, "below-a-file.yml"), /^cannot read: .*ENOTDIR/]
      ] as const) {
        for (const variable of ["HESTIA_CONFIG", "HESTIA_CONFIG_PATH"]) {
          const result = yield* loadWith({ [variable]: path })
          assert.isTrue(Either.isLeft(result), path)
          const error = (result as Either.Left<any, any>).left
          assert.strictEqual(error._tag, "ConfigError")
          assert.strictEqual(error.file, path)
          assert.match(error.problem, problem)
          assert.notInclude(error.message, "\n")
        }
      }
    })
  )

  it.effect("HESTIA_CONFIG_PATH is an alias of HESTIA_CONFIG; HESTIA_CONFIG wins when both are set", () =>
    Effect.gen(function* () {
      const alias = yield* loadWith({ HESTIA_CONFIG_PATH: file })
      assert.isTrue(Either.isRight(alias))
      const settings = (alias as Either.Right<any, any>).right
      assert.strictEqual(settings.source, file)
      assert.deepStrictEqual(settings.warnings, [])
      const both = yield* loadWith({ HESTIA_CONFIG: file, HESTIA_CONFIG_PATH: Path.join(dir, "other.yml") })
      const winner = (both as Either.Right<any, any>).right
      assert.strictEqual(winner.source, file)
      assert.deepStrictEqual(
        winner.warnings.map((w: any) => [w.key, w.kind]),
        [["HESTIA_CONFIG_PATH", "warning"]]
      )
      const missing = yield* loadWith({ HESTIA_CONFIG_PATH: Path.join(dir, "absent.yml") })
      assert.strictEqual((missing as Either.Left<any, any>).left.problem, "file not found (HESTIA_CONFIG_PATH)")
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
