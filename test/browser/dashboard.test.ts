import { mkdirSync, statSync, writeFileSync } from "node:fs"
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
  statesOf,
  tabTo,
  textOf,
  waitFor
} from "../fixtures/Browser.ts"
import { ensureBundle } from "../fixtures/Bundle.ts"
import { call, callJson, eventually, freePort, processService, repoRoot, tempDir } from "../fixtures/Gateway.ts"
import { type GatewayProcess, startGateway, stopGracefully } from "../fixtures/GatewayProcess.ts"

// The dashboard as users get it: the bundle (`dist/main.mjs` and `dist/dashboard/`), real processes, a real browser.

const PASSWORD = "a dashboard password"

const configFile = async (extra = "") => {
  const dir = tempDir("hestia-browser-")
  const [web, broken, chat, embed] = await Promise.all([freePort(), freePort(), freePort(), freePort()])
  const services =
    // An exclusive group first: the README's picture shows it swapping its members.
    processService("chat", chat, { settings: { idle_timeout_ms: 0 } }) +
    processService("embed", embed, { extraArgs: ["--boot-ms", "600"], settings: { idle_timeout_ms: 0 } }) +
    processService("web", web, {
      // Long enough a boot that "starting" is on screen for a while.
      extraArgs: ["--boot-ms", "700"],
      settings: { idle_timeout_ms: 0, stop_grace_ms: 3000 }
    }) +
    processService("broken", broken, {
      extraArgs: ["--exit-code", "3"],
      settings: { retry_count: 1, retry_delay_ms: 100 }
    }) +
    `  remote: { base_url: "http://127.0.0.1:${await freePort()}", idle_timeout_ms: 120000 }\n`
  const file = Path.join(dir, "hestia.yml")
  writeFileSync(
    file,
    `server: { host: 127.0.0.1, port: 0 }\ndatabase: ${JSON.stringify(Path.join(dir, "hestia.db"))}\n${extra}` +
      `groups:\n  gpu: { exclusive: true, members: [chat, embed] }\nservices:\n${services}`
  )
  return file
}

class Dashboard extends Context.Tag("test/Dashboard")<
  Dashboard,
  { readonly gateway: GatewayProcess; readonly browser: BrowserContext; readonly configFile: string }
>() {}

const dashboardLayer = (extra = "", credentials?: { username: string; password: string }) =>
  Layer.scoped(
    Dashboard,
    Effect.gen(function* () {
      const entry = ensureBundle()
      const file = yield* Effect.promise(() => configFile(extra))
      const gateway = yield* startGateway(file, {}, entry)
      const browser = yield* launchBrowser(credentials === undefined ? {} : { httpCredentials: credentials })
      return { gateway, browser, configFile: file }
    })
  )

/** The page, loaded and live (its event stream connected). */
const openDashboard = (path = "/") =>
  Effect.gen(function* () {
    const { gateway, browser } = yield* Dashboard
    const watched = yield* openPage(browser)
    const response = yield* Effect.promise(() => watched.page.goto(`${gateway.url}${path}`))
    assert.strictEqual(response?.status(), 200)
    yield* waitFor(watched.page, '#connection[data-live="true"]')
    return { ...watched, gateway }
  })

const text = textOf

const stateOf = (base: string, id: string) =>
  Effect.map(callJson(`${base}/v1/services/${id}/status`), (response) => response.json.state as string)

if (!browserAvailable && !browserRequired) {
  describeNotRun("the dashboard in a real browser")
} else {
  layer(dashboardLayer(), { excludeTestServices: true, timeout: "90 seconds" })(
    "the dashboard in headless Chromium, against the bundle and real processes",
    (it) => {
      it.scoped(
        "lists every configured service with its kind and state, live, with the auth-disabled warning",
        () =>
          Effect.gen(function* () {
            const { page, errors } = yield* openDashboard()
            for (const id of ["web", "broken", "remote"]) yield* waitFor(page, `${card(id)}[data-state="cold"]`)
            assert.deepStrictEqual(
              yield* Effect.promise(() =>
                page.evaluate(`[...document.querySelectorAll("[data-service]")].map((c) => c.dataset.service)`)
              ),
              ["chat", "embed", "web", "broken", "remote"]
            )
            assert.strictEqual(
              yield* Effect.promise(() => page.locator('[data-group="gpu"] [data-service]').count()),
              2
            )
            assert.include(yield* text(page, card("web")), "process")
            assert.include(yield* text(page, card("remote")), "external")
            assert.include(yield* text(page, `${card("web")} .state`), "cold")
            assert.strictEqual(yield* text(page, "#connection"), "live")
            assert.include(yield* text(page, ".warning"), "authentication is disabled")
            assert.deepStrictEqual(errors, [])
          }),
        60_000
      )

      it.scoped(
        "Start (reached with Tab, pressed with Enter) shows starting → hot and the start's steps, without a reload",
        () =>
          Effect.gen(function* () {
            const { page, errors, gateway } = yield* openDashboard()
            yield* waitFor(page, `${card("web")}[data-state="cold"]`)
            yield* Effect.promise(() => page.evaluate("window.notReloaded = true"))
            yield* tabTo(page, `${card("web")} button[aria-label="Start web"]`)
            yield* Effect.promise(() => page.keyboard.press("Enter"))
            yield* waitFor(page, `${card("web")}[data-state="starting"]`)
            yield* waitFor(page, `${card("web")} .steps li:has-text("attempt 1/1 on local: starting")`)
            yield* waitFor(page, `${card("web")}[data-state="hot"]`)
            const states = yield* statesOf(page, "web")
            assert.deepStrictEqual(states.slice(-3), ["cold", "starting", "hot"])
            const steps = yield* text(page, `${card("web")} .steps`)
            assert.include(steps, "start requested (api), will try local")
            assert.match(steps, /ready on local after \d+\.\d s/)
            assert.include(yield* text(page, card("web")), "local")
            assert.isTrue((yield* Effect.promise(() => page.evaluate("window.notReloaded"))) === true)
            assert.strictEqual(yield* stateOf(gateway.url, "web"), "hot")
            assert.deepStrictEqual(errors, [])
          }),
        60_000
      )

      it.scoped("the log panel shows a line the upstream printed, as it is printed", () =>
        Effect.gen(function* () {
          const { page, errors, gateway } = yield* openDashboard()
          yield* call(`${gateway.url}/v1/services/web/start`, { method: "POST" })
          yield* waitFor(page, `${card("web")}[data-state="hot"]`)
          yield* Effect.promise(() => page.locator(`${card("web")} button:has-text("Logs")`).click())
          assert.strictEqual(yield* Effect.promise(() => page.locator("#logs-service").inputValue()), "web")
          yield* waitFor(page, '#logs-output span:has-text("upstream listening on 127.0.0.1:")')
          const marker = `printed-by-the-upstream-${process.pid}`
          const printed = yield* call(`${gateway.url}/services/web/print?text=${marker}&stream=stderr`)
          assert.strictEqual(printed.status, 200)
          yield* waitFor(page, `#logs-output span.stderr:has-text("${marker}")`)

          // A hidden tab lets go of its streams (a browser has 6 connections per host) and catches up when shown.
          const setVisibility = (state: string) =>
            Effect.promise(() =>
              page.evaluate(`Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "${state}" });
                document.dispatchEvent(new Event("visibilitychange"))`)
            )
          yield* setVisibility("hidden")
          yield* call(`${gateway.url}/services/web/print?text=while-hidden`)
          yield* eventually(
            Effect.map(callJson(`${gateway.url}/v1/services/web/logs?tail=1`), (r) => r.json.lines[0]?.line),
            (line) => line === "while-hidden"
          )
          // Given time to arrive, it does not: nothing follows the log while the tab is hidden.
          yield* Effect.sleep("500 millis")
          assert.strictEqual(
            yield* Effect.promise(() => page.locator('#logs-output span:has-text("while-hidden")').count()),
            0
          )
          yield* setVisibility("visible")
          yield* waitFor(page, '#logs-output span:has-text("while-hidden")')
          yield* waitFor(page, '#connection[data-live="true"]')
          assert.deepStrictEqual(errors, [])
        })
      )

      it.scoped("Stop shows stopping → cold; the activity timeline has the whole story", () =>
        Effect.gen(function* () {
          const { page, errors, gateway } = yield* openDashboard()
          yield* call(`${gateway.url}/v1/services/web/start`, { method: "POST" })
          yield* waitFor(page, `${card("web")}[data-state="hot"]`)
          yield* Effect.promise(() => page.locator(`${card("web")} button[aria-label="Stop web"]`).click())
          yield* waitFor(page, `${card("web")}[data-state="cold"]`)
          assert.deepStrictEqual((yield* statesOf(page, "web")).slice(-3), ["hot", "stopping", "cold"])
          yield* waitFor(page, '#activity-list li[data-type="stopped"]')
          const timeline = yield* text(page, "#activity-list")
          for (const type of ["stopped", "ready", "attempt_started", "start_requested"]) assert.include(timeline, type)
          assert.deepStrictEqual(errors, [])
        })
      )

      it.scoped(
        "a failed start shows each attempt; the timeline filters by service and pages",
        () =>
          Effect.gen(function* () {
            const { page, errors, gateway } = yield* openDashboard()
            yield* Effect.promise(() => page.locator(`${card("broken")} button[aria-label="Start broken"]`).click())
            yield* waitFor(page, `${card("broken")} details.error:not([hidden])`)
            assert.deepStrictEqual((yield* statesOf(page, "broken")).slice(-3), ["cold", "starting", "cold"])
            const steps = yield* text(page, `${card("broken")} .steps`)
            assert.include(steps, "attempt 1/2 on local failed: ProcessExited")
            assert.include(steps, "start failed after 2 attempt(s)")
            // The error opens from the keyboard: every attempt, its machine and error.
            yield* Effect.promise(() => page.locator(`${card("broken")} details.error summary`).focus())
            yield* Effect.promise(() => page.keyboard.press("Enter"))
            const rows = yield* Effect.promise(() =>
              page.evaluate(
                `[...document.querySelectorAll('${card("broken")} .attempts tbody tr')].map((r) => [...r.cells].map((c) => c.textContent))`
              )
            )
            assert.strictEqual((rows as Array<Array<string>>).length, 2)
            for (const [i, row] of (rows as Array<Array<string>>).entries()) {
              assert.deepStrictEqual(row.slice(0, 3), [String(i + 1), "local", "ProcessExited"])
              assert.match(row[3]!, /exited during start \(code 3/)
            }
            assert.isTrue(yield* Effect.promise(() => page.locator(`${card("broken")} .attempts`).isVisible()))

            // Three more failed starts: 4 × 6 rows, more than one page of 20.
            for (let i = 0; i < 3; i++) {
              yield* call(`${gateway.url}/v1/services/broken/start`, { method: "POST" })
              yield* eventually(
                Effect.map(
                  callJson(`${gateway.url}/v1/activity?serviceId=broken&limit=1`),
                  (r) => r.json.activity[0]?.type
                ),
                (type) => type === "start_failed"
              )
            }
            yield* Effect.promise(() => page.locator("#activity-service").selectOption("broken"))
            yield* waitFor(page, '#activity-page:has-text("page 1")')
            yield* eventually(
              Effect.promise(() => page.locator("#activity-list li").count()),
              (n) => n === 20
            )
            const services = (yield* Effect.promise(() =>
              page.locator("#activity-list li span:nth-child(2)").allInnerTexts()
            )) as Array<string>
            assert.isTrue(services.every((s) => s === "broken"))
            yield* Effect.promise(() => page.locator("#activity-older").click())
            yield* waitFor(page, '#activity-page:has-text("page 2")')
            yield* eventually(
              Effect.promise(() => page.locator("#activity-list li").count()),
              (n) => n === 4
            )
            assert.isFalse(yield* Effect.promise(() => page.locator("#activity-newer").isDisabled()))
            assert.isTrue(yield* Effect.promise(() => page.locator("#activity-older").isDisabled()))
            yield* Effect.promise(() => page.locator("#activity-newer").click())
            yield* waitFor(page, '#activity-page:has-text("page 1")')
            assert.deepStrictEqual(errors, [])
          }),
        90_000
      )

      it.scoped("usable at 375 px wide: nothing wider than the screen; a screenshot of the whole page", () =>
        Effect.gen(function* () {
          const { page, errors, gateway } = yield* openDashboard()
          // A hot service with some traffic, and the failed one, for the picture.
          yield* call(`${gateway.url}/services/web/hello`)
          for (let i = 0; i < 5; i++) yield* call(`${gateway.url}/services/web/print?text=request+${i}`)
          for (let i = 0; i < 40; i++) yield* call(`${gateway.url}/services/web/hello`)
          // The requests/s chart draws them within its refresh (5 s) once a second of them has passed.
          yield* waitFor(page, `${card("web")} .chart polyline`, 20_000)
          yield* waitFor(page, `${card("web")}[data-state="hot"]`)
          yield* call(`${gateway.url}/v1/services/broken/start`, { method: "POST" })
          yield* waitFor(page, `${card("broken")}[data-state="cold"] details.error:not([hidden])`)
          yield* Effect.promise(() => page.locator(`${card("broken")} details.error summary`).click())
          yield* Effect.promise(() => page.locator("#logs-service").selectOption("web"))
          yield* waitFor(page, '#logs-output span:has-text("request 4")')
          // The group swapping its members: chat finishing an open request for embed, which waits for it.
          assert.strictEqual(
            (yield* call(`${gateway.url}/v1/services/chat/start?wait=true`, { method: "POST" })).status,
            200
          )
          const open = yield* Effect.fork(call(`${gateway.url}/services/chat/slow?ms=4000`))
          yield* eventually(
            Effect.map(callJson(`${gateway.url}/v1/services/chat/status`), (r) => r.json.inFlight),
            (n) => n === 1
          )
          yield* call(`${gateway.url}/v1/services/embed/start`, { method: "POST" })
          yield* waitFor(page, `${card("chat")}[data-phase="draining"]`)
          yield* waitFor(page, `${card("embed")}[data-phase="waiting"]`)
          const dir = tempDir("hestia-screenshots-")
          const wide = Path.join(dir, "dashboard.png")
          yield* Effect.promise(() => page.screenshot({ path: wide, fullPage: true }))
          assert.isAbove(statSync(wide).size, 10_000)
          // HESTIA_SCREENSHOT=1 npx vitest run test/browser: refresh the README's picture from this run.
          if (process.env.HESTIA_SCREENSHOT === "1") {
            mkdirSync(Path.join(repoRoot, "docs"), { recursive: true })
            yield* Effect.promise(() =>
              page.screenshot({
                path: Path.join(repoRoot, "docs/dashboard.png"),
                fullPage: true,
                clip: { x: 0, y: 0, width: 1200, height: 1240 }
              })
            )
          }
          assert.strictEqual((yield* Fiber.join(open)).status, 200)
          yield* waitFor(page, `${card("embed")}[data-state="hot"]`)

          yield* Effect.promise(() => page.setViewportSize({ width: 375, height: 800 }))
          const overflow = yield* Effect.promise(
            () =>
              page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
              ) as Promise<number>
          )
          assert.strictEqual(overflow, 0)
          const box = yield* Effect.promise(() => page.locator(card("web")).boundingBox())
          assert.isAtMost(box!.x + box!.width, 375)
          yield* Effect.promise(() => page.screenshot({ path: Path.join(dir, "dashboard-375.png"), fullPage: true }))
          assert.deepStrictEqual(errors, [])
        })
      )
    }
  )

  layer(dashboardLayer(), { excludeTestServices: true, timeout: "90 seconds" })(
    "the dashboard across a gateway restart",
    (it) => {
      it.scoped(
        "says reconnecting… while the gateway is away, and is live again by itself when it is back",
        () =>
          Effect.gen(function* () {
            const { page, errors, gateway } = yield* openDashboard()
            const { configFile } = yield* Dashboard
            assert.strictEqual(yield* stopGracefully(gateway), 0)
            yield* waitFor(page, '#connection[data-live="false"]:has-text("reconnecting…")')
            // The same config on the same port, as a restart does.
            const again = yield* startGateway(configFile, { HESTIA_PORT: new URL(gateway.url).port }, ensureBundle())
            assert.strictEqual(again.url, gateway.url)
            yield* waitFor(page, '#connection[data-live="true"]:has-text("live")', 30_000)
            yield* waitFor(page, `${card("web")}[data-state="cold"]`)
            // Live for real: a start from outside appears on the page.
            yield* call(`${again.url}/v1/services/web/start`, { method: "POST" })
            yield* waitFor(page, `${card("web")}[data-state="hot"]`)
            assert.deepStrictEqual(
              errors.filter((e) => !/ERR_CONNECTION_REFUSED|Failed to load resource/.test(e)),
              []
            )
          }),
        90_000
      )
    }
  )

  layer(
    dashboardLayer(
      `auth:\n  api_keys: ["hk_browser_test_key_0123456789"]\n  dashboard: { username: admin, password: ${JSON.stringify(PASSWORD)} }\n`,
      {
        username: "admin",
        password: PASSWORD
      }
    ),
    { excludeTestServices: true, timeout: "90 seconds" }
  )("the dashboard with auth on", (it) => {
    it.scoped("needs the dashboard password; after the login the live stream and the buttons work", () =>
      Effect.gen(function* () {
        const { gateway } = yield* Dashboard
        // Without the login (another browser): the gateway asks for Basic credentials, and the page never loads.
        const plain = yield* call(`${gateway.url}/`)
        assert.strictEqual(plain.status, 401)
        assert.strictEqual(plain.headers["www-authenticate"], 'Basic realm="hestia"')
        for (const credentials of [undefined, { username: "admin", password: "wrong" }]) {
          const stranger = yield* launchBrowser(credentials === undefined ? {} : { httpCredentials: credentials })
          const outcome = yield* Effect.promise(async () => {
            const page = await stranger.newPage()
            try {
              const response = await page.goto(`${gateway.url}/`)
              return `HTTP ${response?.status()}, ${await page.locator("[data-service]").count()} card(s)`
            } catch (error) {
              return String(error)
            }
          })
          // Chromium answers a challenge it has no (right) credentials for with this error, or shows the 401.
          assert.match(outcome, /ERR_INVALID_AUTH_CREDENTIALS|HTTP 401, 0 card/)
        }

        const { page, errors } = yield* openDashboard()
        assert.isFalse(yield* Effect.promise(() => page.locator(".warning").isVisible()))
        yield* Effect.promise(() => page.locator(`${card("web")} button[aria-label="Start web"]`).click())
        yield* waitFor(page, `${card("web")}[data-state="starting"]`)
        yield* waitFor(page, `${card("web")}[data-state="hot"]`)
        assert.deepStrictEqual((yield* statesOf(page, "web")).slice(-3), ["cold", "starting", "hot"])
        // The log stream, behind the same login.
        yield* Effect.promise(() => page.locator("#logs-service").selectOption("web"))
        yield* waitFor(page, '#logs-output span:has-text("upstream listening on")')
        assert.deepStrictEqual(errors, [])
      })
    )
  })
}
