import { existsSync, readFileSync } from "node:fs"
import * as Path from "node:path"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { Ollama } from "ollama"
import OpenAI from "openai"
import {
  callJson,
  eventually,
  freePort,
  gatewayLayer,
  gatewayUrl,
  gatewayYaml,
  isAlive,
  modelService,
  tempDir
} from "../fixtures/Gateway.ts"

// Two model services in one exclusive group (one GPU), driven through the model endpoints: the swap waits for the
// running model's streams, and two models asked for in turn under load are all answered.

const dir = tempDir("hestia-model-groups-")
const ports = { a: await freePort(), b: await freePort() }
const records = { a: Path.join(dir, "a.starts"), b: Path.join(dir, "b.starts") }

const yaml = `${gatewayYaml(
  modelService("a", ports.a, { serves: ["model-a"], extraArgs: ["--token-ms", "100", "--record", records.a] }) +
    modelService("b", ports.b, { serves: ["model-b"], extraArgs: ["--token-ms", "10", "--record", records.b] })
)}groups:\n  gpu: { exclusive: true, members: [a, b] }\n`

const openai = (base: string) => new OpenAI({ baseURL: `${base}/openai/v1`, apiKey: "none", maxRetries: 0 })
const ollama = (base: string) => new Ollama({ host: `${base}/ollama` })

const statusOf = (base: string, id: string) => Effect.map(callJson(`${base}/v1/services/${id}/status`), (r) => r.json)
const activity = (base: string, id: string) =>
  Effect.map(
    callJson(`${base}/v1/activity?serviceId=${id}&limit=500`),
    (r) => r.json.activity as ReadonlyArray<{ type: string; detail: any }>
  )
const starts = (file: string) =>
  existsSync(file)
    ? readFileSync(file, "utf8")
        .trim()
        .split("\n")
        .map((line) => Number(line.split(" ")[1]))
    : []

layer(gatewayLayer(yaml), { excludeTestServices: true, timeout: 90_000 })("an exclusive group of models", (it) => {
  it.effect("B while A streams: A drains, stops once its stream has ended (not before), then B starts", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const aChunks: Array<string> = []
      let aEnded = false
      const aDone = Effect.runPromise(
        Effect.promise(async () => {
          const stream = await openai(base).chat.completions.create({
            model: "model-a",
            messages: [{ role: "user", content: "a long answer" }],
            stream: true,
            max_tokens: 30
          })
          for await (const chunk of stream) aChunks.push(chunk.choices[0]?.delta?.content ?? "")
          aEnded = true
        })
      )
      yield* eventually(
        Effect.sync(() => aChunks.length),
        (n) => n > 0
      )
      const aPid = starts(records.a)[0]!
      const bDone = ollama(base).generate({ model: "model-b", prompt: "x", options: { num_predict: 2 } })
      // While A still streams: A takes no new requests and B waits for it, not yet spawned.
      const [a, b] = yield* eventually(
        Effect.all([statusOf(base, "a"), statusOf(base, "b")]),
        ([a, b]) => a.draining !== undefined && b.waitingFor === "a"
      )
      assert.isFalse(aEnded, "A's stream was still open when B started waiting")
      assert.strictEqual(a.state, "hot")
      assert.strictEqual(a.draining.by, "b")
      assert.strictEqual(b.state, "starting")
      assert.strictEqual(b.group, "gpu")
      assert.isTrue(isAlive(aPid))
      assert.deepStrictEqual(starts(records.b), [])

      yield* Effect.promise(() => aDone)
      // All 30 tokens and the final chunk: the stream was never cut.
      assert.strictEqual(aChunks.length, 31)
      assert.strictEqual(aChunks.join("").split(" token").length, 30)
      const answer = yield* Effect.promise(() => bDone)
      assert.strictEqual(answer.response, "[model-b] token1")
      assert.isFalse(isAlive(aPid))
      assert.strictEqual(starts(records.b).length, 1)
      const aRows = yield* eventually(activity(base, "a"), (rows) => rows.some((r) => r.type === "stopped"))
      const evicted = aRows.find((row) => row.type === "evicted")!
      assert.strictEqual(evicted.detail.by, "b")
      assert.strictEqual(evicted.detail.cut, 0)
      // It waited for the stream (30 tokens, 100 ms apart) to end.
      assert.isAbove(evicted.detail.waitedMs, 500)
      assert.strictEqual(aRows.find((row) => row.type === "stopped")!.detail.reason, "evicted")
      const state = yield* statusOf(base, "a")
      assert.strictEqual(state.state, "cold")
    })
  )

  it.effect("A and B asked for in turn under concurrent load: every request answered, every swap recorded", () =>
    Effect.gen(function* () {
      const base = yield* gatewayUrl
      const before = {
        ready: (yield* activity(base, "a")).concat(yield* activity(base, "b")).filter((r) => r.type === "ready").length,
        evicted: (yield* activity(base, "a")).concat(yield* activity(base, "b")).filter((r) => r.type === "evicted")
          .length
      }
      const ask = (model: "model-a" | "model-b", i: number) =>
        i % 2 === 0
          ? openai(base)
              .chat.completions.create({
                model,
                messages: [{ role: "user", content: String(i) }],
                stream: true,
                max_tokens: 3
              })
              .then(async (stream) => {
                let text = ""
                for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ""
                return text
              })
          : ollama(base)
              .chat({
                model,
                messages: [{ role: "user", content: String(i) }],
                stream: true,
                options: { num_predict: 3 }
              })
              .then(async (stream) => {
                let text = ""
                for await (const part of stream) text += part.message.content
                return text
              })
      const answers: Array<{ model: string; text: string }> = []
      for (let wave = 0; wave < 4; wave++) {
        const asked = Array.from({ length: 8 }, (_, i): "model-a" | "model-b" => (i % 2 === 0 ? "model-a" : "model-b"))
        const texts = yield* Effect.promise(() => Promise.all(asked.map((model, i) => ask(model, wave * 8 + i))))
        answers.push(...texts.map((text, i) => ({ model: asked[i]!, text })))
      }
      assert.strictEqual(answers.length, 32)
      for (const { model, text } of answers) assert.strictEqual(text, `[${model}] token1 token2`)
      // Each start after the first of the run is a swap: the other member was evicted for it.
      const rows = yield* eventually(
        Effect.map(Effect.all([activity(base, "a"), activity(base, "b")]), ([a, b]) => a.concat(b)),
        (rows) => {
          const ready = rows.filter((r) => r.type === "ready").length - before.ready
          const evicted = rows.filter((r) => r.type === "evicted").length - before.evicted
          return ready > 0 && evicted === ready
        }
      )
      const evictions = rows.filter((r) => r.type === "evicted")
      const swaps = evictions.length - before.evicted
      // Both models were asked for in every wave, so the GPU changed hands at least once per wave.
      assert.isAtLeast(swaps, 4)
      // No request was cut off to make room.
      assert.isTrue(evictions.every((r) => r.detail.cut === 0))
    })
  )
})
