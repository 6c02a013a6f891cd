import { existsSync } from "node:fs"
import * as Path from "node:path"
import { Readable } from "node:stream"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { Ollama } from "ollama"
import OpenAI from "openai"
import { request } from "undici"
import {
  call,
  callJson,
  freePort,
  gatewayLayer,
  gatewayUrl,
  gatewayYaml,
  modelService,
  rawExchange,
  rawRequest,
  tempDir
} from "../fixtures/Gateway.ts"

// The model endpoints against the real gateway: the official `openai` and `ollama` clients at /openai/v1 and
// /ollama, real model upstreams (examples/model-upstream.mjs) started on demand, chosen by the body's model.

const KEY = "model-endpoints-test-key-0123456789"
const LIMIT = 64 * 1024
const dir = tempDir("hestia-models-")
const ports = { llama: await freePort(), coder: await freePort() }
const records = { llama: Path.join(dir, "llama.starts"), coder: Path.join(dir, "coder.starts") }

const yaml = `auth: { api_keys: ["${KEY}"] }\nmax_routing_body_bytes: ${LIMIT}\n${gatewayYaml(
  modelService("llama", ports.llama, {
    serves: ["llama3.1:8b"],
    aliases: { "gpt-4o": "llama3.1:8b" },
    extraArgs: ["--token-ms", "60", "--record", records.llama],
    settings: { body_idle_timeout_seconds: 0.5 }
  }) +
    modelService("coder", ports.coder, {
      serves: ["qwen2.5-coder:7b"],
      models: ["qwen2.5-coder:*"],
      extraArgs: ["--token-ms", "60", "--record", records.coder],
      settings: { body_idle_timeout_seconds: 0.5 }
    })
)}`

const auth = { authorization: `Bearer ${KEY}` }
const openai = (base: string) => new OpenAI({ baseURL: `${base}/openai/v1`, apiKey: KEY, maxRetries: 0 })
const ollama = (base: string) => new Ollama({ host: `${base}/ollama`, headers: auth })

interface Seen {
  readonly path: string
  readonly model: string
  readonly contentLength: number | null
  readonly bodyBytes: number
  readonly body: string
  readonly requestId: string
  readonly authorization: string | null
  readonly finishedAt: number | null
}
const seenBy = (port: number) =>
  Effect.map(callJson(`http://127.0.0.1:${port}/_seen`), (r) => r.json as ReadonlyArray<Seen>)

const status = (base: string, id: string) =>
  Effect.map(callJson(`${base}/v1/services/${id}/status`, { headers: auth }), (r) => r.json.state as string)

layer(gatewayLayer(yaml), { excludeTestServices: true, timeout: 60_000 })("model endpoints", (it) => {
  it.effect("list every model and alias from the config without starting anything", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const listed = yield* Effect.promise(() => openai(base).models.list())
      assert.deepStrictEqual(
        listed.data.map((m: any) => [m.id, m.owned_by, m.hestia]),
        [
          ["llama3.1:8b", "llama", { service: "llama", state: "cold", loaded: false }],
          ["gpt-4o", "llama", { service: "llama", state: "cold", loaded: false, alias_of: "llama3.1:8b" }]
        ]
      )
      const one = yield* Effect.promise(() => openai(base).models.retrieve("gpt-4o"))
      assert.strictEqual(one.id, "gpt-4o")
      // A model served by a glob: known when asked for, though not listed.
      const globbed = yield* Effect.promise(() => openai(base).models.retrieve("qwen2.5-coder:14b"))
      assert.strictEqual(globbed.owned_by, "coder")
      const tags = yield* Effect.promise(() => ollama(base).list())
      assert.deepStrictEqual(
        tags.models.map((m) => m.name),
        ["llama3.1:8b", "gpt-4o"]
      )
      assert.match(tags.models[0]!.digest, /^[0-9a-f]{64}$/)
      const running = yield* Effect.promise(() => ollama(base).ps())
      assert.deepStrictEqual(running.models, [])
      // Nothing was spawned: the upstreams write their record file when they start.
      assert.isFalse(existsSync(records.llama))
      assert.isFalse(existsSync(records.coder))
      assert.strictEqual(yield* status(base, "llama"), "cold")
      assert.strictEqual(yield* status(base, "coder"), "cold")
    })
  )

  it.effect("an unauthenticated client learns nothing, in each API's error format", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const list = yield* callJson(`${base}/openai/v1/models`)
      assert.strictEqual(list.status, 401)
      assert.strictEqual(list.json.error.code, "invalid_api_key")
      assert.strictEqual(list.json.error.type, "invalid_request_error")
      const chat = yield* callJson(`${base}/ollama/api/chat`, { method: "POST", body: '{"model":"llama3.1:8b"}' })
      assert.strictEqual(chat.status, 401)
      assert.deepStrictEqual(chat.json, { error: "missing API key" })
      assert.isFalse(existsSync(records.llama))
    })
  )

  it.effect("OpenAI: streams chat completions chunk by chunk from the service of the model", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const received = yield* Effect.promise(async () => {
        const stream = await openai(base).chat.completions.create({
          model: "llama3.1:8b",
          messages: [{ role: "user", content: "hello" }],
          stream: true,
          max_tokens: 6
        })
        const chunks: Array<{ at: number; content: string; model: string }> = []
        for await (const chunk of stream) {
          chunks.push({ at: Date.now(), content: chunk.choices[0]?.delta?.content ?? "", model: chunk.model })
        }
        return chunks
      })
      // Six tokens and the final chunk (finish_reason), each its own event.
      assert.strictEqual(received.length, 7)
      assert.strictEqual(received.map((c) => c.content).join(""), "[llama3.1:8b] token1 token2 token3 token4 token5")
      assert.isTrue(received.every((c) => c.model === "llama3.1:8b"))
      const seen = (yield* seenBy(ports.llama)).at(-1)!
      assert.strictEqual(seen.path, "/v1/chat/completions")
      // The first token reached the client before the upstream had sent its last one: not buffered.
      assert.isBelow(received[0]!.at, seen.finishedAt!)
      assert.isAbove(received.at(-1)!.at - received[0]!.at, 200)
      // The gateway's key stays with the gateway.
      assert.isNull(seen.authorization)
      assert.strictEqual(yield* status(base, "llama"), "hot")
    })
  )

  it.effect("Ollama: streams NDJSON line by line; a glob routes any name it matches", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const parts = yield* Effect.promise(async () => {
        const stream = await ollama(base).chat({
          model: "qwen2.5-coder:7b",
          messages: [{ role: "user", content: "hi" }],
          stream: true,
          options: { num_predict: 5 }
        })
        const out: Array<{ at: number; content: string; done: boolean; model: string }> = []
        for await (const part of stream) {
          out.push({ at: Date.now(), content: part.message.content, done: part.done, model: part.model })
        }
        return out
      })
      assert.strictEqual(parts.length, 6)
      assert.strictEqual(parts.map((p) => p.content).join(""), "[qwen2.5-coder:7b] token1 token2 token3 token4")
      assert.isTrue(parts.at(-1)!.done)
      const seen = (yield* seenBy(ports.coder)).at(-1)!
      assert.strictEqual(seen.path, "/api/chat")
      assert.isBelow(parts[0]!.at, seen.finishedAt!)
      // Not streamed: one answer; and the OpenAI API of the same service.
      const generated = yield* Effect.promise(() =>
        ollama(base).generate({ model: "qwen2.5-coder:7b", prompt: "x", options: { num_predict: 2 } })
      )
      assert.strictEqual(generated.response, "[qwen2.5-coder:7b] token1")
      const completion = yield* Effect.promise(() =>
        openai(base).completions.create({ model: "qwen2.5-coder:7b", prompt: "x", max_tokens: 2 })
      )
      assert.strictEqual(completion.choices[0]!.text, "[qwen2.5-coder:7b] token1")
      // A name the upstream does not have is still routed by the glob: the upstream's own 404 comes back.
      const missing = yield* Effect.promise(() =>
        ollama(base)
          .generate({ model: "qwen2.5-coder:99b", prompt: "x" })
          .then(
            () => undefined,
            (error: any) => error
          )
      )
      assert.strictEqual(missing.status_code, 404)
      assert.strictEqual(missing.error, "model 'qwen2.5-coder:99b' not found")
    })
  )

  it.effect("an alias is rewritten to the upstream's name, every other byte as sent, Content-Length adjusted", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const answer = yield* Effect.promise(() =>
        openai(base).chat.completions.create({
          model: "gpt-4o",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 2
        })
      )
      assert.strictEqual(answer.model, "llama3.1:8b")
      assert.strictEqual(answer.choices[0]!.message.content, "[llama3.1:8b] token1")
      // Byte for byte: odd spacing, the alias inside a string elsewhere, a chunked upload (no Content-Length).
      const body =
        '{ "messages": [{"role":"user","content":"say \\"gpt-4o\\""}],\n  "model" : "gpt-4o", "max_tokens": 1 }'
      const chunked = yield* Effect.promise(async () => {
        const response = await request(`${base}/openai/v1/chat/completions?trace=1`, {
          method: "POST",
          headers: { ...auth, "content-type": "application/json", "x-request-id": "alias-test-1" },
          body: Readable.from([Buffer.from(body.slice(0, 20)), Buffer.from(body.slice(20))])
        })
        return { status: response.statusCode, headers: response.headers, json: (await response.body.json()) as any }
      })
      assert.strictEqual(chunked.status, 200)
      assert.strictEqual(chunked.json.model, "llama3.1:8b")
      assert.strictEqual(chunked.headers["x-request-id"], "alias-test-1")
      const seen = (yield* seenBy(ports.llama)).at(-1)!
      const expected = body.replace('"model" : "gpt-4o"', '"model" : "llama3.1:8b"')
      assert.strictEqual(seen.body, expected)
      assert.strictEqual(seen.model, "llama3.1:8b")
      assert.strictEqual(seen.contentLength, Buffer.byteLength(expected))
      assert.strictEqual(seen.bodyBytes, Buffer.byteLength(expected))
      assert.strictEqual(seen.requestId, "alias-test-1")
      // A real name goes through untouched.
      const plain = '{"model":"llama3.1:8b" ,"max_tokens":1}'
      const direct = yield* call(`${base}/ollama/api/generate`, { method: "POST", headers: auth, body: plain })
      assert.strictEqual(direct.status, 200)
      const last = (yield* seenBy(ports.llama)).at(-1)!
      assert.strictEqual(last.body, plain)
      assert.strictEqual(last.contentLength, plain.length)
    })
  )

  it.effect("hot services' models are loaded: ps, and the hestia field of the OpenAI list", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const running = yield* Effect.promise(() => ollama(base).ps())
      // coder is hot too, but serves by glob only: no names to list.
      assert.deepStrictEqual(
        running.models.map((m) => m.name),
        ["llama3.1:8b", "gpt-4o"]
      )
      assert.strictEqual(String(running.models[0]!.expires_at), "0001-01-01T00:00:00Z")
      const listed = yield* Effect.promise(() => openai(base).models.list())
      assert.deepStrictEqual(
        listed.data.map((m: any) => m.hestia.loaded),
        [true, true]
      )
    })
  )

  it.effect("an unknown model is 404, a body without one 400, in each API's format, listing the known models", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const unknown = yield* Effect.promise(() =>
        openai(base)
          .chat.completions.create({ model: "gpt-5", messages: [] })
          .then(
            () => undefined,
            (error: any) => error
          )
      )
      assert.instanceOf(unknown, OpenAI.NotFoundError)
      assert.strictEqual(unknown.code, "model_not_found")
      assert.strictEqual(unknown.param, "model")
      assert.strictEqual(
        (unknown.error as { message: string }).message,
        'model "gpt-5" is not served here; known models: llama3.1:8b, gpt-4o; patterns: qwen2.5-coder:*'
      )
      const ollamaUnknown = yield* Effect.promise(() =>
        ollama(base)
          .chat({ model: "mistral", messages: [] })
          .then(
            () => undefined,
            (error: any) => error
          )
      )
      assert.strictEqual(ollamaUnknown.status_code, 404)
      assert.strictEqual(
        ollamaUnknown.error,
        'model "mistral" is not served here; known models: llama3.1:8b, gpt-4o; patterns: qwen2.5-coder:*'
      )
      const post = (path: string, body: string) => callJson(`${base}${path}`, { method: "POST", headers: auth, body })
      const malformed = yield* post("/openai/v1/chat/completions", '{"model": "llama3.1:8b",')
      assert.strictEqual(malformed.status, 400)
      assert.strictEqual(malformed.json.error.code, "invalid_model_request")
      assert.match(malformed.json.error.message, /^the request body is not JSON .*; known models: llama3\.1:8b, gpt-4o/)
      const noModel = yield* post("/ollama/api/chat", '{"messages": []}')
      assert.strictEqual(noModel.status, 400)
      assert.deepStrictEqual(Object.keys(noModel.json), ["error"])
      assert.match(noModel.json.error, /^the request body has no "model"; known models/)
      const notString = yield* post("/ollama/api/chat", '{"model": ["llama3.1:8b"]}')
      assert.strictEqual(notString.status, 400)
      const get = yield* callJson(`${base}/openai/v1/files`, { headers: auth })
      assert.strictEqual(get.status, 400)
      assert.include(get.json.error.message, "no body")
      // A path that leaves the prefix is refused before anything else.
      const port = Number(new URL(base).port)
      const dotted = yield* Effect.promise(() => rawRequest(port, "/ollama/api/%2e%2e/x", "POST", auth))
      assert.strictEqual(dotted.status, 400)
      assert.deepStrictEqual(JSON.parse(dotted.body), {
        error: "path tries to leave the service's base URL (dot segment)"
      })
    })
  )

  it.effect("a body over max_routing_body_bytes is 413 in the API's format, declared or streamed", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const big = JSON.stringify({ model: "llama3.1:8b", prompt: "x".repeat(LIMIT) })
      const declared = yield* callJson(`${base}/openai/v1/completions`, { method: "POST", headers: auth, body: big })
      assert.strictEqual(declared.status, 413)
      assert.strictEqual(declared.json.error.code, "request_too_large")
      assert.strictEqual(declared.json.error.hestia.limitBytes, LIMIT)
      const streamed = yield* Effect.promise(async () => {
        const response = await request(`${base}/ollama/api/generate`, {
          method: "POST",
          headers: auth,
          body: Readable.from(
            Array.from({ length: 4 }, (_, i) =>
              Buffer.from(big.slice((i * big.length) / 4, ((i + 1) * big.length) / 4))
            )
          )
        }).catch((error: Error) => error)
        if (response instanceof Error) return { status: 0, json: undefined }
        return { status: response.statusCode, json: (await response.body.json()) as any }
      })
      // The gateway answers and closes while the upload goes on; the client may see the answer or the reset.
      if (streamed.status !== 0) {
        assert.strictEqual(streamed.status, 413)
        assert.deepStrictEqual(streamed.json, { error: `request body is larger than the limit of ${LIMIT} bytes` })
      }
      // Exactly at the limit it goes through.
      const fits = JSON.stringify({ model: "llama3.1:8b", stream: false, prompt: "" })
      const padded = `${fits.slice(0, -1)}${" ".repeat(LIMIT - fits.length)}}`
      assert.strictEqual(padded.length, LIMIT)
      const ok = yield* call(`${base}/ollama/api/generate`, { method: "POST", headers: auth, body: padded })
      assert.strictEqual(ok.status, 200)
    })
  )

  it.effect("a body that stalls while it is read for its model is 408, the connection closed", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const port = Number(new URL(base).port)
      const answer = yield* rawExchange(
        port,
        `POST /openai/v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${KEY}\r\n` +
          'content-type: application/json\r\ncontent-length: 100\r\n\r\n{"model":"llama',
        10_000
      )
      assert.match(answer, /^HTTP\/1\.1 408 /)
      assert.match(answer, /connection: close/i)
      const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4))
      assert.strictEqual(body.error.code, "request_body_timeout")
      assert.strictEqual(body.error.hestia.idleMs, 500)
    })
  )

  it.effect("requests are counted by the service the model chose", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const metrics = yield* call(`${base}/metrics`, { headers: auth })
      assert.match(metrics.text, /hestia_requests_total\{[^}]*service="llama"[^}]*\} [1-9]/)
      assert.match(metrics.text, /hestia_requests_total\{[^}]*service="coder"[^}]*\} [1-9]/)
    })
  )
})
