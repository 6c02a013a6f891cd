import { assert, describe, it } from "@effect/vitest"
import { BadRequest } from "../../src/domain/Errors.ts"
import { clientHeaders, parseServicePath, upstreamHeaders, upstreamPath } from "../../src/proxy/ServiceProxy.ts"

describe("ServiceProxy paths", () => {
  it("splits /services/{id}/{path}?{query} keeping path and query raw", () => {
    assert.deepStrictEqual(parseServicePath("/services/ollama/api/tags?x=%20y"), {
      serviceId: "ollama",
      path: "/api/tags",
      query: "?x=%20y"
    })
    assert.deepStrictEqual(parseServicePath("/services/ollama"), { serviceId: "ollama", path: "", query: "" })
    assert.deepStrictEqual(parseServicePath("/services/ollama?q"), { serviceId: "ollama", path: "", query: "?q" })
    assert.deepStrictEqual(parseServicePath("/services/a/b%2Fc"), { serviceId: "a", path: "/b%2Fc", query: "" })
    // Dots inside names are fine; only whole dot segments are refused.
    assert.deepStrictEqual(parseServicePath("/services/a/v1.2/..x/x..").constructor, Object)
  })

  it("refuses dot segments in every spelling, NUL bytes, bad escapes and bad ids", () => {
    for (const url of [
      "/services/a/..",
      "/services/a/../b",
      "/services/a/%2e%2e/b",
      "/services/a/%2E./b",
      "/services/a/x/%2e",
      "/services/a/x%2f..%2fy",
      "/services/a/x%5c..%5cy",
      "/services/a/x\\..\\y",
      "/services/a/%00",
      "/services/a/%e0%a4%a",
      "/services/../x",
      "/services/%2e%2e/x",
      "/services//x"
    ]) {
      assert.instanceOf(parseServicePath(url), BadRequest, url)
    }
  })

  it("builds the upstream path from the base URL's path", () => {
    const base = { origin: "http://h:1", basePath: "/api", rootPath: "/api/" }
    assert.strictEqual(upstreamPath(base, "/tags", "?a=1"), "/api/tags?a=1")
    assert.strictEqual(upstreamPath(base, "", ""), "/api/")
    assert.strictEqual(upstreamPath({ origin: "http://h:1", basePath: "", rootPath: "/" }, "", "?q"), "/?q")
  })
})

describe("ServiceProxy headers", () => {
  it("drops hop-by-hop, Host, Expect and Connection-named headers; appends X-Forwarded-For", () => {
    const out = upstreamHeaders(
      [
        "Host",
        "gw:8080",
        "Connection",
        "keep-alive, X-Secret",
        "X-Secret",
        "s",
        "Keep-Alive",
        "timeout=5",
        "Transfer-Encoding",
        "chunked",
        "Expect",
        "100-continue",
        "X-Forwarded-For",
        "10.0.0.1",
        "Accept",
        "a",
        "Accept",
        "b",
        "X-Api-Key",
        "gateway-key"
      ],
      new Set(["x-api-key"]),
      { clientIp: "127.0.0.1", proto: "http", host: "gw:8080", requestId: "r1" }
    )
    assert.deepStrictEqual(out, [
      "Accept",
      "a",
      "Accept",
      "b",
      "x-forwarded-for",
      "10.0.0.1, 127.0.0.1",
      "x-forwarded-proto",
      "http",
      "x-forwarded-host",
      "gw:8080",
      "x-request-id",
      "r1"
    ])
  })

  it("passes response headers through except hop-by-hop ones", () => {
    assert.deepStrictEqual(
      clientHeaders({
        "content-encoding": "gzip",
        "content-length": "10",
        "transfer-encoding": "chunked",
        connection: "x-internal",
        "x-internal": "1",
        "set-cookie": ["a=1", "b=2"]
      }),
      { "content-encoding": "gzip", "content-length": "10", "set-cookie": ["a=1", "b=2"] }
    )
  })
})
