import { writeFileSync } from "node:fs"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Path from "node:path"
import { assert, layer } from "@effect/vitest"
import { Context, Effect, Fiber, Layer } from "effect"
import type { BrowserContext } from "playwright-core"
import {
  browserAvailable,
  browserRequired,
  card,
  describeNotRun,
  launchBrowser,
  openPage,
  phasesOf,
  statesOf,
  tabTo,
  textOf,
  waitFor
} from "../fixtures/Browser.ts"
import { ensureBundle } from "../fixtures/Bundle.ts"
import { call, callJson, eventually, freePort, processService, tempDir } from "../fixtures/Gateway.ts"
import { type GatewayProcess, startGateway } from "../fixtures/GatewayProcess.ts"
import { plans, type SemaphoreDouble, serveDouble } from "../fixtures/SemaphoreDouble.ts"

// What the dashboard shows of the features that came after it: exclusive groups (waiting, draining, eviction,
// unload), the attempt in progress from status, the last error of an instance that died on its own, container and
// Semaphore services. The bundle, real processes, a Semaphore double over real HTTP, a real browser.

const TOKEN = "hestia-dashboard-token"

/** Answers 200 to everything: the upstream of the Semaphore service, once its start task has run. */
const alwaysUp = Effect.acquireRelease(
  Effect.promise(
    () =>
      new Promise<Http.Server>((resolve) => {
        const server = Http.createServer((_req, res) => res.end("ok"))
        server.listen(0, "127.0.0.1", () => resolve(server))
      })
  ),
  (server) =>
    Effect.promise(() => {
      server.closeAllConnections()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    })
)

const configFile = async (double: SemaphoreDouble, upPort: number) => {
  const dir = tempDir("hestia-browser-groups-")
  const idle = { idle_timeout_ms: 0 }
  const [alpha, beta, gamma, slow, crashy, box] = await Promise.all(Array.from({ length: 6 }, freePort))
  const services =
    processService("alpha", alpha!, { settings: idle }) +
    // A start long enough to be seen starting after its wait.
    processService("beta", beta!, { extraArgs: ["--boot-ms", "600"], settings: idle }) +
    processService("gamma", gamma!, { settings: idle }) +
    processService("slow", slow!, {
      extraArgs: ["--boot-ms", "3000"],
      settings: { ...idle, retry_count: 1, startup_timeout_seconds: 30 }
    }) +
    processService("crashy", crashy!, { settings: idle }) +
    `  box: ${JSON.stringify({ base_url: `http://127.0.0.1:${box}`, container: { name: "dash-box", image: "hestia-test:1" } })}\n` +
    `  llm: ${JSON.stringify({
      base_url: `http://127.0.0.1:${upPort}`,
      health_url: `http://127.0.0.1:${upPort}/health`,
      semaphore_enabled: true,
      semaphore_start_template_id: 1,
      semaphore_stop_template_id: 2,
      semaphore_poll_interval: 0.05,
      semaphore_task_timeout: 60,
      ...idle
    })}\n`
  const file = Path.join(dir, "hestia.yml")
  writeFileSync(
    file,
    [
      "server: { host: 127.0.0.1, port: 0 }",
      `database: ${JSON.stringify(Path.join(dir, "hestia.db"))}`,
      `semaphore_base_url: ${double.url}`,
      `semaphore_api_key: ${TOKEN}`,
      "semaphore_project_id: 1",
      "machines:",
      // An engine that is not there: the container service's facts come from the config.
      `  local: { host: 127.0.0.1, docker_url: ${JSON.stringify(`unix://${dir}/no-engine.sock`)} }`,
      "groups:",
      "  pair: { exclusive: true, members: [alpha, beta, gamma], persistent: [gamma] }",
      "services:",
      services
    ].join("\n")
  )
  return file
}

class Dashboard extends Context.Tag("test/GroupsDashboard")<
  Dashboard,
  { readonly gateway: GatewayProcess; readonly browser: BrowserContext; readonly double: SemaphoreDouble }
>() {}

const dashboardLayer = Layer.scoped(
  Dashboard,
  Effect.gen(function* () {
    const entry = ensureBundle()
    // The start task stays `running` until the test releases it; the stop task succeeds.
    const double = yield* serveDouble({
      token: TOKEN,
      templates: [1, 2],
      script: (task) => (task.action === "start" ? plans.hold() : plans.success())
    })
    const up = yield* alwaysUp
    const file = yield* Effect.promise(() => configFile(double, (up.address() as AddressInfo).port))
    const gateway = yield* startGateway(file, {}, entry)
    const browser = yield* launchBrowser()
    return { gateway, browser, double }
  })
)

const openDashboard = Effect.gen(function* () {
  const { gateway, browser } = yield* Dashboard
  const watched = yield* openPage(browser)
  const response = yield* Effect.promise(() => watched.page.goto(`${gateway.url}/`))
  assert.strictEqual(response?.status(), 200)
  yield* waitFor(watched.page, '#connection[data-live="true"]')
  return { ...watched, gateway }
})

const status = (base: string, id: string) =>
  Effect.map(callJson(`${base}/v1/services/${id}/status`), (response) => response.json)

/** Hot before the test goes on: `?wait=true` answers once it is. */
const startHot = (base: string, id: string) =>
  Effect.gen(function* () {
    const started = yield* call(`${base}/v1/services/${id}/start?wait=true`, { method: "POST" })
    assert.strictEqual(started.status, 200, started.text)
  })

const click = (page: import("playwright-core").Page, selector: string) =>
  Effect.promise(() => page.locator(selector).click())

if (!browserAvailable && !browserRequired) {
  describeNotRun("the dashboard's groups in a real browser")
} else {
  layer(dashboardLayer, { excludeTestServices: true, timeout: "90 seconds" })(
    "the dashboard in headless Chromium: groups, starts in progress, deaths, containers and Semaphore tasks",
    (it) => {
      it.scoped("an exclusive group shows its members together under its heading, usable at 375 px", () =>
        Effect.gen(function* () {
          const { page, errors } = yield* openDashboard
          const group = '[data-group="pair"]'
          for (const id of ["alpha", "beta", "gamma"]) yield* waitFor(page, `${group} ${card(id)}[data-state="cold"]`)
          const layout = yield* Effect.promise(() =>
            page.evaluate(`[...document.querySelectorAll("#services > li")].map((li) =>
              li.dataset.group === undefined ? li.dataset.service : "group " + li.dataset.group + ": " +
                [...li.querySelectorAll("[data-service]")].map((c) => c.dataset.service).join(","))`)
          )
          // File order, the group where its first member is.
          assert.deepStrictEqual(layout, ["group pair: alpha,beta,gamma", "slow", "crashy", "box", "llm"])
          const head = yield* textOf(page, `${group} .group-head`)
          assert.include(head, "pair")
          assert.include(head, "exclusive: one at a time")
          assert.include(head, "nothing running")
          assert.include(yield* textOf(page, `${card("gamma")} .card-head`), "persistent")
          assert.notInclude(yield* textOf(page, `${card("alpha")} .card-head`), "persistent")
          // Nothing to unload while every member is cold.
          assert.isTrue(yield* Effect.promise(() => page.locator(`${group} button.unload`).isDisabled()))

          yield* Effect.promise(() => page.setViewportSize({ width: 375, height: 800 }))
          const overflow = yield* Effect.promise(
            () =>
              page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
              ) as Promise<number>
          )
          assert.strictEqual(overflow, 0)
          for (const selector of [`${group} button.unload`, card("gamma")]) {
            const box = yield* Effect.promise(() => page.locator(selector).boundingBox())
            assert.isAtMost(box!.x + box!.width, 375, selector)
          }
          assert.deepStrictEqual(errors, [])
        })
      )

      it.scoped(
        "starting the second member while the first is hot: the first drains then stops, the second waits then starts, without a reload",
        () =>
          Effect.gen(function* () {
            const { gateway } = yield* Dashboard
            yield* startHot(gateway.url, "alpha")
            const { page, errors } = yield* openDashboard
            yield* waitFor(page, `${card("alpha")}[data-phase="hot"]`)
            yield* Effect.promise(() => page.evaluate("window.notReloaded = true"))
            // An open request: alpha drains (finishes it) before it is evicted.
            const open = yield* Effect.fork(call(`${gateway.url}/services/alpha/slow?ms=3000`))
            yield* eventually(status(gateway.url, "alpha"), (s) => s.inFlight === 1)

            yield* click(page, `${card("beta")} button[aria-label="Start beta"]`)
            yield* waitFor(page, `${card("alpha")}[data-phase="draining"]`)
            yield* waitFor(page, `${card("beta")}[data-phase="waiting"]`)
            assert.include(
              yield* textOf(page, `${card("alpha")} .progress`),
              "draining for beta: 1 open request to finish"
            )
            assert.include(yield* textOf(page, `${card("beta")} .progress`), "waiting for alpha to make room")
            assert.strictEqual(yield* textOf(page, `${card("alpha")} .state`), "draining")
            assert.strictEqual(yield* textOf(page, `${card("beta")} .state`), "waiting")
            // What the page says is what status says.
            const alpha = yield* status(gateway.url, "alpha")
            assert.strictEqual(alpha.state, "hot")
            assert.strictEqual(alpha.draining?.by, "beta")
            const beta = yield* status(gateway.url, "beta")
            assert.strictEqual(beta.state, "starting")
            assert.strictEqual(beta.waitingFor, "alpha")
            assert.include(yield* textOf(page, '[data-group="pair"] .group-summary'), "alpha draining · beta waiting")

            yield* waitFor(page, `${card("beta")}[data-phase="hot"]`, 20_000)
            yield* waitFor(page, `${card("alpha")}[data-phase="cold"]`)
            // Drained, not cut: the open request got its answer.
            assert.strictEqual((yield* Fiber.join(open)).status, 200)
            assert.deepStrictEqual((yield* phasesOf(page, "alpha")).slice(-4), ["hot", "draining", "stopping", "cold"])
            const betaPhases = yield* phasesOf(page, "beta")
            assert.strictEqual(betaPhases[0], "cold")
            assert.deepStrictEqual(betaPhases.slice(-3), ["waiting", "starting", "hot"])
            assert.match(yield* textOf(page, `${card("alpha")} .steps`), /evicted for beta after \d+\.\d s draining/)
            const steps = yield* textOf(page, `${card("beta")} .steps`)
            assert.include(steps, "start requested (api), will try local")
            assert.include(steps, "waiting for alpha to make room")
            assert.include(steps, "attempt 1/1 on local: starting")
            assert.match(steps, /ready on local after \d+\.\d s/)
            yield* waitFor(page, '#activity-list li[data-type="evicted"]')
            assert.match(yield* textOf(page, '#activity-list li[data-type="evicted"]'), /alpha.*for beta, after/)
            assert.isTrue((yield* Effect.promise(() => page.evaluate("window.notReloaded"))) === true)
            assert.deepStrictEqual(errors, [])
          }),
        60_000
      )

      it.scoped("Unload (from the keyboard) stops every member of the group", () =>
        Effect.gen(function* () {
          const { gateway } = yield* Dashboard
          // beta (which evicts alpha if it runs) and gamma, persistent, side by side.
          yield* startHot(gateway.url, "beta")
          yield* startHot(gateway.url, "gamma")
          const { page, errors } = yield* openDashboard
          yield* waitFor(page, `${card("beta")}[data-state="hot"]`)
          yield* waitFor(page, `${card("gamma")}[data-state="hot"]`)
          assert.include(yield* textOf(page, '[data-group="pair"] .group-summary'), "beta hot · gamma hot")
          yield* tabTo(page, 'button[aria-label="Unload group pair: stop every member"]')
          yield* Effect.promise(() => page.keyboard.press("Enter"))
          for (const id of ["alpha", "beta", "gamma"]) yield* waitFor(page, `${card(id)}[data-state="cold"]`)
          for (const id of ["beta", "gamma"]) {
            assert.deepStrictEqual((yield* statesOf(page, id)).slice(-3), ["hot", "stopping", "cold"], id)
            assert.strictEqual((yield* status(gateway.url, id)).state, "cold", id)
          }
          yield* waitFor(page, '[data-group="pair"] button.unload:disabled')
          assert.include(yield* textOf(page, '[data-group="pair"] .group-summary'), "nothing running")
          // The disabled button handed the keyboard focus on, inside the group.
          assert.isTrue(
            yield* Effect.promise(
              () => page.evaluate(`document.activeElement?.closest('[data-group="pair"]') !== null`) as Promise<boolean>
            )
          )
          assert.deepStrictEqual(errors, [])
        })
      )

      it.scoped("a start in progress shows its attempt and phase from status, as time passes", () =>
        Effect.gen(function* () {
          const { page, errors, gateway } = yield* openDashboard
          yield* click(page, `${card("slow")} button[aria-label="Start slow"]`)
          const progress = `${card("slow")} .progress`
          yield* waitFor(page, `${progress}:has-text("attempt 1/2 on local — probing health for")`)
          assert.deepInclude((yield* status(gateway.url, "slow")).attempt, {
            machine: "local",
            number: 1,
            of: 2,
            phase: "probing"
          })
          const seconds = (text: string) => Number(/probing health for (\d+\.\d) s/.exec(text)?.[1])
          const shown = yield* textOf(page, progress)
          const first = seconds(shown)
          assert.isAtLeast(first, 0, shown)
          // It counts on by itself (no event comes while a probe waits).
          yield* eventually(Effect.map(textOf(page, progress), seconds), (later) => later > first)
          yield* waitFor(page, `${card("slow")}[data-state="hot"]`, 20_000)
          assert.isTrue(yield* Effect.promise(() => page.locator(progress).isHidden()))
          assert.deepStrictEqual(errors, [])
        })
      )

      it.scoped("a process that dies while hot shows its lastError: the message, no attempts", () =>
        Effect.gen(function* () {
          const { gateway } = yield* Dashboard
          yield* startHot(gateway.url, "crashy")
          const { page, errors } = yield* openDashboard
          yield* waitFor(page, `${card("crashy")}[data-state="hot"]`)
          assert.strictEqual((yield* call(`${gateway.url}/services/crashy/exit?code=7`)).status, 200)
          yield* waitFor(page, `${card("crashy")}[data-state="cold"] details.error:not([hidden])`)
          const lastError = (yield* status(gateway.url, "crashy")).lastError
          assert.strictEqual(lastError.error, "ProcessExited")
          assert.deepStrictEqual(lastError.attempts, [])
          assert.include(
            yield* textOf(page, `${card("crashy")} details.error summary`),
            "Went away while hot: ProcessExited — process"
          )
          // Opened from the keyboard: the whole message, and no table of attempts.
          yield* Effect.promise(() => page.locator(`${card("crashy")} details.error summary`).focus())
          yield* Effect.promise(() => page.keyboard.press("Enter"))
          const message = `${card("crashy")} .error-message`
          assert.isTrue(yield* Effect.promise(() => page.locator(message).isVisible()))
          assert.strictEqual(yield* textOf(page, message), lastError.message)
          assert.include(lastError.message, "code 7")
          assert.isTrue(yield* Effect.promise(() => page.locator(`${card("crashy")} .attempts`).isHidden()))
          assert.include(yield* textOf(page, `${card("crashy")} .steps`), "went away: ProcessExited")
          assert.deepStrictEqual((yield* statesOf(page, "crashy")).slice(-3), ["hot", "stopping", "cold"])
          assert.deepStrictEqual(errors, [])
        })
      )

      it.scoped("a container service shows its container; a Semaphore service its task as it runs", () =>
        Effect.gen(function* () {
          const { double } = yield* Dashboard
          const { page, errors, gateway } = yield* openDashboard
          const box = card("box")
          yield* waitFor(page, `${box}[data-state="cold"]`)
          const facts = yield* textOf(page, `${box} .facts`)
          assert.include(facts, "container")
          assert.include(facts, "dash-box (not seen yet)")
          assert.include(facts, "hestia-test:1")
          // No engine answers there: each attempt says so.
          yield* click(page, `${box} button[aria-label="Start box"]`)
          yield* waitFor(page, `${box}[data-state="cold"] details.error:not([hidden])`)
          assert.include(yield* textOf(page, `${box} .attempts tbody`), "EngineUnreachable")

          const llm = card("llm")
          assert.include(yield* textOf(page, `${llm} .facts`), "Semaphore task")
          assert.include(yield* textOf(page, `${llm} .facts`), "none yet")
          yield* click(page, `${llm} button[aria-label="Start llm"]`)
          yield* waitFor(page, `${llm} .facts dd:has-text("#1 start: running")`)
          assert.strictEqual((yield* status(gateway.url, "llm")).automation.current_task.status, "running")
          double.release(1)
          yield* waitFor(page, `${llm}[data-state="hot"]`)
          yield* waitFor(page, `${llm} .facts dd:has-text("#1 start: success")`)
          assert.deepStrictEqual(errors, [])
        })
      )
    }
  )
}
