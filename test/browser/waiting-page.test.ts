import { readFileSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { assert, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import type { BrowserContext, Page } from "playwright-core"
import {
  browserAvailable,
  browserRequired,
  describeNotRun,
  launchBrowser,
  openPage,
  waitFor
} from "../fixtures/Browser.ts"
import { ensureBundle } from "../fixtures/Bundle.ts"
import { call, callJson, eventually, freePort, processService, tempDir } from "../fixtures/Gateway.ts"
import { type GatewayProcess, startGateway } from "../fixtures/GatewayProcess.ts"

// The waiting page as users get it: the bundle (its page in dist/dashboard/), real processes, a real browser.

const PASSWORD = "a waiting page password"
const KEY = "hk_waiting_page_test_key_0123456789"

const startsOf = (file: string) =>
  readFileSync(file, "utf8")
    .split("\n")
    .filter((line) => line.startsWith("start")).length

const configFile = async (extra = "") => {
  const dir = tempDir("hestia-waiting-browser-")
  const brokenStarts = Path.join(dir, "broken.starts")
  writeFileSync(brokenStarts, "")
  const services =
    processService("web", await freePort(), {
      // Long enough a boot that the page is on screen for a while.
      extraArgs: ["--boot-ms", "1500"],
      settings: { idle_timeout_ms: 0, waiting_page: true }
    }) +
    processService("broken", await freePort(), {
      extraArgs: ["--exit-code", "3", "--record", brokenStarts],
      settings: { retry_count: 1, retry_delay_ms: 100, waiting_page: true }
    })
  const file = Path.join(dir, "hestia.yml")
  writeFileSync(
    file,
    `server: { host: 127.0.0.1, port: 0 }\ndatabase: ${JSON.stringify(Path.join(dir, "hestia.db"))}\n${extra}services:\n${services}`
  )
  return { file, brokenStarts }
}

class Waiting extends Context.Tag("test/Waiting")<
  Waiting,
  { readonly gateway: GatewayProcess; readonly browser: BrowserContext; readonly brokenStarts: string }
>() {}

const waitingLayer = (extra = "", credentials?: { username: string; password: string }) =>
  Layer.scoped(
    Waiting,
    Effect.gen(function* () {
      const entry = ensureBundle()
      const { file, brokenStarts } = yield* Effect.promise(() => configFile(extra))
      const gateway = yield* startGateway(file, {}, entry)
      const browser = yield* launchBrowser(credentials === undefined ? {} : { httpCredentials: credentials })
      return { gateway, browser, brokenStarts }
    })
  )

const text = (page: Page, selector: string) =>
  Effect.promise(async () => (await page.locator(selector).first().textContent()) ?? "")

/**
 * The page's errors but the 404 of `/favicon.ico` (the gateway has none; a browser asks for it at the origin's
 * root): every other failed load, CSP violation or script error counts.
 */
const pageErrors = (page: Page, errors: ReadonlyArray<string>) => {
  const notFound: Array<string> = []
  page.on("response", (response) => {
    if (response.status() === 404) notFound.push(new URL(response.url()).pathname)
  })
  return () => [
    ...notFound.filter((path) => path !== "/favicon.ico").map((path) => `404 ${path}`),
    ...errors.filter((error) => !/status of 404/.test(error))
  ]
}

/** A navigation as a person makes it; the first answer, whatever follows. */
const navigate = (page: Page, url: string) =>
  Effect.promise(async () => {
    const response = await page.goto(url)
    return { status: response?.status(), headers: response?.headers() ?? {} }
  })

if (!browserAvailable && !browserRequired) {
  describeNotRun("the waiting page in a real browser")
} else {
  layer(waitingLayer(), { excludeTestServices: true, timeout: "90 seconds" })(
    "the waiting page in headless Chromium, against the bundle and real processes",
    (it) => {
      it.scoped(
        "a navigation to a cold service shows the waiting page, live, then turns into the service's own page",
        () =>
          Effect.gen(function* () {
            const { gateway, browser } = yield* Waiting
            const { page, errors } = yield* openPage(browser)
            const problems = pageErrors(page, errors)
            const first = yield* navigate(page, `${gateway.url}/services/web/html`)
            assert.strictEqual(first.status, 200)
            assert.strictEqual(first.headers["cache-control"], "no-store")
            assert.strictEqual(yield* text(page, "h1"), "Starting web…")
            // Live progress from the events, while the process boots.
            yield* waitFor(page, '#steps li:has-text("Attempt 1 on local")')
            // Then the reload: the upstream's own page, at the same address.
            yield* waitFor(page, "h1#upstream", 30_000)
            assert.match(yield* text(page, "h1#upstream"), /^upstream page \d+$/)
            assert.strictEqual(page.url(), `${gateway.url}/services/web/html`)
            const status = yield* callJson(`${gateway.url}/v1/services/web/status`)
            assert.strictEqual(status.json.state, "hot")
            // No CSP violation, no script error.
            assert.deepStrictEqual(problems(), [])
          }),
        60_000
      )

      it.scoped("a failed start shows its error and attempts; Retry starts it again", () =>
        Effect.gen(function* () {
          const { gateway, browser, brokenStarts } = yield* Waiting
          const { page, errors } = yield* openPage(browser)
          const problems = pageErrors(page, errors)
          assert.strictEqual((yield* navigate(page, `${gateway.url}/services/broken/`)).status, 200)
          yield* waitFor(page, '#waiting[data-state="failed"]', 30_000)
          assert.include(yield* text(page, "#error"), "StartupFailed")
          const attempts = yield* Effect.promise(() => page.locator("#attempts li").allTextContents())
          assert.strictEqual(attempts.length, 2)
          for (const attempt of attempts) assert.include(attempt, "ProcessExited")
          assert.strictEqual(startsOf(brokenStarts), 2)
          assert.isTrue(yield* Effect.promise(() => page.locator("#retry").isVisible()))

          // Retry reloads: the navigation asks for a new start, the new page follows it to its end.
          yield* Effect.promise(() => Promise.all([page.waitForEvent("load"), page.locator("#retry").click()]))
          yield* waitFor(page, '#steps li:has-text("Attempt 1 on local")', 30_000)
          yield* waitFor(page, '#waiting[data-state="failed"]', 30_000)
          yield* eventually(
            Effect.sync(() => startsOf(brokenStarts)),
            (starts) => starts === 4
          )
          assert.deepStrictEqual(problems(), [])
        })
      )

      it.scoped("a hot service is never held up: the navigation is the service's page at once", () =>
        Effect.gen(function* () {
          const { gateway, browser } = yield* Waiting
          yield* call(`${gateway.url}/services/web/health`)
          const { page } = yield* openPage(browser)
          const first = yield* navigate(page, `${gateway.url}/services/web/html`)
          assert.strictEqual(first.status, 200)
          assert.notStrictEqual(first.headers["cache-control"], "no-store")
          assert.match(yield* text(page, "h1"), /^upstream page/)
        })
      )
    }
  )

  layer(
    waitingLayer(
      `auth:\n  api_keys: [${JSON.stringify(KEY)}]\n  dashboard: { username: admin, password: ${JSON.stringify(PASSWORD)} }\n`,
      { username: "admin", password: PASSWORD }
    ),
    { excludeTestServices: true, timeout: "90 seconds" }
  )("the waiting page with auth on", (it) => {
    it.scoped(
      "after the dashboard login: the page, its live stream and status calls pass auth; a websocket from the page too",
      () =>
        Effect.gen(function* () {
          const { gateway, browser } = yield* Waiting
          // Without credentials the service's URL is refused, and nothing starts.
          assert.strictEqual((yield* call(`${gateway.url}/services/web/html`)).status, 401)
          const { page, errors } = yield* openPage(browser)
          const problems = pageErrors(page, errors)
          assert.strictEqual((yield* navigate(page, `${gateway.url}/`)).status, 200)
          assert.strictEqual((yield* navigate(page, `${gateway.url}/services/web/html`)).status, 200)
          assert.strictEqual(yield* text(page, "h1"), "Starting web…")
          yield* waitFor(page, '#steps li:has-text("Attempt 1 on local")')
          yield* waitFor(page, "h1#upstream", 30_000)
          // The browser repeats its login on a websocket's handshake: the page talks to the service live.
          const echoed = yield* Effect.promise(() =>
            page.evaluate(`new Promise((resolve, reject) => {
              const ws = new WebSocket(location.origin.replace("http", "ws") + "/services/web/ws")
              ws.onopen = () => ws.send("from the page")
              ws.onmessage = (event) => { resolve(event.data); ws.close() }
              ws.onerror = () => reject(new Error("websocket failed"))
            })`)
          )
          assert.strictEqual(echoed, "from the page")
          assert.deepStrictEqual(problems(), [])
        }),
      60_000
    )
  })
}
