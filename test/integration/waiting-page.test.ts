import { readFileSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import {
  call,
  callJson,
  eventually,
  freePort,
  gatewayLayer,
  gatewayUrl,
  gatewayYaml,
  processService,
  tempDir
} from "../fixtures/Gateway.ts"

// The waiting page over plain HTTP: who gets it and who does not (the browser suite shows it working).

const dir = tempDir("hestia-waiting-")
const record = (id: string) => {
  const file = Path.join(dir, `${id}.starts`)
  writeFileSync(file, "")
  return file
}
const records = { web: record("web"), api: record("api"), post: record("post"), plain: record("plain") }
const startsOf = (file: string) =>
  readFileSync(file, "utf8")
    .split("\n")
    .filter((line) => line.startsWith("start")).length

const service = async (id: keyof typeof records, waitingPage: boolean) =>
  processService(id, await freePort(), {
    extraArgs: ["--record", records[id], "--boot-ms", "400"],
    settings: { idle_timeout_ms: 0, ...(waitingPage ? { waiting_page: true } : {}) }
  })

const yaml = gatewayYaml(
  (await service("web", true)) +
    (await service("api", true)) +
    (await service("post", true)) +
    (await service("plain", false))
)

/** What Chromium sends for a top-level navigation. */
const NAVIGATION = {
  accept:
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
  "sec-fetch-mode": "navigate",
  "sec-fetch-dest": "document",
  "sec-fetch-site": "none",
  "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/140.0.0.0"
}

const stateOf = (base: string, id: string) =>
  Effect.map(callJson(`${base}/v1/services/${id}/status`), (r) => r.json.state as string)

const coldAgain = (base: string, id: string) =>
  Effect.gen(function* () {
    yield* call(`${base}/v1/services/${id}/stop`, { method: "POST" })
    yield* eventually(stateOf(base, id), (state) => state === "cold")
  })

layer(gatewayLayer(yaml), { excludeTestServices: true, timeout: "60 seconds" })(
  "the waiting page over HTTP, real processes",
  (it) => {
    it.effect("a browser navigation to a cold service gets the page at once, and the start is under way", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const page = yield* call(`${base}/services/web/html`, { headers: { ...NAVIGATION, "x-request-id": "nav-1" } })
        assert.strictEqual(page.status, 200)
        assert.strictEqual(page.headers["content-type"], "text/html; charset=utf-8")
        assert.strictEqual(page.headers["cache-control"], "no-store")
        assert.strictEqual(page.headers["x-request-id"], "nav-1")
        assert.match(String(page.headers["content-security-policy"]), /script-src 'sha256-[^']+'; style-src 'sha256-/)
        assert.include(page.text, "<title>Starting web…</title>")
        assert.include(page.text, '"statusUrl":"/v1/services/web/status"')
        // Served before the upstream answered anything: the process was not even listening yet.
        assert.notInclude(page.text, "upstream page")
        // Nobody else asked, yet it starts, and then the same navigation is the service's own page.
        yield* eventually(stateOf(base, "web"), (state) => state === "hot")
        assert.strictEqual(startsOf(records.web), 1)
        const real = yield* call(`${base}/services/web/html`, { headers: NAVIGATION })
        assert.strictEqual(real.status, 200)
        assert.include(real.text, "upstream page")
        assert.notStrictEqual(real.headers["cache-control"], "no-store")
        const metrics = (yield* call(`${base}/metrics`)).text
        assert.include(metrics, 'hestia_requests_total{code="2xx",service="web"} 2')
      })
    )

    it.effect("curl, fetch() and clients that accept JSON block as before and get the upstream's answer", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const clients: ReadonlyArray<[string, Record<string, string>]> = [
          ["curl", { accept: "*/*", "user-agent": "curl/8.5.0" }],
          ["no Accept", {}],
          ["fetch() from a page", { ...NAVIGATION, "sec-fetch-mode": "cors", "sec-fetch-dest": "empty" }],
          ["XMLHttpRequest", { accept: "text/html", "x-requested-with": "XMLHttpRequest" }],
          ["JSON over HTML", { accept: "application/json, text/html;q=0.9" }]
        ]
        for (const [client, headers] of clients) {
          yield* coldAgain(base, "api")
          const before = startsOf(records.api)
          const response = yield* call(`${base}/services/api/echo/x`, { headers })
          assert.strictEqual(response.status, 200, client)
          assert.strictEqual(JSON.parse(response.text).url, "/echo/x", client)
          assert.strictEqual(startsOf(records.api), before + 1, client)
        }
      })
    )

    it.effect("a POST (or a HEAD) never gets the page, even from a browser", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        const post = yield* call(`${base}/services/post/form`, {
          method: "POST",
          headers: { ...NAVIGATION, "content-type": "application/x-www-form-urlencoded" },
          body: "a=1"
        })
        assert.strictEqual(post.status, 200)
        assert.deepInclude(JSON.parse(post.text), { method: "POST", url: "/form", bodyBytes: 3 })
        yield* coldAgain(base, "post")
        const head = yield* call(`${base}/services/post/html`, { method: "HEAD", headers: NAVIGATION })
        assert.strictEqual(head.status, 200)
        assert.strictEqual(head.headers["content-type"], "text/html; charset=utf-8")
        assert.strictEqual(head.headers["cache-control"], undefined)
      })
    )

    it.effect("a service without waiting_page keeps today's behaviour for browsers too", () =>
      Effect.gen(function* () {
        const base = yield* gatewayUrl
        assert.strictEqual(yield* stateOf(base, "plain"), "cold")
        const response = yield* call(`${base}/services/plain/html`, { headers: NAVIGATION })
        assert.strictEqual(response.status, 200)
        assert.include(response.text, "upstream page")
      })
    )
  }
)
