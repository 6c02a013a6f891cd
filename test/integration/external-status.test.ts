import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { callJson, eventually, freePort, gatewayLayer, gatewayUrl, gatewayYaml } from "../fixtures/Gateway.ts"

/** An always-on service the gateway does not start: it answers its health URL. */
const running = Effect.acquireRelease(
  Effect.async<{ port: number; server: Http.Server }>((resume) => {
    const server = Http.createServer((_req, res) => res.writeHead(200, { "content-type": "text/plain" }).end("ok"))
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({ port: (server.address() as AddressInfo).port, server }))
    )
  }),
  ({ server }) =>
    Effect.promise(() => {
      server.closeAllConnections()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    })
)

describe("status of an external service (nothing to start)", () => {
  it.live("is hot once its health URL answers, found by a status read before any request; a dead one stays cold", () =>
    Effect.gen(function* () {
      const up = yield* running
      const down = yield* Effect.promise(freePort)
      const external = (port: number) =>
        JSON.stringify({
          base_url: `http://127.0.0.1:${port}`,
          health_url: `http://127.0.0.1:${port}/health`,
          idle_timeout_ms: 0
        })
      const yaml = gatewayYaml(`  up: ${external(up.port)}\n  down: ${external(down)}\n`)
      const context = yield* Layer.build(gatewayLayer(yaml))
      const base = yield* Effect.provide(gatewayUrl, context)
      const status = (id: string) => Effect.map(callJson(`${base}/v1/services/${id}/status`), (r) => r.json)
      const hot = yield* eventually(status("up"), (s) => s.state === "hot", 20)
      assert.strictEqual(hot.machineId, "local")
      const activity = yield* callJson(`${base}/v1/activity?serviceId=up`)
      assert.isTrue(activity.json.activity.some((row: { type: string }) => row.type === "adopted"))
      assert.deepStrictEqual(
        activity.json.activity.filter((row: { type: string }) => row.type === "start_requested"),
        [],
        "found running, not started"
      )
      for (let i = 0; i < 3; i++) assert.strictEqual((yield* status("down")).state, "cold")
    }).pipe(Effect.scoped)
  )
})
