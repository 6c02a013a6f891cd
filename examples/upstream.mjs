#!/usr/bin/env node
// A small HTTP service for Hestia's demo config, tests and benchmarks.
//   node examples/upstream.mjs --port 9801 [--boot-ms 500] [--exit-code 3] [--ignore-sigterm]
// --record FILE appends "start <pid>" to FILE when the process starts (tests count starts with it).
// Routes: /health, /echo/*, /bytes?n=, /ndjson?lines=&interval=, /sse?events=&interval=, /gzip, /slow?ms=,
//         /mirror (answers the request body as sent), /_seen (requests seen so far),
//         /print?text=&stream=stderr (prints text, one line, to stdout or stderr), /_env (the names, not the
//         values, of its environment variables), /exit?code= (answers, says so on stderr, then exits with that
//         code: a service that dies while hot), /html (a small HTML page), anything else → echo.
// Websockets (node's own 'upgrade', no dependency): /ws echoes every frame as it came; a text message "!close CODE"
// makes it close with CODE, "!drop" cuts the connection without a close frame, "!flood BYTES" sends BYTES in
// 64 KiB binary frames as fast as the reader takes them. /ws?deny=1 refuses the upgrade with 403, /ws?hang=1
// never answers it.
// /_stats counts them: wsOpen, wsOpened, wsClosed [{code, by}], wsFloodSent (bytes the socket accepted).
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
const stats = { aborted: 0, wsOpen: 0, wsOpened: 0, wsClosed: [], wsFloodSent: 0 }
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
      case "/html": {
        const page = `<!doctype html><html><head><title>upstream page</title></head><body><h1 id="upstream">upstream page ${process.pid}</h1></body></html>`
        res.writeHead(200, { "content-type": "text/html; charset=utf-8", "content-length": Buffer.byteLength(page) })
        return res.end(page)
      }
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

// --- websockets (RFC 6455): just enough framing for the gateway's tests -----------------------------------------

const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/** An unmasked frame (server to client) with the first byte as given (FIN, RSV, opcode). */
const wsFrame = (first, payload) => {
  const n = payload.length
  const head = n < 126 ? Buffer.from([first, n]) : Buffer.alloc(n < 65536 ? 4 : 10)
  if (n >= 126 && n < 65536) {
    head[0] = first
    head[1] = 126
    head.writeUInt16BE(n, 2)
  } else if (n >= 65536) {
    head[0] = first
    head[1] = 127
    head.writeUInt32BE(Math.floor(n / 2 ** 32), 2)
    head.writeUInt32BE(n % 2 ** 32, 6)
  }
  return Buffer.concat([head, payload])
}

const closePayload = (code) => {
  const payload = Buffer.alloc(2)
  payload.writeUInt16BE(code, 0)
  return payload
}

server.on("upgrade", (req, socket, head) => {
  const url = new URL(req.url, "http://upstream")
  seen.push({
    method: req.method,
    url: req.url,
    requestId: req.headers["x-request-id"],
    upgrade: true,
    headers: req.headers
  })
  if (url.pathname !== "/ws" || String(req.headers.upgrade).toLowerCase() !== "websocket") {
    socket.end("HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found")
    return
  }
  // Accepts the connection and never answers (the gateway's upstream_timeout_seconds ends it).
  if (url.searchParams.has("hang")) return
  if (url.searchParams.has("deny")) {
    socket.end(
      "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 6\r\nconnection: close\r\n\r\ndenied"
    )
    return
  }
  const accept = createHash("sha1").update(`${req.headers["sec-websocket-key"]}${WS_GUID}`).digest("base64")
  socket.write(
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nX-Upstream-Pid: ${process.pid}\r\n\r\n`
  )
  stats.wsOpen++
  stats.wsOpened++
  let closed
  const recordClose = (code, by) => {
    if (closed !== undefined) return
    closed = { code, by }
    if (stats.wsClosed.length < 100) stats.wsClosed.push(closed)
  }
  socket.on("close", () => {
    stats.wsOpen--
    recordClose(1006, "gone")
  })
  socket.on("error", () => {})
  // A client that ends its side (without a close frame) is gone: so is this websocket.
  socket.on("end", () => socket.end())

  const flood = (bytes) => {
    let left = bytes
    const pump = () => {
      while (left > 0 && !socket.destroyed) {
        const piece = left >= chunk.length ? chunk : chunk.subarray(0, left)
        left -= piece.length
        stats.wsFloodSent += piece.length
        if (!socket.write(wsFrame(0x82, piece))) return socket.once("drain", pump)
      }
    }
    pump()
  }

  const onFrame = (first, payload) => {
    const opcode = first & 0x0f
    if (opcode === 0x8) {
      recordClose(payload.length >= 2 ? payload.readUInt16BE(0) : 1005, "client")
      socket.end(wsFrame(0x88, payload.subarray(0, 2)))
      return
    }
    if (opcode === 0x9) return socket.write(wsFrame(0x8a, payload))
    if (opcode === 0xa) return
    const text = opcode === 0x1 ? payload.toString("utf8") : ""
    if (text.startsWith("!close ")) {
      const code = Number(text.slice(7))
      recordClose(code, "upstream")
      return socket.end(wsFrame(0x88, closePayload(code)))
    }
    if (text === "!drop") return socket.destroy()
    if (text.startsWith("!flood ")) return flood(Number(text.slice(7)))
    socket.write(wsFrame(first, payload))
  }

  // Frames may be split across chunks (and be many MiB): chunks are kept in a list and joined once per frame.
  const chunks = head.length > 0 ? [head] : []
  let total = head.length
  const take = (n) => {
    const out = Buffer.allocUnsafe(n)
    let at = 0
    while (at < n) {
      const first = chunks[0]
      const k = Math.min(first.length, n - at)
      first.copy(out, at, 0, k)
      at += k
      if (k === first.length) chunks.shift()
      else chunks[0] = first.subarray(k)
    }
    total -= n
    return out
  }
  const parse = () => {
    while (total >= 2) {
      const peek = Buffer.alloc(Math.min(14, total))
      for (let i = 0, at = 0; at < peek.length; i++) at += chunks[i].copy(peek, at, 0, peek.length - at)
      const len7 = peek[1] & 0x7f
      const masked = (peek[1] & 0x80) !== 0
      const extra = len7 === 126 ? 2 : len7 === 127 ? 8 : 0
      const headerLength = 2 + extra + (masked ? 4 : 0)
      if (peek.length < headerLength) return
      const length =
        len7 === 126
          ? peek.readUInt16BE(2)
          : len7 === 127
            ? peek.readUInt32BE(2) * 2 ** 32 + peek.readUInt32BE(6)
            : len7
      if (total < headerLength + length) return
      const header = take(headerLength)
      const payload = take(length)
      if (masked) {
        const key = header.subarray(2 + extra, 6 + extra)
        for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3]
      }
      onFrame(header[0], payload)
    }
  }
  socket.on("data", (data) => {
    chunks.push(data)
    total += data.length
    parse()
  })
  parse()
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
