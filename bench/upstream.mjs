#!/usr/bin/env node
// The benchmark's upstream: a plain node:http server with cheap, fixed answers, so what is measured is the proxy.
//   node bench/upstream.mjs --port N [--boot-ms MS | --boot-ms-file FILE] [--marks FILE]
// Routes: /health, /json (small fixed JSON), /ndjson?lines=&interval=, /bytes?n=, /sink (reads the body, answers
// its size); anything else → 404.
// With --marks, appends one JSON line per event to FILE, each stamped with a wall clock in ms that is comparable
// across processes (performance.timeOrigin + performance.now()):
//   {"event":"spawned"}  as soon as the process runs (the bench counts starts with it),
//   {"event":"listening"} when the socket accepts connections: from then on a health probe would succeed,
//   {"event":"health"}   when the first /health answer has been written.
import { appendFileSync, readFileSync } from "node:fs"
import { createServer } from "node:http"

const args = process.argv.slice(2)
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`)
  return at === -1 ? fallback : args[at + 1]
}
const now = () => performance.timeOrigin + performance.now()
const marks = option("marks", undefined)
const mark = (event, extra = {}) => {
  if (marks !== undefined) appendFileSync(marks, `${JSON.stringify({ event, pid: process.pid, t: now(), ...extra })}\n`)
}
mark("spawned")

const port = Number(option("port", "0"))
const bootFile = option("boot-ms-file", undefined)
const bootMs = Number(bootFile === undefined ? option("boot-ms", "0") : readFileSync(bootFile, "utf8").trim())

process.on("SIGTERM", () => process.exit(0))

const small = Buffer.from(JSON.stringify({ hello: "world", pid: process.pid }))
const chunk = Buffer.alloc(64 * 1024, "abcdefghijklmnopqrstuvwxyz0123456789")
let healthAnswered = false

const server = createServer((req, res) => {
  const q = req.url.indexOf("?")
  const pathname = q === -1 ? req.url : req.url.slice(0, q)
  const params = new URLSearchParams(q === -1 ? "" : req.url.slice(q + 1))
  switch (pathname) {
    case "/json":
      res.writeHead(200, { "content-type": "application/json", "content-length": small.length })
      return res.end(small)
    case "/health":
      res.writeHead(200, { "content-type": "application/json", "content-length": small.length })
      res.end(small)
      if (!healthAnswered) {
        healthAnswered = true
        mark("health")
      }
      return
    case "/sink": {
      let bytes = 0
      req.on("data", (data) => {
        bytes += data.length
      })
      req.on("end", () => {
        const body = JSON.stringify({ bytes })
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
        res.end(body)
      })
      return
    }
    case "/bytes": {
      let left = Number(params.get("n") ?? "0")
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": left })
      const pump = () => {
        while (left > 0) {
          const piece = left >= chunk.length ? chunk : chunk.subarray(0, left)
          left -= piece.length
          if (!res.write(piece)) return res.once("drain", pump)
        }
        res.end()
      }
      return pump()
    }
    case "/ndjson": {
      const count = Number(params.get("lines") ?? "50")
      const interval = Number(params.get("interval") ?? "20")
      res.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-cache" })
      let i = 0
      const timer = setInterval(() => {
        res.write(`${JSON.stringify({ i, at: Date.now() })}\n`)
        if (++i >= count) {
          clearInterval(timer)
          res.end()
        }
      }, interval)
      res.on("close", () => clearInterval(timer))
      return
    }
    default:
      res.writeHead(404, { "content-type": "text/plain" })
      return res.end("not found\n")
  }
})
server.keepAliveTimeout = 65_000

setTimeout(() => {
  server.listen(port, "127.0.0.1", () => mark("listening", { port: server.address().port }))
}, bootMs)
