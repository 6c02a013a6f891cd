#!/usr/bin/env node
// A small HTTP service for Hestia's demo config, tests and benchmarks.
//   node examples/upstream.mjs --port 9801 [--boot-ms 500] [--exit-code 3] [--ignore-sigterm]
// --record FILE appends "start <pid>" to FILE when the process starts (tests count starts with it).
// Routes: /health, /echo/*, /bytes?n=, /ndjson?lines=&interval=, /sse?events=&interval=, /gzip, /slow?ms=,
//         /mirror (answers the request body as sent), /_seen (requests seen so far),
//         /print?text=&stream=stderr (prints text, one line, to stdout or stderr), /_env (the names, not the
//         values, of its environment variables), /exit?code= (answers, says so on stderr, then exits with that
//         code: a service that dies while hot), anything else → echo.
import { createHash } from "node:crypto"
import { appendFileSync } from "node:fs"
import { createServer } from "node:http"
import { gzipSync } from "node:zlib"

const args = process.argv.slice(2)
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`)
  return at === -1 ? fallback : args[at + 1]
}
const port = Number(option("port", process.env.PORT ?? "0"))
const bootMs = Number(option("boot-ms", "0"))
const exitCode = option("exit-code", undefined)
const ignoreSigterm = args.includes("--ignore-sigterm")
const record = option("record", undefined)
if (record !== undefined) appendFileSync(record, `start ${process.pid}\n`)

if (exitCode !== undefined) {
  console.error(`exiting at once with code ${exitCode}, as asked`)
  process.exit(Number(exitCode))
}
if (ignoreSigterm) process.on("SIGTERM", () => console.log("SIGTERM ignored"))
else process.on("SIGTERM", () => process.exit(0))

const seen = []
const stats = { aborted: 0 }
const gzipped = gzipSync(Buffer.from("hello, compressed world\n".repeat(100)))
const chunk = Buffer.alloc(64 * 1024, "abcdefghijklmnopqrstuvwxyz0123456789")

const server = createServer((req, res) => {
  const url = new URL(req.url, "http://upstream")
  seen.push({
    method: req.method,
    url: req.url,
    requestId: req.headers["x-request-id"],
    traceparent: req.headers.traceparent
  })
  const hash = createHash("sha256")
  let bytes = 0
  const parts = []
  req.on("data", (data) => {
    hash.update(data)
    bytes += data.length
    if (url.pathname === "/mirror") parts.push(data)
  })
  req.on("end", () => {
    switch (url.pathname) {
      case "/health":
        return json(res, 200, { ok: true, pid: process.pid })
      case "/_seen":
        return json(res, 200, seen)
      case "/_stats":
        return json(res, 200, stats)
      case "/_env":
        return json(res, 200, { names: Object.keys(process.env).sort() })
      case "/print": {
        const text = url.searchParams.get("text") ?? ""
        if (url.searchParams.get("stream") === "stderr") console.error(text)
        else console.log(text)
        return json(res, 200, { printed: text })
      }
      case "/exit": {
        const code = Number(url.searchParams.get("code") ?? "1")
        console.error(`exiting with code ${code}, as asked`)
        res.on("finish", () => process.exit(code))
        return json(res, 200, { exiting: code })
      }
      case "/mirror":
        res.writeHead(200, { "content-type": req.headers["content-type"] ?? "application/octet-stream" })
        return res.end(Buffer.concat(parts))
      case "/gzip":
        res.writeHead(200, {
          "content-type": "text/plain",
          "content-encoding": "gzip",
          "content-length": gzipped.length
        })
        return res.end(gzipped)
      case "/bytes": {
        let left = Number(url.searchParams.get("n") ?? "0")
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
      case "/ndjson":
      case "/sse": {
        const count = Number(url.searchParams.get(url.pathname === "/sse" ? "events" : "lines") ?? "5")
        const interval = Number(url.searchParams.get("interval") ?? "50")
        const sse = url.pathname === "/sse"
        res.writeHead(200, {
          "content-type": sse ? "text/event-stream" : "application/x-ndjson",
          "cache-control": "no-cache"
        })
        let i = 0
        const timer = setInterval(() => {
          const line = JSON.stringify({ i, at: Date.now() })
          res.write(sse ? `data: ${line}\n\n` : `${line}\n`)
          if (++i >= count) {
            clearInterval(timer)
            res.end()
          }
        }, interval)
        res.on("close", () => {
          if (!res.writableFinished) stats.aborted++
          clearInterval(timer)
        })
        return
      }
      case "/slow":
        return setTimeout(() => json(res, 200, { slow: true }), Number(url.searchParams.get("ms") ?? "1000"))
      default:
        return json(res, 200, {
          method: req.method,
          url: req.url,
          headers: req.headers,
          bodyBytes: bytes,
          bodySha256: hash.digest("hex"),
          pid: process.pid
        })
    }
  })
})

const json = (res, status, value) => {
  const body = JSON.stringify(value)
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
  res.end(body)
}

setTimeout(() => {
  server.listen(port, "127.0.0.1", () =>
    console.log(`upstream listening on 127.0.0.1:${server.address().port} pid ${process.pid}`)
  )
}, bootMs)
