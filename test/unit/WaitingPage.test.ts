import { assert, describe, it } from "@effect/vitest"
import { isBrowserNavigation, prefersHtml, qualityOf, renderWaitingPage } from "../../src/http/WaitingPage.ts"

// What Chromium, Firefox and Safari send for a top-level navigation, and what programs send.
const CHROMIUM =
  "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
const FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
const SAFARI = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

describe("qualityOf / prefersHtml", () => {
  it("takes the q of the most specific matching range", () => {
    assert.strictEqual(qualityOf(CHROMIUM, "text", "html"), 1)
    assert.strictEqual(qualityOf(CHROMIUM, "application", "json"), 0.8)
    assert.strictEqual(qualityOf("text/*;q=0.5, text/html;q=0.2", "text", "html"), 0.2)
    assert.strictEqual(qualityOf("text/*;q=0.5", "text", "html"), 0.5)
    assert.strictEqual(qualityOf("application/json", "text", "html"), 0)
    assert.strictEqual(qualityOf("text/html;q=nonsense", "text", "html"), 0)
  })

  const cases: ReadonlyArray<[string | undefined, boolean]> = [
    [CHROMIUM, true],
    [FIREFOX, true],
    [SAFARI, true],
    ["text/html", true],
    ["text/html, application/json;q=0.9", true],
    // curl, fetch(), most HTTP libraries: HTML no better than JSON.
    [undefined, false],
    ["*/*", false],
    ["application/json", false],
    ["application/json, text/html", false],
    ["application/json, text/html;q=0.9", false],
    ["text/html;q=0", false],
    ["text/event-stream", false]
  ]
  for (const [accept, expected] of cases) {
    it(`${JSON.stringify(accept)} → ${expected}`, () => assert.strictEqual(prefersHtml(accept), expected))
  }
})

describe("isBrowserNavigation", () => {
  it("a navigation, or a browser without Sec-Fetch-*; never another mode, an XHR, or another method", () => {
    assert.isTrue(isBrowserNavigation("GET", { accept: CHROMIUM, "sec-fetch-mode": "navigate" }))
    assert.isTrue(isBrowserNavigation("GET", { accept: SAFARI }))
    assert.isFalse(isBrowserNavigation("GET", { accept: CHROMIUM, "sec-fetch-mode": "cors" }))
    assert.isFalse(isBrowserNavigation("GET", { accept: CHROMIUM, "sec-fetch-mode": "no-cors" }))
    assert.isFalse(isBrowserNavigation("GET", { accept: "text/html", "x-requested-with": "XMLHttpRequest" }))
    assert.isFalse(isBrowserNavigation("GET", { accept: "*/*", "sec-fetch-mode": "navigate" }))
    for (const method of ["POST", "HEAD", "PUT", "DELETE", "OPTIONS", undefined]) {
      assert.isFalse(isBrowserNavigation(method, { accept: CHROMIUM, "sec-fetch-mode": "navigate" }), String(method))
    }
  })
})

describe("renderWaitingPage", () => {
  it("names the service and embeds its boot data where no value can close the element", () => {
    const page = renderWaitingPage(
      '<title>Starting <!--service-->…</title><h1><!--service--></h1><script type="application/json">"hestia:boot"</script>',
      "web"
    )
    assert.include(page, "<title>Starting web…</title><h1>web</h1>")
    assert.include(page, '{"serviceId":"web","statusUrl":"/v1/services/web/status","eventsUrl":"/v1/events"}')
    assert.notInclude(
      renderWaitingPage('<script type="application/json">"hestia:boot"</script>', "a</script>"),
      "a</script>"
    )
  })
})
