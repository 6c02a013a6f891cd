import { writeFileSync } from "node:fs"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { GATEWAY_SECRETS } from "../../src/orchestrators/Process.ts"
import { callJson, freePort, gatewayYaml, processService, tempDir } from "../fixtures/Gateway.ts"
import { startGateway } from "../fixtures/GatewayProcess.ts"

const KEY = "env-test-key-0123456789abcdef"

describe("what a service's process inherits (the real gateway process)", () => {
  it.live(
    "the gateway's own secrets stay out of a child's environment; the service's env: and the rest go in",
    () =>
      Effect.gen(function* () {
        const dir = tempDir("hestia-env-")
        const [plain, explicit] = [yield* Effect.promise(freePort), yield* Effect.promise(freePort)]
        const config = Path.join(dir, "hestia.yml")
        writeFileSync(
          config,
          gatewayYaml(
            processService("plain", plain) +
              processService("explicit", explicit, {
                settings: { env: { SEMAPHORE_API_KEY: "given on purpose", MODE: "demo" } }
              })
          )
        )
        const secrets = Object.fromEntries(GATEWAY_SECRETS.map((name) => [name, `secret-${name}`]))
        const gateway = yield* startGateway(config, {
          HESTIA_DATABASE: Path.join(dir, "hestia.db"),
          ...secrets,
          HESTIA_API_KEYS: KEY,
          HESTIA_TEST_MARKER: "inherited"
        })
        const names = (id: string) =>
          Effect.map(
            callJson(`${gateway.url}/services/${id}/_env`, { headers: { authorization: `Bearer ${KEY}` } }),
            (response) => {
              assert.strictEqual(response.status, 200)
              return response.json.names as ReadonlyArray<string>
            }
          )
        const inPlain = yield* names("plain")
        for (const secret of GATEWAY_SECRETS) assert.notInclude(inPlain, secret)
        assert.include(inPlain, "HESTIA_TEST_MARKER")
        assert.include(inPlain, "PATH")
        const inExplicit = yield* names("explicit")
        assert.include(inExplicit, "SEMAPHORE_API_KEY")
        assert.include(inExplicit, "MODE")
        assert.notInclude(inExplicit, "HESTIA_API_KEYS")
      }).pipe(Effect.scoped),
    60_000
  )
})
