import { readFileSync } from "node:fs"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as E from "../../src/domain/Errors.ts"
import { type GatewayError, HttpErrors, isGatewayError, toErrorResponse } from "../../src/domain/HttpErrors.ts"
import { repoRoot } from "../fixtures/Gateway.ts"

const attempt = { machine: "local", attempt: 1, error: "ProcessExited", message: "process 1 exited" }

/** One of each error of the table, with every optional field set where it has one. */
const samples: { readonly [Tag in GatewayError["_tag"]]: Extract<GatewayError, { _tag: Tag }> } = {
  UnknownService: new E.UnknownService({ serviceId: "svc" }),
  UnknownGroup: new E.UnknownGroup({ group: "gpu" }),
  ConfigInvalid: new E.ConfigInvalid({ problem: "services.api.base_url: is missing" }),
  Unauthorized: new E.Unauthorized({ reason: "missing API key", challenge: "Basic" }),
  QueueFull: new E.QueueFull({ serviceId: "svc", capacity: 3 }),
  QueueTimeout: new E.QueueTimeout({
    serviceId: "svc",
    waitedMs: 50,
    attempts: [attempt],
    attempt: { machine: "local", number: 2, of: 3, phase: "probing", since: "2026-01-01T00:00:00.000Z" }
  }),
  StartupFailed: new E.StartupFailed({ serviceId: "svc", attempts: [attempt] }),
  UpstreamUnavailable: new E.UpstreamUnavailable({ serviceId: "svc", reason: "ECONNREFUSED" }),
  UpstreamTimeout: new E.UpstreamTimeout({ serviceId: "svc", timeoutMs: 10 }),
  UpstreamPoolFull: new E.UpstreamPoolFull({ serviceId: "svc", connections: 256, waitedMs: 5000 }),
  NoHealthyInstance: new E.NoHealthyInstance({ serviceId: "svc", instances: 3 }),
  ServiceBusy: new E.ServiceBusy({ serviceId: "svc", limit: 2, waitedMs: 5000 }),
  RequestBodyTooLarge: new E.RequestBodyTooLarge({ limitBytes: 10 }),
  UpstreamBodyTooLarge: new E.UpstreamBodyTooLarge({ serviceId: "svc", limitBytes: 10 }),
  RequestBodyTimeout: new E.RequestBodyTimeout({ serviceId: "svc", idleMs: 30_000 }),
  TooManySubscribers: new E.TooManySubscribers({ limit: 256 }),
  BadRequest: new E.BadRequest({ reason: 'unknown parameter "x"' }),
  TooManyFollowers: new E.TooManyFollowers({ serviceId: "svc", limit: 16 }),
  UnknownModel: new E.UnknownModel({ model: "gpt-5", known: { names: ["llama3.1:8b"], more: 0, patterns: ["qwen*"] } }),
  InvalidModelRequest: new E.InvalidModelRequest({
    reason: "the body has no string model",
    known: { names: [], more: 0, patterns: [] }
  }),
  GatewayStopping: new E.GatewayStopping(),
  NotFound: new E.NotFound({ method: "GET", url: "/nope" }),
  InternalError: new E.InternalError()
}

describe("HttpErrors: the one table from typed error to HTTP answer", () => {
  it("each body is `{error, message, ...}`; the client's decoding gives back the error, and it encodes the same", () => {
    for (const error of Object.values(samples)) {
      const { body } = toErrorResponse(error)
      assert.strictEqual(body.error, error._tag)
      assert.strictEqual(body.message, error.message)
      assert.deepStrictEqual(Object.keys(body).slice(0, 2), ["error", "message"])
      const decoded = Schema.decodeUnknownSync(HttpErrors[error._tag].schema as Schema.Schema<any, any>)(
        JSON.parse(JSON.stringify(body))
      )
      assert.isTrue(isGatewayError(decoded), error._tag)
      assert.strictEqual(decoded._tag, error._tag)
      assert.strictEqual(decoded.message, error.message)
      assert.deepStrictEqual(toErrorResponse(decoded).body, body)
    }
  })

  it("headers: Retry-After on the waits, WWW-Authenticate with the challenge, Connection: close on cut uploads", () => {
    assert.deepStrictEqual(toErrorResponse(samples.Unauthorized).headers, {
      "www-authenticate": 'Basic realm="hestia"'
    })
    assert.deepStrictEqual(toErrorResponse(new E.Unauthorized({ reason: "x" })).headers, {
      "www-authenticate": 'Bearer realm="hestia"'
    })
    assert.strictEqual(toErrorResponse(samples.ServiceBusy).headers["retry-after"], "1")
    assert.strictEqual(toErrorResponse(samples.StartupFailed).headers["retry-after"], "5")
    assert.strictEqual(toErrorResponse(samples.RequestBodyTooLarge).headers.connection, "close")
    assert.deepStrictEqual(toErrorResponse(samples.UnknownService).headers, {})
  })

  it("isGatewayError knows the table's errors by tag and class, nothing else", () => {
    assert.isTrue(isGatewayError(samples.QueueFull))
    assert.isFalse(isGatewayError({ _tag: "QueueFull", serviceId: "svc", capacity: 1 }))
    assert.isFalse(isGatewayError(new E.SpawnFailed({ serviceId: "svc", command: "x", reason: "y" })))
    assert.isFalse(isGatewayError(undefined))
  })

  it("README's errors table says the status of every error in the table, and the same one", () => {
    const readme = readFileSync(Path.join(repoRoot, "README.md"), "utf8")
    const section = readme.slice(readme.indexOf("Errors are JSON"), readme.indexOf("## Remote machines"))
    const documented = Object.fromEntries(
      [...section.matchAll(/^\| `(\w+)`[^|]*\| (\d{3}) \|/gm)].map((row) => [row[1]!, Number(row[2])])
    )
    assert.deepStrictEqual(
      documented,
      Object.fromEntries(Object.entries(HttpErrors).map(([tag, entry]) => [tag, entry.status]))
    )
  })
})
