#!/usr/bin/env node
// A small OpenAI- and Ollama-compatible model server, no dependencies: it stands in for llama.cpp's llama-server or
// Ollama in Hestia's README example and tests. It "generates" a few tokens that say which model it was asked for.
//   node examples/model-upstream.mjs --port 9811 --models llama3.1:8b,gpt-oss:20b
//     [--token-ms 20]   pause between two streamed tokens
//     [--tokens 5]      tokens per answer (a request's max_tokens / options.num_predict wins)
//     [--boot-ms 0]     wait this long before listening (a model being loaded)
//     [--record FILE]   append "start <pid>" to FILE when the process starts (tests count starts with it)
//     [--marks FILE]    append a JSON line {event, pid, t} when it is spawned, listens and exits (the bench's clock:
//                       performance.timeOrigin + performance.now(), comparable across processes)
// OpenAI: GET /v1/models, POST /v1/chat/completions and /v1/completions (SSE when "stream": true), /v1/embeddings.
// Ollama: GET /api/tags, /api/ps, /api/version, POST /api/chat and /api/generate (NDJSON unless "stream": false, as
// Ollama), /api/show, /api/embed. Also /health, and /_seen: the requests it got (method, path, model, Content-Length,
// body bytes, when their answer ended), the last 1000. A model it does not serve gets that API's 404.
import { appendFileSync } from "node:fs"
import { createServer } from "node:http"

const args = process.argv.slice(2)
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`)
  return at === -1 ? fallback : args[at + 1]
}
const port = Number(option("port", process.env.PORT ?? "0"))
const models = option("models", "model")
  .split(",")
  .map((name) => name.trim())
  .filter((name) => name !== "")
const tokenMs = Number(option("token-ms", "20"))
const defaultTokens = Number(option("tokens", "5"))
const bootMs = Number(option("boot-ms", "0"))
const record = option("record", undefined)
if (record !== undefined) appendFileSync(record, `start ${process.pid}\n`)
const marks = option("marks", undefined)
const mark = (event) => {
  if (marks !== undefined) {
    const t = performance.timeOrigin + performance.now()
    appendFileSync(marks, `${JSON.stringify({ event, pid: process.pid, t })}\n`)
  }
}
mark("spawned")
process.on("SIGTERM", () => {
  mark("exit")
  process.exit(0)
})

const startedAt = new Date().toISOString()
const seen = []
const remember = (entry) => {
  seen.push(entry)
  if (seen.length > 1000) seen.shift()
  return entry
}

const json = (res, status, value) => {
  const body = JSON.stringify(value)
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
  res.end(body)
}

const openAiError = (res, status, message, code, param = null) =>
  json(res, status, { error: { message, type: "invalid_request_error", param, code } })
const ollamaError = (res, status, message) => json(res, status, { error: message })

/** The answer's tokens: the first names the model, so a client (and a test) sees which one answered. */
const tokensFor = (model, count) =>
  Array.from({ length: Math.max(1, count) }, (_, i) => (i === 0 ? `[${model}]` : ` token${i}`))

/** Sends `tokens` one by one, `tokenMs` apart, through `write`; `end` after the last. Stops if the client leaves. */
const stream = (res, tokens, write, end, entry) => {
  let i = 0
  const next = () => {
    if (res.destroyed) return
    if (i === tokens.length) {
      end()
      entry.finishedAt = Date.now()
      return res.end()
    }
    write(tokens[i], i)
    i++
    timer = setTimeout(next, tokenMs)
  }
  let timer = setTimeout(next, 0)
  res.on("close", () => clearTimeout(timer))
}

const openAi = (res, path, body, entry) => {
  const model = body.model
  if (!models.includes(model)) {
    return openAiError(
      res,
      404,
      `The model \`${model}\` does not exist (this server has ${models.join(", ")})`,
      "model_not_found",
      "model"
    )
  }
  const id = `cmpl-${process.pid}-${seen.length}`
  const created = Math.floor(Date.now() / 1000)
  const tokens = tokensFor(model, body.max_tokens ?? body.max_completion_tokens ?? defaultTokens)
  const usage = { prompt_tokens: 1, completion_tokens: tokens.length, total_tokens: tokens.length + 1 }
  if (path === "/v1/embeddings") {
    entry.finishedAt = Date.now()
    return json(res, 200, {
      object: "list",
      data: [{ object: "embedding", index: 0, embedding: [0.1, 0.2, 0.3] }],
      model,
      usage: { prompt_tokens: 1, total_tokens: 1 }
    })
  }
  const chat = path === "/v1/chat/completions"
  if (body.stream !== true) {
    const text = tokens.join("")
    entry.finishedAt = Date.now()
    return json(res, 200, {
      id,
      object: chat ? "chat.completion" : "text_completion",
      created,
      model,
      choices: [
        chat
          ? { index: 0, message: { role: "assistant", content: text }, logprobs: null, finish_reason: "stop" }
          : { index: 0, text, logprobs: null, finish_reason: "stop" }
      ],
      usage
    })
  }
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
  const chunk = (choice) =>
    `data: ${JSON.stringify({ id, object: chat ? "chat.completion.chunk" : "text_completion", created, model, choices: [choice] })}\n\n`
  stream(
    res,
    tokens,
    (token, i) =>
      res.write(
        chunk(
          chat
            ? {
                index: 0,
                delta: i === 0 ? { role: "assistant", content: token } : { content: token },
                finish_reason: null
              }
            : { index: 0, text: token, logprobs: null, finish_reason: null }
        )
      ),
    () => {
      res.write(
        chunk(chat ? { index: 0, delta: {}, finish_reason: "stop" } : { index: 0, text: "", finish_reason: "stop" })
      )
      res.write("data: [DONE]\n\n")
    },
    entry
  )
}

const ollama = (res, path, body, entry) => {
  const model = body.model ?? body.name
  if (!models.includes(model)) return ollamaError(res, 404, `model '${model}' not found`)
  const createdAt = () => new Date().toISOString()
  if (path === "/api/show") {
    entry.finishedAt = Date.now()
    return json(res, 200, {
      modelfile: `FROM ${model}`,
      parameters: "",
      template: "",
      details: { family: "demo" },
      model_info: {}
    })
  }
  if (path === "/api/embed") {
    entry.finishedAt = Date.now()
    return json(res, 200, { model, embeddings: [[0.1, 0.2, 0.3]] })
  }
  const tokens = tokensFor(model, body.options?.num_predict ?? defaultTokens)
  const chat = path === "/api/chat"
  const piece = (token) => (chat ? { message: { role: "assistant", content: token } } : { response: token })
  const final = {
    done: true,
    done_reason: "stop",
    total_duration: tokens.length * tokenMs * 1e6,
    load_duration: 0,
    prompt_eval_count: 1,
    prompt_eval_duration: 0,
    eval_count: tokens.length,
    eval_duration: tokens.length * tokenMs * 1e6,
    ...(chat ? {} : { context: [] })
  }
  if (body.stream === false) {
    entry.finishedAt = Date.now()
    return json(res, 200, { model, created_at: createdAt(), ...piece(tokens.join("")), ...final })
  }
  res.writeHead(200, { "content-type": "application/x-ndjson" })
  stream(
    res,
    tokens,
    (token) => res.write(`${JSON.stringify({ model, created_at: createdAt(), ...piece(token), done: false })}\n`),
    () => res.write(`${JSON.stringify({ model, created_at: createdAt(), ...piece(""), ...final })}\n`),
    entry
  )
}

const server = createServer((req, res) => {
  const url = new URL(req.url, "http://upstream")
  const path = url.pathname
  const parts = []
  req.on("data", (data) => parts.push(data))
  req.on("end", () => {
    const raw = Buffer.concat(parts)
    if (req.method === "GET") {
      switch (path) {
        case "/health":
          return json(res, 200, { ok: true, pid: process.pid, models })
        case "/_seen":
          return json(res, 200, seen)
        case "/v1/models":
          return json(res, 200, {
            object: "list",
            data: models.map((id) => ({ id, object: "model", created: 0, owned_by: "model-upstream" }))
          })
        case "/api/tags":
        case "/api/ps":
          return json(res, 200, {
            models: models.map((name) => ({
              name,
              model: name,
              modified_at: startedAt,
              size: 0,
              digest: "",
              details: {}
            }))
          })
        case "/api/version":
          return json(res, 200, { version: "0.0.0-model-upstream" })
      }
    }
    const isOpenAi = path.startsWith("/v1/")
    const known = [
      "/v1/chat/completions",
      "/v1/completions",
      "/v1/embeddings",
      "/api/chat",
      "/api/generate",
      "/api/show",
      "/api/embed"
    ]
    if (!known.includes(path)) {
      return isOpenAi
        ? openAiError(res, 404, `no route ${req.method} ${path}`, "not_found")
        : ollamaError(res, 404, `no route ${req.method} ${path}`)
    }
    let body
    try {
      body = JSON.parse(raw.toString("utf8"))
    } catch {
      return isOpenAi
        ? openAiError(res, 400, "the body is not JSON", "invalid_json")
        : ollamaError(res, 400, "invalid JSON")
    }
    const entry = remember({
      method: req.method,
      path,
      model: body.model ?? body.name,
      contentLength: req.headers["content-length"] === undefined ? null : Number(req.headers["content-length"]),
      bodyBytes: raw.length,
      body: raw.toString("utf8").slice(0, 2000),
      requestId: req.headers["x-request-id"],
      authorization: req.headers.authorization ?? null,
      forwardedFor: req.headers["x-forwarded-for"],
      receivedAt: Date.now(),
      finishedAt: null
    })
    return isOpenAi ? openAi(res, path, body, entry) : ollama(res, path, body, entry)
  })
})

setTimeout(() => {
  server.listen(port, "127.0.0.1", () => {
    mark("listening")
    console.log(
      `model upstream listening on 127.0.0.1:${server.address().port} pid ${process.pid}, models ${models.join(", ")}`
    )
  })
}, bootMs)
