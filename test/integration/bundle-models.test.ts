import { readFileSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Ollama } from "ollama"
import OpenAI from "openai"
import { ensureBundle } from "../fixtures/Bundle.ts"
import { callJson, eventually, freePort, repoRoot, tempDir } from "../fixtures/Gateway.ts"
import { startGateway, stopGracefully } from "../fixtures/GatewayProcess.ts"

/** The README's llama-swap-style config, as printed there (only its ports changed, so that runs do not collide). */
const readmeConfig = () => {
  const readme = readFileSync(Path.join(repoRoot, "README.md"), "utf8")
  const block = /```yaml\n(# models\.yml: two models, one GPU[\s\S]*?)```/.exec(readme)
  if (block === null) throw new Error("README.md has no `# models.yml: two models, one GPU` yaml block")
  return block[1]!
}

// `npm start` runs the esbuild bundle: the model endpoints and the README's setup, checked on that artifact.
describe("the README's two models on one GPU, through the bundle (dist/main.mjs)", () => {
  it.live(
    "both clients at one address: lists without a start, the alias, the swap, ps",
    () =>
      Effect.gen(function* () {
        const entry = ensureBundle()
        const dir = tempDir("hestia-bundle-models-")
        const [llamaPort, coderPort] = [yield* Effect.promise(freePort), yield* Effect.promise(freePort)]
        const config = Path.join(dir, "models.yml")
        writeFileSync(
          config,
          readmeConfig().replaceAll("9811", String(llamaPort)).replaceAll("9812", String(coderPort))
        )
        const gateway = yield* startGateway(
          config,
          { HESTIA_PORT: "0", HESTIA_DATABASE: Path.join(dir, "hestia.db") },
          entry
        )
        const openai = new OpenAI({ baseURL: `${gateway.url}/openai/v1`, apiKey: "unused", maxRetries: 0 })
        const ollama = new Ollama({ host: `${gateway.url}/ollama` })

        const listed = yield* Effect.promise(() => openai.models.list())
        assert.deepStrictEqual(
          listed.data.map((m: any) => [m.id, m.hestia.service, m.hestia.state]),
          [
            ["llama3.1:8b", "llama", "cold"],
            ["gpt-4o-mini", "llama", "cold"],
            ["qwen2.5-coder:7b", "coder", "cold"]
          ]
        )

        const chunks = yield* Effect.promise(async () => {
          const stream = await openai.chat.completions.create({
            model: "gpt-4o-mini",
            stream: true,
            messages: [{ role: "user", content: "hi" }]
          })
          const out: Array<{ model: string; content: string }> = []
          for await (const chunk of stream)
            out.push({ model: chunk.model, content: chunk.choices[0]?.delta?.content ?? "" })
          return out
        })
        assert.isAbove(chunks.length, 2)
        assert.isTrue(chunks.every((c) => c.model === "llama3.1:8b"))
        assert.match(chunks.map((c) => c.content).join(""), /^\[llama3\.1:8b\] token1/)

        const parts = yield* Effect.promise(async () => {
          const stream = await ollama.chat({
            model: "qwen2.5-coder:7b",
            stream: true,
            messages: [{ role: "user", content: "hi" }]
          })
          const out: Array<string> = []
          for await (const part of stream) out.push(part.message.content)
          return out
        })
        assert.isAbove(parts.length, 2)
        assert.match(parts.join(""), /^\[qwen2\.5-coder:7b\] token1/)

        const running = yield* Effect.promise(() => ollama.ps())
        assert.deepStrictEqual(
          running.models.map((m) => m.name),
          ["qwen2.5-coder:7b"]
        )
        const rows = yield* eventually(
          Effect.map(callJson(`${gateway.url}/v1/activity?serviceId=llama&limit=10`), (r) => r.json.activity as any[]),
          (activity) => activity.some((row) => row.type === "stopped")
        )
        const evicted = rows.find((row) => row.type === "evicted")
        assert.strictEqual(evicted.detail.by, "coder")
        assert.strictEqual(evicted.detail.cut, 0)
        assert.strictEqual(rows.find((row) => row.type === "stopped").detail.reason, "evicted")

        assert.strictEqual(yield* stopGracefully(gateway), 0)
      }).pipe(Effect.scoped),
    120_000
  )
})
