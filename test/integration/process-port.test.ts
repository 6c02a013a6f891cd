import { existsSync } from "node:fs"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { callJson, gatewayLayer, gatewayUrl, gatewayYaml, processService, tempDir } from "../fixtures/Gateway.ts"

/** Something that is not the service, already listening where the service should, answering its health URL. */
const squatter = Effect.acquireRelease(
  Effect.async<{ port: number; hits: Array<string>; server: Http.Server }>((resume) => {
    const hits: Array<string> = []
    const server = Http.createServer((req, res) => {
      hits.push(req.url ?? "")
      res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true,"squatter":true}')
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({ port: (server.address() as AddressInfo).port, hits, server }))
    )
  }),
  ({ server }) =>
    Effect.promise(() => {
      server.closeAllConnections()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    })
)

describe("a local service whose port another process already holds", () => {
  it.live("is not started there: the attempt fails with PortInUse and no request reaches the other process", () =>
    Effect.gen(function* () {
      const other = yield* squatter
      const record = `${tempDir("hestia-port-")}/starts`
      const yaml = gatewayYaml(
        processService("svc", other.port, { extraArgs: ["--record", record], settings: { idle_timeout_ms: 0 } })
      )
      const context = yield* Layer.build(gatewayLayer(yaml))
      const base = yield* Effect.provide(gatewayUrl, context)
      const response = yield* callJson(`${base}/services/svc/hello`)
      assert.strictEqual(response.status, 503)
      assert.strictEqual(response.json.error, "StartupFailed")
      assert.deepStrictEqual(
        response.json.attempts.map((a: { error: string }) => a.error),
        ["PortInUse"]
      )
      assert.match(response.json.attempts[0].message, new RegExp(`127\\.0\\.0\\.1:${other.port}`))
      assert.deepStrictEqual(other.hits, [], "the other process saw neither a health probe nor the request")
      assert.isFalse(existsSync(record), "no process was spawned")
    }).pipe(Effect.scoped)
  )
})
