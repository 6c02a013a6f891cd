import { writeFileSync } from "node:fs"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import {
  browserAvailable,
  browserRequired,
  card,
  describeNotRun,
  launchBrowser,
  openPage,
  statesOf,
  textOf,
  waitFor
} from "../fixtures/Browser.ts"
import { ensureBundle } from "../fixtures/Bundle.ts"
import {
  containerState,
  containerYaml,
  existingContainer,
  imageService,
  runnableEngines,
  useEngine
} from "../fixtures/Containers.ts"
import { call, callJson, freePort, tempDir } from "../fixtures/Gateway.ts"
import { startGateway } from "../fixtures/GatewayProcess.ts"

// The dashboard's container services on a private engine, in a real browser, against the bundle: a service
// discovered from labels (its badge), the container as status sees it, and a container that exits while hot
// (ContainerExited: exit code and last output lines). One engine is enough for what a page shows: the first this
// machine can run (vitest.config.ts leaves test/containers/ out when there is none).

const kind = runnableEngines[0]!

if (!browserAvailable && !browserRequired) {
  describeNotRun("the dashboard's container services in a real browser")
} else {
  describe(`the dashboard's container services on ${kind} (private engine), in headless Chromium`, () => {
    const engine = useEngine(kind)

    it.scopedLive(
      "a labelled container has its badge and its container; one that exits while hot shows its exit and last lines",
      () =>
        Effect.gen(function* () {
          const [labelledPort, madePort] = yield* Effect.promise(() => Promise.all([freePort(), freePort()]))
          const name = `dash-labelled-${labelledPort}`
          yield* existingContainer(engine.current, name, labelledPort, {
            labels: {
              "hestia.service": "labelled",
              "hestia.port": String(labelledPort),
              "hestia.health_path": "/health"
            }
          })
          const made = `hestia-dash-made-${madePort}`
          const dir = tempDir("hestia-containers-dashboard-")
          const configFile = Path.join(dir, "hestia.yml")
          const yaml = containerYaml(engine.current, {
            made: imageService(engine.current, madePort, { name: made }, { idle_timeout_ms: 0 })
          }).replace(
            `docker_url: ${JSON.stringify(engine.current.url)} }`,
            `docker_url: ${JSON.stringify(engine.current.url)}, container_discovery: true }`
          )
          writeFileSync(configFile, `database: ${JSON.stringify(Path.join(dir, "hestia.db"))}\n${yaml}`)
          const gateway = yield* startGateway(configFile, {}, ensureBundle())
          const browser = yield* launchBrowser()
          const { page, errors } = yield* openPage(browser)
          yield* Effect.promise(() => page.goto(`${gateway.url}/`))
          yield* waitFor(page, '#connection[data-live="true"]')

          const labelled = card("labelled")
          yield* waitFor(page, `${labelled}[data-state="cold"]`)
          assert.include(yield* textOf(page, `${labelled} .card-head`), "from labels")
          assert.notInclude(yield* textOf(page, `${card("made")} .card-head`), "from labels")
          assert.include(yield* textOf(page, `${labelled} .facts`), `${name} (not seen yet)`)
          assert.include(yield* textOf(page, `${labelled} .facts`), "container")

          yield* Effect.promise(() => page.locator(`${labelled} button[aria-label="Start labelled"]`).click())
          yield* waitFor(page, `${labelled}[data-state="hot"]`, 30_000)
          yield* waitFor(page, `${labelled} .facts dd:has-text("${name} (running)")`)
          assert.include(yield* textOf(page, `${labelled} .facts`), engine.current.image)
          // An existing container: Hestia did not create it.
          assert.isTrue(
            yield* Effect.promise(() => page.locator(`${labelled} .badge:has-text("created by Hestia")`).isHidden())
          )

          const marker = `last-words-${labelledPort}`
          assert.strictEqual((yield* call(`${gateway.url}/services/labelled/print?text=${marker}`)).status, 200)
          assert.strictEqual((yield* call(`${gateway.url}/services/labelled/exit?code=5`)).status, 200)
          yield* waitFor(page, `${labelled}[data-state="cold"] details.error:not([hidden])`, 30_000)
          const lastError = (yield* callJson(`${gateway.url}/v1/services/labelled/status`)).json.lastError
          assert.strictEqual(lastError.error, "ContainerExited")
          assert.include(
            yield* textOf(page, `${labelled} details.error summary`),
            `Went away while hot: ContainerExited — container "${name}" exited (code 5)`
          )
          yield* Effect.promise(() => page.locator(`${labelled} details.error summary`).click())
          const message = yield* textOf(page, `${labelled} .error-message`)
          assert.strictEqual(message, lastError.message)
          assert.include(message, marker)
          assert.include(message, "exiting with code 5, as asked")
          assert.deepStrictEqual((yield* statesOf(page, "labelled")).slice(-3), ["hot", "stopping", "cold"])
          assert.strictEqual((yield* containerState(engine.current, name)).status, "exited")
          yield* waitFor(page, `${labelled} .facts dd:has-text("${name} (exited)")`)

          // A container Hestia creates from its image says so.
          const started = yield* call(`${gateway.url}/v1/services/made/start?wait=true`, { method: "POST" })
          assert.strictEqual(started.status, 200, started.text)
          yield* waitFor(page, `${card("made")} .badge:has-text("created by Hestia")`)
          yield* waitFor(page, `${card("made")} .facts dd:has-text("${made} (running)")`)
          assert.deepStrictEqual(errors, [])
        }),
      120_000
    )
  })
}
