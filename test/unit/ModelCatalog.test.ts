import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { parse } from "../../src/config/HestiaConfig.ts"
import { knownModels, MAX_MODEL_NAME, type ModelClaims, makeCatalog } from "../../src/domain/ModelCatalog.ts"

const service = (id: string, models: Array<string>, modelAliases: Record<string, string> = {}): ModelClaims => ({
  id,
  models,
  modelAliases
})

const catalogOf = (...services: Array<ModelClaims>) => {
  const made = makeCatalog(services)
  if (Either.isLeft(made)) throw new Error(`unexpected conflict: ${made.left.path}: ${made.left.problem}`)
  return made.right
}

const conflictOf = (...services: Array<ModelClaims>) => {
  const made = makeCatalog(services)
  assert.isTrue(Either.isLeft(made), "expected a conflict")
  return (made as Either.Left<any, any>).left as { path: string; problem: string }
}

describe("ModelCatalog", () => {
  it("routes exact names, aliases (rewritten) and globs to their service", () => {
    const catalog = catalogOf(
      service("llama", ["llama3.1:8b"], { "gpt-4o": "llama3.1:8b" }),
      service("coder", ["qwen2.5-coder:*"])
    )
    assert.deepStrictEqual(catalog.resolve("llama3.1:8b"), {
      serviceId: "llama",
      upstreamModel: "llama3.1:8b",
      via: "exact"
    })
    assert.deepStrictEqual(catalog.resolve("gpt-4o"), {
      serviceId: "llama",
      upstreamModel: "llama3.1:8b",
      via: "alias"
    })
    assert.deepStrictEqual(catalog.resolve("qwen2.5-coder:7b"), {
      serviceId: "coder",
      upstreamModel: "qwen2.5-coder:7b",
      via: "glob"
    })
    assert.isUndefined(catalog.resolve("qwen2.5:7b"))
    assert.isUndefined(catalog.resolve("llama3.1"))
    assert.isUndefined(catalog.resolve(""))
  })

  it("lists exact names and aliases, not globs", () => {
    const catalog = catalogOf(service("llama", ["llama3.1:8b"], { "gpt-4o": "llama3.1:8b" }), service("coder", ["q:*"]))
    assert.deepStrictEqual(catalog.listed, [
      { name: "llama3.1:8b", serviceId: "llama", aliasOf: undefined },
      { name: "gpt-4o", serviceId: "llama", aliasOf: "llama3.1:8b" }
    ])
    assert.deepStrictEqual(catalog.patterns, [{ pattern: "q:*", serviceId: "coder" }])
    assert.isFalse(catalog.isEmpty)
    assert.isTrue(catalogOf(service("plain", [])).isEmpty)
  })

  it("an exact name wins over another service's glob; the longer glob over the shorter; then file order", () => {
    const catalog = catalogOf(
      service("fallback", ["*"]),
      service("qwen", ["qwen*"]),
      service("coder", ["qwen2.5-coder:*"]),
      service("pinned", ["qwen2.5-coder:32b"]),
      service("first", ["x*y"]),
      service("second", ["xy*"])
    )
    assert.strictEqual(catalog.resolve("qwen2.5-coder:32b")?.serviceId, "pinned")
    assert.strictEqual(catalog.resolve("qwen2.5-coder:7b")?.serviceId, "coder")
    assert.strictEqual(catalog.resolve("qwen3:4b")?.serviceId, "qwen")
    assert.strictEqual(catalog.resolve("mistral")?.serviceId, "fallback")
    // Two globs of two literal characters: the service first in the file.
    assert.strictEqual(catalog.resolve("xyy")?.serviceId, "first")
    assert.deepStrictEqual(
      catalog.patterns.map((p) => p.pattern),
      ["qwen2.5-coder:*", "qwen*", "x*y", "xy*", "*"]
    )
  })

  it("a glob's other characters are literal, and `*` spans any run (colons and slashes too)", () => {
    const catalog = catalogOf(service("a", ["hf.co/*/llama-3.2-1b:Q4_K_M", "m(1)+?"]))
    assert.strictEqual(catalog.resolve("hf.co/bartowski/llama-3.2-1b:Q4_K_M")?.serviceId, "a")
    assert.isUndefined(catalog.resolve("hfxco/bartowski/llama-3.2-1b:Q4_K_M"))
    assert.strictEqual(catalog.resolve("m(1)+?")?.serviceId, "a")
    assert.isUndefined(catalog.resolve("m1"))
  })

  it("never looks up names longer than the bound", () => {
    const catalog = catalogOf(service("all", ["*"]))
    assert.strictEqual(catalog.resolve("a".repeat(MAX_MODEL_NAME))?.serviceId, "all")
    assert.isUndefined(catalog.resolve("a".repeat(MAX_MODEL_NAME + 1)))
  })

  it("refuses a name or glob claimed by two services, naming both", () => {
    const twice = conflictOf(service("a", ["m1", "llama3.1:8b"]), service("b", ["llama3.1:8b"]))
    assert.strictEqual(twice.path, "services.b.models.0")
    assert.include(twice.problem, '"llama3.1:8b" is claimed by service "a" too (services.a.models.1)')
    const alias = conflictOf(service("a", ["gpt-4o"]), service("b", ["x"], { "gpt-4o": "x" }))
    assert.strictEqual(alias.path, "services.b.model_aliases.gpt-4o")
    assert.include(alias.problem, 'service "a"')
    const glob = conflictOf(service("a", ["q*"]), service("b", ["q*"]))
    assert.strictEqual(glob.path, "services.b.models.0")
    assert.include(glob.problem, '"q*" is claimed by service "a" too (services.a.models.0)')
  })

  it("refuses an alias that is one of its own service's names, or a glob", () => {
    const own = conflictOf(service("a", ["m"], { m: "n" }))
    assert.strictEqual(own.path, "services.a.model_aliases.m")
    assert.include(own.problem, "claimed twice by this service (services.a.models.0 too)")
    const glob = conflictOf(service("a", ["m"], { "g*": "m" }))
    assert.strictEqual(glob.path, "services.a.model_aliases.g*")
    assert.include(glob.problem, "not a `*` glob")
  })

  it("a name listed twice by one service is one model", () => {
    const catalog = catalogOf(service("a", ["m", "m", "g*", "g*"]))
    assert.deepStrictEqual(
      catalog.listed.map((m) => m.name),
      ["m"]
    )
    assert.strictEqual(catalog.patterns.length, 1)
  })

  it("bounds the known models an error lists", () => {
    const catalog = catalogOf(
      service(
        "a",
        Array.from({ length: 60 }, (_, i) => `m${i}`)
      ),
      service("b", ["g*"])
    )
    const known = knownModels(catalog, 50)
    assert.strictEqual(known.names.length, 50)
    assert.strictEqual(known.more, 10)
    assert.deepStrictEqual(known.patterns, ["g*"])
  })
})

describe("models and model_aliases in the config", () => {
  const failure = (text: string) =>
    Effect.gen(function* () {
      const result = yield* Effect.either(parse(text, "conf.yml"))
      assert.isTrue(Either.isLeft(result), "expected a ConfigError")
      return (result as Either.Left<any, any>).left
    })

  it.effect("decodes both keys, with empty defaults, and max_routing_body_bytes (default 1 MiB)", () =>
    Effect.gen(function* () {
      const settings = yield* parse(
        `services:
  llama: { base_url: "http://h:1", models: ["llama3.1:8b", "qwen2.5-coder:*"], model_aliases: { gpt-4o: "llama3.1:8b" } }
  plain: { base_url: "http://h:2" }
`,
        "conf.yml"
      )
      const llama = settings.services.get("llama")!
      assert.deepStrictEqual(llama.models, ["llama3.1:8b", "qwen2.5-coder:*"])
      assert.deepStrictEqual(llama.modelAliases, { "gpt-4o": "llama3.1:8b" })
      assert.deepStrictEqual(settings.services.get("plain")!.models, [])
      assert.deepStrictEqual(settings.services.get("plain")!.modelAliases, {})
      assert.strictEqual(settings.maxRoutingBodyBytes, 1024 * 1024)
      const limited = yield* parse("max_routing_body_bytes: 4096\n", "conf.yml")
      assert.strictEqual(limited.maxRoutingBodyBytes, 4096)
    })
  )

  it.effect("a model claimed by two services stops the config with both named", () =>
    Effect.gen(function* () {
      const error = yield* failure(`services:
  a: { base_url: "http://h:1", models: ["llama3.1:8b"] }
  b: { base_url: "http://h:2", models: ["llama3.1:8b"] }
`)
      assert.strictEqual(error.path, "services.b.models.0")
      assert.include(error.message, 'conf.yml: services.b.models.0: "llama3.1:8b" is claimed by service "a" too')
    })
  )

  it.effect("bad names are refused at their key", () =>
    Effect.gen(function* () {
      const empty = yield* failure(`services:\n  a: { base_url: "http://h:1", models: [""] }\n`)
      assert.strictEqual(empty.path, "services.a.models.0")
      const globTarget = yield* failure(`services:\n  a: { base_url: "http://h:1", model_aliases: { x: "m*" } }\n`)
      assert.strictEqual(globTarget.path, "services.a.model_aliases.x")
      assert.include(globTarget.problem, "not a `*` glob")
      const limit = yield* failure("max_routing_body_bytes: 0\n")
      assert.strictEqual(limit.path, "max_routing_body_bytes")
    })
  )
})
