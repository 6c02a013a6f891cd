import { assert, describe, it } from "@effect/vitest"
import { BadRequest } from "../../src/domain/Errors.ts"
import {
  clientHeaders,
  hasDuplicateHost,
  invalidHeader,
  parseServicePath,
  upstreamHeaders,
  upstreamPath
} from "../../src/proxy/ForwardingRules.ts"

describe("ForwardingRules paths", () => {
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

describe("ForwardingRules headers", () => {
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

  it("passes response headers through except hop-by-hop ones, and sets X-Request-ID", () => {
    const raw = [
      "Content-Encoding",
      "gzip",
      "Content-Length",
      "10",
      "Transfer-Encoding",
      "chunked",
      "Connection",
      "x-internal",
      "X-Internal",
      "1",
      "Set-Cookie",
      "a=1",
      "Set-Cookie",
      "b=2",
      "X-Request-ID",
      "upstream-id"
    ].map((text) => Buffer.from(text, "latin1"))
    assert.deepStrictEqual(clientHeaders(raw, "r1"), [
      "Content-Encoding",
      "gzip",
      "Content-Length",
      "10",
      "Set-Cookie",
      "a=1",
      "Set-Cookie",
      "b=2",
      "x-request-id",
      "r1"
    ])
    // The dispatcher reports the upstream's own headers: its X-Request-ID stays.
    assert.deepStrictEqual(clientHeaders(raw.slice(-2)), ["X-Request-ID", "upstream-id"])
  })
})

describe("ForwardingRules: what issue 9 found", () => {
  it("refuses a segment that is a dot segment once its ;parameters are removed (servlet upstreams)", () => {
    for (const url of [
      "/services/a/..;/x",
      "/services/a/..;a=b/x",
      "/services/a/%2e%2e;/x",
      "/services/a/.%2E;jsessionid=1/x",
      "/services/a/x/..;",
      "/services/a/.;/x",
      "/services/a/x%2f..;%2fy"
    ]) {
      assert.instanceOf(parseServicePath(url), BadRequest, url)
    }
    // Parameters on an ordinary segment, or dots that are part of a name, stay allowed.
    assert.deepStrictEqual(parseServicePath("/services/a/x;v=1/..y;"), {
      serviceId: "a",
      path: "/x;v=1/..y;",
      query: ""
    })
  })

  it("replaces a client's X-Real-IP and extends its Forwarded with this hop, like X-Forwarded-For", () => {
    const out = upstreamHeaders(
      ["X-Real-IP", "6.6.6.6", "Forwarded", "for=6.6.6.6;proto=https", "Accept", "a"],
      new Set(),
      { clientIp: "127.0.0.1", proto: "http", host: "gw:8080", requestId: "r1" }
    )
    assert.deepStrictEqual(out, [
      "Accept",
      "a",
      "x-forwarded-for",
      "127.0.0.1",
      "x-forwarded-proto",
      "http",
      "x-forwarded-host",
      "gw:8080",
      "x-request-id",
      "r1",
      "x-real-ip",
      "127.0.0.1",
      "forwarded",
      'for=6.6.6.6;proto=https, for=127.0.0.1;host="gw:8080";proto=http'
    ])
    // Without a client address (the dispatcher) a spoofed X-Real-IP is dropped, not kept.
    const dispatched = upstreamHeaders(["x-real-ip", "6.6.6.6"], new Set(), {
      clientIp: undefined,
      proto: "http",
      host: undefined,
      requestId: "r2"
    })
    assert.deepStrictEqual(dispatched, ["x-forwarded-proto", "http", "x-request-id", "r2"])
  })

  it("names a dispatcher header that cannot be sent: CR/LF/NUL in a value, a name that is not a token", () => {
    assert.isUndefined(invalidHeader("x-ok", "a\tb c"))
    assert.match(invalidHeader("x-bad", "a\r\nInjected: 1") ?? "", /"x-bad".*control character/)
    assert.match(invalidHeader("x-nul", "a\0b") ?? "", /"x-nul"/)
    assert.match(invalidHeader("bad name", "v") ?? "", /not a valid HTTP token/)
    assert.match(invalidHeader("x:y", "v") ?? "", /not a valid HTTP token/)
  })

  it("tells a request with two Host headers (any case) from one with a single Host", () => {
    assert.isTrue(hasDuplicateHost(["Host", "a", "Accept", "x", "host", "b"]))
    assert.isFalse(hasDuplicateHost(["Host", "a", "X-Host", "b", "Accept", "x"]))
    assert.isFalse(hasDuplicateHost([]))
  })
})
