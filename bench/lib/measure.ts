import { Readable } from "node:stream"
import autocannon from "autocannon"
import { type Agent, Client, request } from "undici"
import { cpuMs, now } from "./processes.ts"

/** One thing measured: the upstream itself, a proxy in front of it, or the gateway. */
export interface Target {
  readonly name: string
  /** Origin of the server the client talks to. */
  readonly origin: string
  /** Path prefix in front of the upstream's own paths ("" or "/services/direct"). */
  readonly prefix: string
  /** The process whose CPU is charged to this target (the proxy; for direct, the upstream). */
  readonly pid: number
}

export const median = (values: ReadonlyArray<number>) => percentile(values, 50)

/** Nearest-rank percentile. */
export const percentile = (values: ReadonlyArray<number>, p: number) => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!
}

/** Every target once per round, in an order that rotates from round to round. */
export const interleaved = <T>(targets: ReadonlyArray<T>, rounds: number): Array<{ round: number; target: T }> => {
  const out: Array<{ round: number; target: T }> = []
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < targets.length; i++) out.push({ round, target: targets[(i + round) % targets.length]! })
  }
  return out
}

// ---------------------------------------------------------------------------
// 1. Throughput: autocannon, small JSON GET
// ---------------------------------------------------------------------------

export interface ThroughputRun {
  readonly ok: number
  readonly seconds: number
  readonly errors: number
  readonly non2xx: number
  readonly cpuMs: number
  readonly latencyP50Ms: number
  readonly latencyP99Ms: number
}

export const throughputRun = async (
  target: Target,
  options: { connections: number; seconds: number; headers: Record<string, string> }
): Promise<ThroughputRun> => {
  const cpuBefore = cpuMs(target.pid)
  const result = await autocannon({
    url: `${target.origin}${target.prefix}/json`,
    connections: options.connections,
    duration: options.seconds,
    headers: options.headers,
    timeout: 10
  })
  return {
    ok: result["2xx"],
    seconds: result.duration,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    cpuMs: cpuMs(target.pid) - cpuBefore,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99
  }
}

// ---------------------------------------------------------------------------
// 2. Latency at one connection: our own loop, sub-millisecond timing, requests alternate between targets.
// ---------------------------------------------------------------------------

export const latencyRun = async (
  targets: ReadonlyArray<Target>,
  options: { warmup: number; requests: number; headers: Record<string, string> }
) => {
  const clients = targets.map((target) => new Client(target.origin, { pipelining: 1, keepAliveTimeout: 30_000 }))
  const samples = targets.map(() => [] as Array<number>)
  let failures = 0
  try {
    const once = async (i: number) => {
      const started = performance.now()
      const response = await clients[i]!.request({
        method: "GET",
        path: `${targets[i]!.prefix}/json`,
        headers: options.headers
      })
      await response.body.dump({ limit: 1 << 20 })
      const took = performance.now() - started
      if (response.statusCode !== 200) failures++
      return took
    }
    for (let n = 0; n < options.warmup + options.requests; n++) {
      // Rotate who goes first so no target always follows the same one.
      for (let k = 0; k < targets.length; k++) {
        const i = (k + n) % targets.length
        const took = await once(i)
        if (n >= options.warmup) samples[i]!.push(took)
      }
    }
  } finally {
    await Promise.all(clients.map((client) => client.close()))
  }
  return {
    failures,
    byTarget: targets.map((target, i) => ({
      name: target.name,
      p50: percentile(samples[i]!, 50),
      p99: percentile(samples[i]!, 99),
      mean: samples[i]!.reduce((a, b) => a + b, 0) / samples[i]!.length
    }))
  }
}

// ---------------------------------------------------------------------------
// 3. Streaming: NDJSON written 20 ms apart; first byte, total, and whether lines arrive one by one.
// ---------------------------------------------------------------------------

export interface StreamRun {
  readonly status: number
  readonly ttfbMs: number
  readonly totalMs: number
  readonly lines: number
  /** Body chunks received: ~ one per line when nothing buffers on the way. */
  readonly chunks: number
}

export const streamRun = async (
  agent: Agent,
  target: Target,
  options: { lines: number; intervalMs: number; headers: Record<string, string> }
): Promise<StreamRun> => {
  const started = performance.now()
  const response = await request(
    `${target.origin}${target.prefix}/ndjson?lines=${options.lines}&interval=${options.intervalMs}`,
    { dispatcher: agent, headers: options.headers }
  )
  let first = Number.NaN
  let lines = 0
  let chunks = 0
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    if (chunks === 0) first = performance.now() - started
    chunks++
    for (const byte of chunk) if (byte === 10) lines++
  }
  return { status: response.statusCode, ttfbMs: first, totalMs: performance.now() - started, lines, chunks }
}

// ---------------------------------------------------------------------------
// 4. Bulk: download (and upload) of large bodies
// ---------------------------------------------------------------------------

export const MiB = 1024 * 1024

export const downloadRun = async (agent: Agent, target: Target, bytes: number, headers: Record<string, string>) => {
  const started = performance.now()
  const response = await request(`${target.origin}${target.prefix}/bytes?n=${bytes}`, { dispatcher: agent, headers })
  let received = 0
  for await (const chunk of response.body as AsyncIterable<Buffer>) received += chunk.length
  const seconds = (performance.now() - started) / 1000
  if (response.statusCode !== 200 || received !== bytes) {
    throw new Error(`${target.name}: download got status ${response.statusCode}, ${received} of ${bytes} bytes`)
  }
  return { seconds, mibPerSecond: bytes / MiB / seconds }
}

export const uploadRun = async (agent: Agent, target: Target, bytes: number, headers: Record<string, string>) => {
  const piece = Buffer.alloc(64 * 1024, "0123456789abcdef")
  const body = Readable.from(
    (function* () {
      for (let left = bytes; left > 0; left -= piece.length) {
        yield left >= piece.length ? piece : piece.subarray(0, left)
      }
    })()
  )
  const started = performance.now()
  const response = await request(`${target.origin}${target.prefix}/sink`, {
    dispatcher: agent,
    method: "POST",
    headers: { ...headers, "content-type": "application/octet-stream", "content-length": String(bytes) },
    body
  })
  const answer = (await response.body.json()) as { bytes?: number }
  const seconds = (performance.now() - started) / 1000
  if (response.statusCode !== 200 || answer.bytes !== bytes) {
    throw new Error(`${target.name}: upload got status ${response.statusCode}, upstream saw ${answer.bytes} bytes`)
  }
  return { seconds, mibPerSecond: bytes / MiB / seconds }
}

// ---------------------------------------------------------------------------
// Small helpers for the control API
// ---------------------------------------------------------------------------

export const getJson = async <A>(url: string, headers: Record<string, string>, method: "GET" | "POST" = "GET") => {
  const response = await request(url, { method, headers })
  const text = await response.body.text()
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {
    // not JSON
  }
  return { status: response.statusCode, body: body as A, at: now() }
}
