import { createHash, timingSafeEqual } from "node:crypto"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, TestClock } from "effect"
import { beforeEach, vi } from "vitest"
import { Auth, guardFor, hashKey, newKey, presentedKey, type RequestInfo } from "../../src/auth/Auth.ts"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import { ActivityLog } from "../../src/store/ActivityLog.ts"
import { AuthKeys } from "../../src/store/AuthKeys.ts"
import { eventually, tempDir } from "../fixtures/Gateway.ts"
import { captureLogs } from "../fixtures/Observability.ts"

// Spy on the comparison Auth uses, to show it is the constant-time one and that it never stops at the first match.
vi.mock("node:crypto", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:crypto")>()
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) }
})
const compare = vi.mocked(timingSafeEqual)
beforeEach(() => {
  compare.mockClear()
})

const KEYS = [newKey(), newKey(), newKey()]

const yaml = (auth: string) => `${auth}\nservices:\n  svc: { base_url: "http://127.0.0.1:1" }\n`
const keysYaml = `auth:
  api_keys: ${JSON.stringify(KEYS)}
  dashboard: { username: admin, password: "p4ss:word" }`

const authLayer = (text: string) =>
  Layer.mergeAll(Auth.Default, AuthKeys.Default, ActivityLog.Default).pipe(Layer.provide(HestiaConfig.layerYaml(text)))

const request = (headers: Record<string, string> = {}, url = "/v1/services", method = "GET"): RequestInfo => ({
  method,
  url,
  headers
})

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`

const deniedRows = (log: ActivityLog) =>
  Effect.map(log.activity({ limit: 1000 }), (rows) => rows.filter((r) => r.type === "auth_denied"))

describe("Auth", () => {
  it("hashes keys with SHA-256 and reads X-API-Key or Authorization: Bearer", () => {
    assert.strictEqual(hashKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert.match(newKey(), /^hk_[A-Za-z0-9_-]{43}$/)
    assert.strictEqual(presentedKey({ "x-api-key": "k1" }), "k1")
    assert.strictEqual(presentedKey({ authorization: "Bearer k2" }), "k2")
    assert.strictEqual(presentedKey({ authorization: "bearer  k3 " }), "k3")
    assert.strictEqual(presentedKey({ authorization: basic("a", "b") }), undefined)
    assert.strictEqual(presentedKey({}), undefined)
    assert.strictEqual(guardFor("GET", "/healthz"), "open")
    assert.strictEqual(guardFor("GET", "/"), "dashboard")
    assert.strictEqual(guardFor("POST", "/"), "apiKey")
    assert.strictEqual(guardFor("GET", "/services/x"), "apiKey")
    assert.strictEqual(guardFor("GET", "/metrics"), "apiKey")
  })

  it.effect("keys from the config are stored as hashes only, labelled config-N", () =>
    Effect.gen(function* () {
      const rows = yield* Effect.flatMap(AuthKeys, (store) => store.authKeys())
      assert.deepStrictEqual(
        rows.map((r) => [r.label, r.source, r.hash]),
        KEYS.map((key, i) => [`config-${i + 1}`, "config", hashKey(key)])
      )
      const stored = JSON.stringify(rows)
      for (const key of KEYS) assert.notInclude(stored, key)
      assert.isTrue((yield* Auth).enabled())
    }).pipe(Effect.provide(authLayer(yaml(keysYaml))))
  )

  it.effect("every route but /healthz needs a key; a wrong or missing one is Unauthorized (Bearer challenge)", () =>
    Effect.gen(function* () {
      const auth = yield* Auth
      assert.isUndefined(auth.check(request({}, "/healthz")))
      const missing = auth.check(request({}))
      assert.strictEqual(missing?._tag, "Unauthorized")
      assert.strictEqual(missing?.reason, "missing API key")
      assert.strictEqual(missing?.challenge, undefined)
      assert.strictEqual(auth.check(request({ "x-api-key": "nope" }))?.reason, "invalid API key")
      assert.strictEqual(
        auth.check(request({ authorization: "Bearer nope" }, "/services/svc/x"))?.reason,
        "invalid API key"
      )
      assert.isUndefined(auth.check(request({ "x-api-key": KEYS[0]! })))
      assert.isUndefined(auth.check(request({ authorization: `Bearer ${KEYS[2]!}` }, "/services/svc/x?y=1", "POST")))
      // The dashboard's credentials also open the API (the browser sends them for every path).
      assert.isUndefined(auth.check(request({ authorization: basic("admin", "p4ss:word") })))
      assert.deepStrictEqual([...auth.strip].sort(), ["authorization", "x-api-key"])
    }).pipe(Effect.provide(authLayer(yaml(keysYaml))))
  )

  it.effect("compares in constant time: every enabled key, with timingSafeEqual, whatever matched", () =>
    Effect.gen(function* () {
      const auth = yield* Auth
      compare.mockClear()
      assert.isUndefined(auth.check(request({ "x-api-key": KEYS[0]! })))
      assert.strictEqual(compare.mock.calls.length, KEYS.length)
      compare.mockClear()
      assert.isDefined(auth.check(request({ "x-api-key": "wrong" })))
      assert.strictEqual(compare.mock.calls.length, KEYS.length)
      for (const [a, b] of compare.mock.calls) {
        assert.strictEqual((a as Buffer).length, 32)
        assert.strictEqual((b as Buffer).length, 32)
      }
      // The key itself is never compared, only its digest.
      const digests = new Set(compare.mock.calls.map(([, b]) => (b as Buffer).toString("hex")))
      assert.deepStrictEqual(digests, new Set(KEYS.map(hashKey)))
      assert.strictEqual(
        (compare.mock.calls[0]![0] as Buffer).toString("hex"),
        createHash("sha256").update("wrong").digest("hex")
      )
    }).pipe(Effect.provide(authLayer(yaml(keysYaml))))
  )

  it.effect("the dashboard wants Basic credentials (Basic challenge), compared in constant time", () =>
    Effect.gen(function* () {
      const auth = yield* Auth
      const none = auth.check(request({}, "/"))
      assert.strictEqual(none?.challenge, "Basic")
      assert.strictEqual(none?.reason, "missing dashboard credentials")
      assert.strictEqual(
        auth.check(request({ authorization: basic("admin", "nope") }, "/"))?.reason,
        "wrong dashboard credentials"
      )
      // An API key is not a dashboard login.
      assert.isDefined(auth.check(request({ "x-api-key": KEYS[0]! }, "/")))
      compare.mockClear()
      assert.isUndefined(auth.check(request({ authorization: basic("admin", "p4ss:word") }, "/")))
      assert.strictEqual(compare.mock.calls.length, 1)
    }).pipe(Effect.provide(authLayer(yaml(keysYaml))))
  )

  it.effect("denials are activity rows without the key, at most 10 a second, the rest counted", () =>
    Effect.gen(function* () {
      const auth = yield* Auth
      const store = yield* ActivityLog
      const secret = "hk_this-is-a-wrong-key-that-must-not-be-recorded"
      for (let i = 0; i < 25; i++) {
        auth.check({
          ...request({ "x-api-key": secret, "x-request-id": `req-${i}` }, `/v1/services?api_key=${secret}`)
        })
      }
      const first = yield* eventually(deniedRows(store), (rows) => rows.length === 10)
      assert.deepStrictEqual(first[9]!.detail, {
        reason: "invalid API key",
        method: "GET",
        path: "/v1/services",
        remoteAddress: null
      })
      assert.strictEqual(first[9]!.requestId, "req-0")
      assert.notInclude(JSON.stringify(first), secret)
      yield* TestClock.adjust("1 second")
      auth.check(request({}, "/services/svc/x"))
      const next = yield* eventually(deniedRows(store), (rows) => rows.length === 11)
      assert.deepStrictEqual(next[0]!.detail, {
        reason: "missing API key",
        method: "GET",
        path: "/services/svc/x",
        remoteAddress: null,
        suppressed: 15
      })
    }).pipe(Effect.provide(authLayer(yaml(keysYaml))))
  )

  it.effect("last use is written in batches, and keys disabled with the CLI stop working within seconds", () =>
    Effect.gen(function* () {
      const auth = yield* Auth
      const store = yield* AuthKeys
      assert.isUndefined(auth.check(request({ "x-api-key": KEYS[1]! })))
      assert.isNull((yield* store.authKeys())[1]!.lastUsedAt)
      yield* store.disableKey("config-2")
      // Still in memory until the next maintenance, which a request after 5 s starts.
      assert.isUndefined(auth.check(request({ "x-api-key": KEYS[1]! })))
      yield* TestClock.adjust("5 seconds")
      auth.check(request({ "x-api-key": KEYS[0]! }))
      yield* eventually(
        Effect.sync(() => auth.check(request({ "x-api-key": KEYS[1]! }))),
        (denied) => denied !== undefined
      )
      yield* eventually(store.authKeys(), (rows) => rows[1]!.lastUsedAt === 0)
    }).pipe(Effect.provide(authLayer(yaml(keysYaml))))
  )

  it.effect("off without keys: everything open, nothing stripped; the dashboard still wants its credentials", () =>
    Effect.gen(function* () {
      const auth = yield* Auth
      assert.isFalse(auth.enabled())
      assert.isUndefined(auth.check(request({})))
      assert.isUndefined(auth.check(request({}, "/services/svc/x")))
      assert.strictEqual(auth.strip.size, 0)
      assert.strictEqual(auth.check(request({}, "/"))?.challenge, "Basic")
    }).pipe(Effect.provide(authLayer(yaml(`auth:\n  dashboard: { username: admin, password: pw }`))))
  )

  it.effect("forward_authorization: Authorization goes upstream, X-API-Key never does", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual([...(yield* Auth).strip], ["x-api-key"])
    }).pipe(Effect.provide(authLayer(yaml(`auth:\n  api_keys: ["${KEYS[0]}"]\n  forward_authorization: true`))))
  )

  it.effect("a key added with the CLI turns auth on; disabling every key keeps it on (locked, not open)", () =>
    Effect.gen(function* () {
      const store = yield* AuthKeys
      const key = newKey()
      yield* store.addKey("laptop", hashKey(key))
      yield* store.disableKey("laptop")
      const auth = yield* Effect.provide(Auth, Auth.DefaultWithoutDependencies)
      assert.isTrue(auth.enabled())
      assert.strictEqual(auth.check(request({ "x-api-key": key }))?.reason, "invalid API key")
    }).pipe(
      Effect.provide(Layer.mergeAll(AuthKeys.Default, ActivityLog.Default)),
      Effect.provide(HestiaConfig.layerYaml(yaml("")))
    )
  )
})

describe("Auth's background work belongs to its scope", () => {
  it.effect("a stop awaits the denials made just before it, then writes last use; after it nothing more runs", () =>
    Effect.gen(function* () {
      const database = Path.join(tempDir(), "hestia.db")
      const text = `database: ${JSON.stringify(database)}\n${yaml(keysYaml)}`
      const lines: Array<string> = []
      const auth = yield* Effect.scoped(
        Effect.gen(function* () {
          const auth = Context.get(yield* Layer.build(authLayer(text)), Auth)
          assert.isUndefined(auth.check(request({ "x-api-key": KEYS[0]! })))
          for (let i = 0; i < 10; i++) assert.isDefined(auth.check(request({ "x-request-id": `stop-${i}` })))
          return auth
        })
      ).pipe(Effect.provide(captureLogs(lines)))
      const deniedLines = () => lines.filter((line) => line.includes('"event":"auth_denied"')).length
      assert.strictEqual(deniedLines(), 10)
      // A late request reaching a stopped Auth: refused, but no fiber starts on the closed database.
      yield* TestClock.adjust("1 second")
      assert.isDefined(auth.check(request({ "x-request-id": "late" })))
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 50)))
      assert.strictEqual(deniedLines(), 10)
      assert.isFalse(lines.some((line) => line.includes('"level":"error"') || line.includes('"requestId":"late"')))

      const after = yield* Effect.gen(function* () {
        const log = yield* ActivityLog
        return {
          denied: yield* deniedRows(log),
          keys: yield* Effect.flatMap(AuthKeys, (keys) => keys.authKeys())
        }
      }).pipe(Effect.provide(authLayer(text)))
      assert.deepStrictEqual(
        after.denied.map((row) => row.requestId).sort(),
        Array.from({ length: 10 }, (_, i) => `stop-${i}`).sort()
      )
      assert.strictEqual(after.keys[0]!.lastUsedAt, 0)
    })
  )
})
