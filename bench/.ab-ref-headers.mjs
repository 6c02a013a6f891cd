#!/usr/bin/env node
// The reference: the fastest correct Node reverse proxy we know, the bar for the gateway.
// node:http server + one undici keep-alive Pool; Pool.stream() in callback form writes straight into the response.
//   node bench/reference-proxy.mjs --upstream http://127.0.0.1:PORT --port N
import { createServer } from "node:http"
import { Pool } from "undici"
import { randomUUID } from "node:crypto"

const arg = (name) => process.argv[process.argv.indexOf(`--${name}`) + 1]
const pool = new Pool(arg("upstream"), { connections: 256, keepAliveTimeout: 30_000, bodyTimeout: 0 })
const HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"])
const REQUEST_ONLY = new Set(["host", "expect", "proxy-authorization"])

const server = createServer((req, res) => {
  const headers = []; const rid = randomUUID()
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i].toLowerCase()
    if (!HOP.has(name) && !REQUEST_ONLY.has(name)) headers.push(req.rawHeaders[i], req.rawHeaders[i + 1])
  }
  headers.push("x-forwarded-for", req.socket.remoteAddress, "x-forwarded-proto", "http", "x-forwarded-host", req.headers.host, "x-request-id", rid)
  const abort = new AbortController()
  res.once("close", () => res.writableFinished || abort.abort()) // the client left: stop the upstream exchange
  const hasBody = req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined
  const options = { method: req.method, path: req.url, headers, body: hasBody ? req : null, signal: abort.signal }
  pool.stream(
    options,
    ({ statusCode, headers: upstream }) => {
      for (const name of HOP) delete upstream[name]
      const out = {}; for (const n in upstream) if (!HOP.has(n)) out[n] = upstream[n]; out["x-request-id"] = rid
      res.writeHead(statusCode, out)
      return res
    },
    (error) => {
      if (error === null || error.code === "UND_ERR_ABORTED") return
      if (res.headersSent) return res.destroy()
      res.writeHead(502, { "content-type": "application/json" }).end(JSON.stringify({ error: String(error.code) }))
    }
  )
})
server.keepAliveTimeout = 65_000
server.listen(Number(arg("port")), "127.0.0.1")
process.on("SIGTERM", () => process.exit(0))
