import { assert, describe, it } from "@effect/vitest"
import { InvalidModelRequest, RequestBodyTooLarge, UnknownModel } from "../../src/domain/Errors.ts"
import { toModelApiErrorResponse } from "../../src/domain/ModelApiErrors.ts"
import { isModelUrl, localRoute, parseModelUrl } from "../../src/proxy/ModelApis.ts"
import { fieldValueSpan, modelOf, withModel } from "../../src/proxy/ModelBody.ts"

const bytes = (text: string) => Buffer.from(text, "utf8")

describe("ModelBody", () => {
  it("finds the model, or says why there is none", () => {
    assert.deepStrictEqual(modelOf(bytes('{"model":"m","messages":[]}'), "openai"), { model: "m", field: "model" })
    assert.deepStrictEqual(modelOf(bytes('{"name":"m"}'), "ollama"), { model: "m", field: "name" })
    assert.include((modelOf(bytes('{"name":"m"}'), "openai") as any).problem, 'no "model"')
    assert.include((modelOf(bytes(""), "openai") as any).problem, "no body")
    assert.include((modelOf(bytes('{"model":'), "openai") as any).problem, "not JSON")
    assert.include((modelOf(bytes('["model"]'), "openai") as any).problem, "not a JSON object")
    assert.include((modelOf(bytes('{"model":7}'), "ollama") as any).problem, '"model" must be a string, not 7')
    assert.include(
      (modelOf(bytes(`{"model":"m","x":${"[".repeat(300)}${"]".repeat(300)}}`), "openai") as any).problem,
      "deeper than 256"
    )
  })

  it("rewrites only the model's value: every other byte as sent", () => {
    const body =
      '{ "stream" : true,\n  "model" :\t"gpt-4o" , "messages":[{"role":"user","content":"model: \\"gpt-4o\\""}] }'
    const out = withModel(bytes(body), "model", "llama3.1:8b").toString("utf8")
    assert.strictEqual(out, body.replace('"gpt-4o" ,', '"llama3.1:8b" ,'))
  })

  it("takes the last of a key given twice, as JSON.parse does, and an escaped spelling of the key", () => {
    const twice = '{"model":"a","nested":{"model":"b"},"model":"c"}'
    assert.strictEqual(
      withModel(bytes(twice), "model", "z").toString(),
      '{"model":"a","nested":{"model":"b"},"model":"z"}'
    )
    const escaped = '{"mod\\u0065l":"alias"}'
    assert.deepStrictEqual(modelOf(bytes(escaped), "openai"), { model: "alias", field: "model" })
    assert.strictEqual(withModel(bytes(escaped), "model", "real").toString(), '{"mod\\u0065l":"real"}')
  })

  it("skips nested values, strings with brackets and escapes, numbers and literals", () => {
    const body = '{"a":[1,{"b":"]}\\"{"}],"n":-1.5e3,"t":true,"z":null,"model":"x"}'
    const span = fieldValueSpan(bytes(body), "model")!
    assert.strictEqual(body.slice(span[0], span[1]), '"x"')
  })

  it("leaves bytes that are not valid UTF-8 as they were", () => {
    const raw = Buffer.concat([bytes('{"prompt":"'), Buffer.from([0xff, 0xfe]), bytes('","model":"a"}')])
    const out = withModel(raw, "model", "bb")
    assert.deepStrictEqual(
      out,
      Buffer.concat([bytes('{"prompt":"'), Buffer.from([0xff, 0xfe]), bytes('","model":"bb"}')])
    )
  })

  it("writes a name that needs escaping as a JSON string", () => {
    const out = withModel(bytes('{"model":"a"}'), "model", 'we"ird\\')
    assert.deepStrictEqual(JSON.parse(out.toString()), { model: 'we"ird\\' })
  })
})

describe("ModelApis", () => {
  it("claims the two prefixes and Ollama's root, nothing else", () => {
    for (const url of [
      "/openai/v1",
      "/openai/v1/models",
      "/openai/v1?x",
      "/ollama",
      "/ollama/",
      "/ollama/api",
      "/ollama/api/chat"
    ]) {
      assert.isTrue(isModelUrl(url), url)
    }
    for (const url of ["/openai", "/openai/v2/models", "/openai/v1x", "/ollama/v1/chat", "/ollamax", "/services/x"]) {
      assert.isFalse(isModelUrl(url), url)
    }
  })

  it("forwards the path below the prefix, and refuses dot segments", () => {
    assert.deepStrictEqual(parseModelUrl("/openai/v1/chat/completions?a=1"), {
      api: "openai",
      path: "/v1/chat/completions",
      query: "?a=1"
    })
    assert.deepStrictEqual(parseModelUrl("/ollama/api/chat"), { api: "ollama", path: "/api/chat", query: "" })
    assert.strictEqual((parseModelUrl("/openai/v1/../admin") as any)._tag, "BadRequest")
    assert.strictEqual((parseModelUrl("/ollama/api/%2e%2e/x") as any)._tag, "BadRequest")
  })

  it("answers the model lists itself, for GET and HEAD only", () => {
    const at = (url: string) => parseModelUrl(url) as any
    assert.deepStrictEqual(localRoute("GET", at("/openai/v1/models")), { _tag: "OpenAiModels" })
    assert.deepStrictEqual(localRoute("GET", at("/openai/v1/models/hf.co%2Fa%3Ab")), {
      _tag: "OpenAiModel",
      id: "hf.co/a:b"
    })
    assert.deepStrictEqual(localRoute("HEAD", at("/ollama/api/tags")), { _tag: "OllamaTags" })
    assert.deepStrictEqual(localRoute("GET", at("/ollama/api/ps")), { _tag: "OllamaRunning" })
    assert.deepStrictEqual(localRoute("HEAD", at("/ollama/")), { _tag: "OllamaRoot" })
    assert.isUndefined(localRoute("POST", at("/openai/v1/models")))
    assert.isUndefined(localRoute("GET", at("/ollama/api/chat")))
  })
})

describe("ModelApiErrors", () => {
  const known = { names: ["a", "b"], more: 0, patterns: ["q*"] }

  it("renders OpenAI's error object, with the gateway's body under hestia, and the table's status", () => {
    const { status, body } = toModelApiErrorResponse("openai", new UnknownModel({ model: "x", known }))
    assert.strictEqual(status, 404)
    const error = (body as any).error
    assert.strictEqual(error.type, "invalid_request_error")
    assert.strictEqual(error.code, "model_not_found")
    assert.strictEqual(error.param, "model")
    assert.strictEqual(error.message, 'model "x" is not served here; known models: a, b; patterns: q*')
    assert.deepStrictEqual(error.hestia.known, known)
    const tooLarge = toModelApiErrorResponse("openai", new RequestBodyTooLarge({ limitBytes: 10 }))
    assert.strictEqual(tooLarge.status, 413)
    assert.strictEqual((tooLarge.body as any).error.code, "request_too_large")
    assert.strictEqual(tooLarge.headers.connection, "close")
  })

  it("renders Ollama's {error: message}", () => {
    const { status, body } = toModelApiErrorResponse(
      "ollama",
      new InvalidModelRequest({ reason: 'the request body has no "model"', known })
    )
    assert.strictEqual(status, 400)
    assert.deepStrictEqual(body, { error: 'the request body has no "model"; known models: a, b; patterns: q*' })
  })

  it("cuts a long model name in the message, and says how many names were left out", () => {
    const error = new UnknownModel({ model: "m".repeat(500), known: { names: ["a"], more: 7, patterns: [] } })
    assert.isBelow(error.message.length, 200)
    assert.include(error.message, "known models: a and 7 more")
  })
})
