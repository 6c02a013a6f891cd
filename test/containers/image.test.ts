import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { ensureBundle } from "../fixtures/Bundle.ts"
import { runnableEngines, useEngine } from "../fixtures/Containers.ts"
import { call, callJson, eventually, freePort } from "../fixtures/Gateway.ts"
import { engineCall } from "../fixtures/PrivateEngine.ts"
import { execIn, importRuntimeImage } from "../fixtures/RuntimeImage.ts"

// The Docker image as users run it: the Dockerfile's runtime stage reproduced on a private dockerd (see
// test/fixtures/RuntimeImage.ts; no registry here), then run with only the ports changed: tini as PID 1, the user
// `node`, the image's own config (its demo service started as a child process inside the container), the SQLite file
// on the /data volume, the dashboard's assets, the `hestia` CLI on PATH, the HEALTHCHECK, and a stop that exits 0.
// Docker only: Podman runs no HEALTHCHECKs without systemd.

const sleep = (ms: number) => Effect.promise(() => new Promise((resolve) => setTimeout(resolve, ms)))

if (runnableEngines.includes("docker")) {
  describe("the Docker image (its runtime stage reproduced on a private dockerd)", () => {
    const engine = useEngine("docker")

    it.live(
      "runs as built: healthz, a cold start inside, the dashboard, the CLI, /data owned by node, HEALTHCHECK healthy, stop → exit 0",
      () =>
        Effect.gen(function* () {
          ensureBundle()
          const socket = engine.current.socket
          const image = yield* Effect.promise(() => importRuntimeImage(socket))
          assert.include(image.changes.join("\n"), "USER node")

          const port = yield* Effect.promise(freePort)
          const demoPort = yield* Effect.promise(freePort)
          const demo = `http://127.0.0.1:${demoPort}`
          const created = yield* Effect.promise(() =>
            engineCall(socket, "POST", `/containers/create?name=hestia-image-${port}`, {
              Image: image.reference,
              // Host networking on a shared machine: the image's 0.0.0.0:8080 and demo port become free ones.
              Env: [
                "HESTIA_HOST=127.0.0.1",
                `HESTIA_PORT=${port}`,
                `DEMO_BASE_URL=${demo}`,
                `DEMO_HEALTH_URL=${demo}/health`,
                `DEMO_COMMAND=[node, examples/upstream.mjs, --port, "${demoPort}"]`
              ],
              HostConfig: { NetworkMode: "host" }
            })
          )
          assert.strictEqual(created.status, 201, created.text)
          const id = created.json.Id as string
          const inspect = () => Effect.promise(() => engineCall(socket, "GET", `/containers/${id}/json`))
          const logs = () =>
            Effect.promise(() => engineCall(socket, "GET", `/containers/${id}/logs?stdout=1&stderr=1`)).pipe(
              Effect.map((r) => r.text)
            )
          const started = yield* Effect.promise(() => engineCall(socket, "POST", `/containers/${id}/start`))
          assert.strictEqual(started.status, 204, started.text)

          const gateway = `http://127.0.0.1:${port}`
          const healthz = yield* eventually(
            callJson(`${gateway}/healthz`).pipe(Effect.catchAllCause(() => Effect.succeed(undefined))),
            (r) => r?.status === 200,
            400
          )
          assert.strictEqual(healthz?.status, 200, yield* logs())
          const config = (yield* inspect()).json.Config
          assert.deepStrictEqual(config.Entrypoint, ["/usr/bin/tini", "-s", "--"])
          assert.strictEqual(config.User, "node")

          // The image's own demo service, cold-started inside the container, answers through the gateway.
          const cold = yield* callJson(`${gateway}/services/demo/hello`)
          assert.strictEqual(cold.status, 200, cold.text)
          const status = yield* callJson(`${gateway}/v1/services/demo/status`)
          assert.strictEqual(status.json.state, "hot")

          // The dashboard and every asset it names come from the image (no CDN).
          const page = yield* call(`${gateway}/`)
          assert.strictEqual(page.status, 200)
          const assets = [...page.text.matchAll(/(?:src|href)="(\/dashboard\/[^"]+)"/g)].map((m) => m[1]!)
          assert.isAtLeast(assets.length, 2)
          for (const asset of assets) assert.strictEqual((yield* call(`${gateway}${asset}`)).status, 200, asset)

          // The CLI on PATH, as `docker compose exec hestia hestia status` runs it.
          const cli = yield* Effect.promise(() =>
            execIn(socket, id, ["hestia", "status", "--url", gateway, "--format", "json"])
          )
          assert.strictEqual(cli.exitCode, 0, cli.stderr)
          const services = JSON.parse(cli.stdout)
          assert.strictEqual(
            (Array.isArray(services) ? services : services.services).find((s: any) => s.serviceId === "demo")?.state,
            "hot"
          )
          const keys = yield* Effect.promise(() => execIn(socket, id, ["hestia", "keys", "add", "laptop"]))
          assert.strictEqual(keys.exitCode, 0, keys.stderr)
          const listed = yield* Effect.promise(() => execIn(socket, id, ["hestia", "keys", "list", "--format", "json"]))
          assert.strictEqual(listed.exitCode, 0, listed.stderr)
          assert.include(listed.stdout, "laptop")

          // SQLite on the volume, written by the unprivileged user.
          const owner = yield* Effect.promise(() =>
            execIn(socket, id, ["node", "-e", "console.log(require('fs').statSync('/data/hestia.db').uid)"])
          )
          assert.strictEqual(owner.stdout.trim(), "1000", owner.stderr)
          const mounts = (yield* inspect()).json.Mounts as Array<{ Destination: string; Type: string }>
          assert.isTrue(mounts.some((m) => m.Destination === "/data" && m.Type === "volume"))

          // The image's HEALTHCHECK turns healthy (its first check comes after the 15 s interval).
          let health = ""
          for (let i = 0; i < 60 && health !== "healthy"; i++) {
            health = (yield* inspect()).json.State.Health?.Status ?? "none"
            if (health !== "healthy") yield* sleep(1000)
          }
          assert.strictEqual(health, "healthy")

          // docker stop: SIGTERM through tini to the gateway, which stops its demo process and exits 0.
          const stopped = yield* Effect.promise(() => engineCall(socket, "POST", `/containers/${id}/stop?t=20`))
          assert.strictEqual(stopped.status, 204, stopped.text)
          const state = (yield* inspect()).json.State
          const text = yield* logs()
          assert.strictEqual(state.ExitCode, 0, text.slice(-2000))
          assert.include(text, '"event":"process_shutdown"')
          yield* Effect.promise(() => engineCall(socket, "DELETE", `/containers/${id}?v=true&force=true`))
        }),
      180_000
    )
  })
}
