import { spawn } from "node:child_process"
import { writeFileSync } from "node:fs"
import * as Path from "node:path"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import {
  containerState,
  containerYaml,
  engineNow,
  eventCount,
  existingContainer,
  imageService,
  runnableEngines,
  useEngine
} from "../fixtures/Containers.ts"
import { callJson, eventually, freePort, repoRoot, tempDir } from "../fixtures/Gateway.ts"
import { killHard, startGateway, stopGracefully } from "../fixtures/GatewayProcess.ts"
import { engineCall } from "../fixtures/PrivateEngine.ts"

// The real gateway process (src/main.ts) with containers: label discovery at start, a SIGKILL and a restart that
// adopts the running container, a clean stop that stops it. Left out by vitest.config.ts when no engine can run.

const inDatabase = <A>(file: string, query: (sql: SqlClient.SqlClient) => Effect.Effect<A, unknown>) =>
  Effect.flatMap(SqlClient.SqlClient, query).pipe(
    Effect.provide(SqliteClient.layer({ filename: file, readonly: true, disableWAL: true })),
    Effect.orDie
  )

const serviceState = (file: string, id: string) =>
  inDatabase(file, (sql) =>
    Effect.map(sql<{ state: string }>`SELECT state FROM services WHERE id = ${id}`, (rows) => rows[0]?.state)
  )

const containerRows = (file: string) =>
  inDatabase(file, (sql) => sql<{ service_id: string; container_id: string }>`SELECT * FROM containers`)

const setup = (yaml: string) => {
  const dir = tempDir("hestia-containers-")
  const database = Path.join(dir, "hestia.db")
  const configFile = Path.join(dir, "hestia.yml")
  writeFileSync(configFile, `database: ${JSON.stringify(database)}\n${yaml}`)
  return { configFile, database }
}

/** Runs the gateway on a config that must not load: its exit code and stderr. */
const refusedGateway = (configFile: string) =>
  Effect.promise(
    () =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
          cwd: repoRoot,
          env: { ...process.env, HESTIA_CONFIG: configFile },
          stdio: ["ignore", "pipe", "pipe"]
        })
        let stderr = ""
        child.stderr.on("data", (data) => {
          stderr += data
        })
        child.stdout.on("data", (data) => {
          if (String(data).includes('"event":"listening"')) child.kill("SIGKILL")
        })
        child.on("exit", (code) => resolve({ code, stderr }))
      })
  )

const timeline = (url: string, serviceId: string) =>
  Effect.map(callJson(`${url}/v1/activity?serviceId=${serviceId}`), (r) => r.json.activity as Array<any>)

for (const kind of runnableEngines) {
  describe(`the gateway process with containers on ${kind} (private engine)`, () => {
    const engine = useEngine(kind)

    it.scopedLive(
      "labelled containers become services at start; a label that clashes with the config stops the gateway",
      () =>
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const name = `labelled-${port}`
          yield* existingContainer(engine.current, name, port, {
            labels: {
              "hestia.service": "labelled",
              "hestia.port": String(port),
              "hestia.health_path": "/health",
              "hestia.idle_timeout_ms": "1500"
            }
          })
          const discovering = (yaml: string) =>
            yaml.replace(
              `docker_url: ${JSON.stringify(engine.current.url)} }`,
              `docker_url: ${JSON.stringify(engine.current.url)}, container_discovery: true }`
            )
          const { configFile } = setup(discovering(containerYaml(engine.current, {})))
          const gateway = yield* startGateway(configFile)
          const services = yield* callJson(`${gateway.url}/v1/services`)
          const listed = services.json.services.find((s: any) => s.serviceId === "labelled")
          assert.strictEqual(listed?.baseUrl, `http://127.0.0.1:${port}`)
          const hello = yield* callJson(`${gateway.url}/services/labelled/hello`)
          assert.strictEqual(hello.status, 200)
          assert.strictEqual((yield* containerState(engine.current, name)).status, "running")
          // Its label's idle timeout applies.
          yield* eventually(
            Effect.map(containerState(engine.current, name), (s) => s.status),
            (status) => status === "exited"
          )
          assert.strictEqual(yield* stopGracefully(gateway), 0)

          const clash = setup(
            discovering(
              containerYaml(engine.current, { labelled: { base_url: "http://127.0.0.1:1", container: { name } } })
            )
          )
          const refused = yield* refusedGateway(clash.configFile)
          assert.strictEqual(refused.code, 2)
          assert.match(
            refused.stderr,
            new RegExp(
              `services\\.labelled: also declared by the label hestia\\.service=labelled of container "${name}"`
            )
          )
        }),
      60_000
    )

    it.scopedLive(
      "SIGKILL with the container hot: the next gateway adopts it (no new start); SIGTERM then stops it",
      () =>
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const name = `hestia-adopted-${port}`
          const { configFile, database } = setup(
            containerYaml(engine.current, {
              adopted: imageService(engine.current, port, { name }, { idle_timeout_ms: 60_000 })
            })
          )
          const first = yield* startGateway(configFile)
          const hello = yield* callJson(`${first.url}/services/adopted/hello`)
          assert.strictEqual(hello.status, 200)
          yield* eventually(serviceState(database, "adopted"), (state) => state === "hot")
          yield* killHard(first)
          assert.strictEqual((yield* containerState(engine.current, name)).status, "running")

          const since = engineNow()
          const second = yield* startGateway(configFile)
          const status = yield* callJson(`${second.url}/v1/services/adopted/status`)
          assert.strictEqual(status.json.state, "hot")
          assert.strictEqual((yield* timeline(second.url, "adopted"))[0].type, "adopted")
          const again = yield* callJson(`${second.url}/services/adopted/again`)
          assert.strictEqual(again.json.pid, hello.json.pid, "the same process answers")
          assert.strictEqual(yield* eventCount(engine.current, name, "start", since), 0)
          // The adopted container is watched through events like a started one.
          assert.isTrue(second.lines.some((line) => line.includes('"event":"container_adopted"')))

          assert.strictEqual(yield* stopGracefully(second), 0)
          assert.strictEqual((yield* containerState(engine.current, name)).status, "exited")
          assert.deepStrictEqual(yield* containerRows(database), [])
        }),
      60_000
    )

    it.scopedLive(
      "SIGKILL, then the container stops answering (paused from outside): the next gateway stops it",
      () =>
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const name = `hestia-stale-${port}`
          const { configFile, database } = setup(
            containerYaml(engine.current, {
              stale: imageService(engine.current, port, { name }, { idle_timeout_ms: 60_000 })
            })
          )
          const first = yield* startGateway(configFile)
          assert.strictEqual((yield* callJson(`${first.url}/services/stale/x`)).status, 200)
          yield* eventually(serviceState(database, "stale"), (state) => state === "hot")
          yield* killHard(first)
          yield* Effect.promise(() => engineCall(engine.current.socket, "POST", `/containers/${name}/pause`))

          const second = yield* startGateway(configFile)
          assert.strictEqual((yield* callJson(`${second.url}/v1/services/stale/status`)).json.state, "cold")
          assert.isTrue(second.lines.some((line) => line.includes('"event":"container_reclaimed"')))
          assert.strictEqual((yield* containerState(engine.current, name)).status, "exited")
          assert.deepStrictEqual(yield* containerRows(database), [])
          assert.strictEqual((yield* timeline(second.url, "stale"))[0].type, "upstream_gone")
          assert.strictEqual(yield* stopGracefully(second), 0)
        }),
      60_000
    )
  })
}
