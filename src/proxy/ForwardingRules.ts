import { randomUUID } from "node:crypto"
import type { IncomingHttpHeaders } from "node:http"
import { BadRequest } from "../domain/Errors.ts"
import type { Target } from "../domain/Placement.ts"

// ---------------------------------------------------------------------------
// Paths: the upstream URL is always the service's base URL plus the path, never anything else.
// ---------------------------------------------------------------------------

export const SERVICES_PREFIX = "/services/"
const SERVICE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]*$/

export interface ServicePath {
  readonly serviceId: string
  /** The path below the service, raw as the client sent it ("" or starting with "/"). */
  readonly path: string
  /** The query string with its "?", raw ("" when none). */
  readonly query: string
}

export const isServicesUrl = (url: string) => url.startsWith(SERVICES_PREFIX) || url === "/services"

const decodeSegment = (segment: string): string | undefined => {
  try {
    return decodeURIComponent(segment)
  } catch {
    return undefined
  }
}

// A segment that is a dot segment, raw, or once its `;parameters` are removed (servlet containers resolve `..;`).
const NEEDS_CHECK = /[%\\]|(?:^|\/)\.\.?(?:[/;]|$)/

const isDotSegment = (part: string) => {
  const semicolon = part.indexOf(";")
  const bare = semicolon === -1 ? part : part.slice(0, semicolon)
  return bare === "." || bare === ".."
}

/**
 * Refuses any path an upstream could resolve outside the base path: dot segments, raw or percent-encoded, with or
 * without `;parameters`, encoded slashes or backslashes hiding them, and NUL bytes.
 */
export const checkPath = (path: string): BadRequest | undefined => {
  // Without escapes, backslashes or dot segments there is nothing to decode or refuse: the common case, checked once.
  if (!NEEDS_CHECK.test(path)) return undefined
  for (const segment of path.split(/[/\\]/)) {
    const decoded = decodeSegment(segment)
    if (decoded === undefined)
      return new BadRequest({ reason: `malformed percent-encoding in path segment "${segment}"` })
    if (decoded.includes("\0")) return new BadRequest({ reason: "NUL byte in path" })
    for (const part of decoded.split(/[/\\]/)) {
      if (isDotSegment(part)) {
        return new BadRequest({ reason: "path tries to leave the service's base URL (dot segment)" })
      }
    }
  }
  return undefined
}

/** `/services/{id}/{path}?{query}` → its parts, or the reason it is refused. */
export const parseServicePath = (url: string): ServicePath | BadRequest => {
  const rest = url.startsWith(SERVICES_PREFIX) ? url.slice(SERVICES_PREFIX.length) : ""
  const queryAt = rest.indexOf("?")
  const pathPart = queryAt === -1 ? rest : rest.slice(0, queryAt)
  const query = queryAt === -1 ? "" : rest.slice(queryAt)
  const slashAt = pathPart.indexOf("/")
  const rawId = slashAt === -1 ? pathPart : pathPart.slice(0, slashAt)
  const path = slashAt === -1 ? "" : pathPart.slice(slashAt)
  const serviceId = rawId.includes("%") ? decodeSegment(rawId) : rawId
  if (serviceId === undefined || !SERVICE_ID.test(serviceId)) {
    return new BadRequest({ reason: `invalid service id "${rawId}"` })
  }
  return checkPath(path) ?? { serviceId, path, query }
}

export interface UpstreamBase {
  readonly origin: string
  /** The base URL's path without its trailing slash. */
  readonly basePath: string
  /** The base URL's path as written, for requests to the service root. */
  readonly rootPath: string
}

const upstreamBases = new WeakMap<Target, UpstreamBase>()

/** The parts of a target's base URL, parsed once per target. */
export const upstreamBase = (target: Target): UpstreamBase => {
  let base = upstreamBases.get(target)
  if (base === undefined) {
    const url = new URL(target.baseUrl)
    base = { origin: url.origin, basePath: url.pathname.replace(/\/+$/, ""), rootPath: url.pathname }
    upstreamBases.set(target, base)
  }
  return base
}

/** The request-target sent upstream: base path + path + query. The origin is fixed by the pool. */
export const upstreamPath = (base: UpstreamBase, path: string, query: string) =>
  (path === "" ? base.rootPath : base.basePath + path) + query

// ---------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------

export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade"
])

/** Headers never sent upstream besides hop-by-hop ones: undici sets Host from the origin; node answers Expect. */
const REQUEST_ONLY: ReadonlySet<string> = new Set(["host", "expect"])

/** Set by the gateway itself: the client's own values are replaced (or, for X-Forwarded-For and Forwarded, extended). */
const SET_HERE: ReadonlySet<string> = new Set([
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-forwarded-host",
  "x-request-id",
  "x-real-ip",
  "forwarded"
])

/**
 * Lengths of every header name the rules above may act on. A name of another length is kept without lower-casing it
 * (the common case), unless `Connection` named it.
 */
const lengthsOf = (...sets: ReadonlyArray<ReadonlySet<string>>) => {
  const lengths = new Array<boolean>(32).fill(false)
  for (const set of sets) for (const name of set) lengths[name.length] = true
  return lengths
}
const REQUEST_LENGTHS = lengthsOf(HOP_BY_HOP, REQUEST_ONLY, SET_HERE)
const RESPONSE_LENGTHS = lengthsOf(HOP_BY_HOP, new Set(["x-request-id"]))

const connectionTokens = (value: string): ReadonlyArray<string> =>
  value.split(",").map((token) => token.trim().toLowerCase())

export interface ForwardedFor {
  readonly clientIp: string | undefined
  readonly proto: string
  readonly host: string | undefined
  readonly requestId: string
}

/** A `Forwarded` element (RFC 7239): a value that is not a token is a quoted string. */
const forwardedPair = (key: string, value: string) =>
  /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(value) ? `${key}=${value}` : `${key}="${value.replace(/["\\]/g, "\\$&")}"`

/**
 * Flat [name, value, ...] headers for upstream: hop-by-hop, Host, Expect and `strip` removed; X-Forwarded-For (and a
 * client's `Forwarded`) extended with the client; X-Forwarded-Proto/-Host and X-Request-ID set; a client's
 * X-Real-IP replaced by the client's address.
 */
export const upstreamHeaders = (
  raw: ReadonlyArray<string>,
  strip: ReadonlySet<string>,
  forwarded: ForwardedFor
): Array<string> => {
  let named: ReadonlySet<string> | undefined
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === "connection") {
      named = new Set([...(named ?? []), ...connectionTokens(raw[i + 1]!)])
    }
  }
  const out: Array<string> = []
  let priorFor: string | undefined
  let priorForwarded: string | undefined
  let realIp = false
  let stripLengths = 0
  for (const name of strip) stripLengths |= 1 << (name.length & 31)
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    if (!REQUEST_LENGTHS[name.length] && (stripLengths & (1 << (name.length & 31))) === 0 && named === undefined) {
      out.push(name, raw[i + 1]!)
      continue
    }
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || REQUEST_ONLY.has(lower) || strip.has(lower) || named?.has(lower)) continue
    if (SET_HERE.has(lower)) {
      if (lower === "x-forwarded-for") priorFor = priorFor === undefined ? raw[i + 1] : `${priorFor}, ${raw[i + 1]}`
      else if (lower === "forwarded")
        priorForwarded = priorForwarded === undefined ? raw[i + 1] : `${priorForwarded}, ${raw[i + 1]}`
      else if (lower === "x-real-ip") realIp = true
      continue
    }
    out.push(name, raw[i + 1]!)
  }
  const clientIp = forwarded.clientIp
  const forwardedFor =
    clientIp === undefined ? priorFor : priorFor === undefined ? clientIp : `${priorFor}, ${clientIp}`
  if (forwardedFor !== undefined) out.push("x-forwarded-for", forwardedFor)
  out.push("x-forwarded-proto", forwarded.proto)
  if (forwarded.host !== undefined) out.push("x-forwarded-host", forwarded.host)
  out.push("x-request-id", forwarded.requestId)
  // Only when the client sent them: a spoofed value never reaches the upstream, and no request pays for the rest.
  if (realIp && clientIp !== undefined) out.push("x-real-ip", clientIp)
  if (priorForwarded !== undefined) {
    const hop = [
      ...(clientIp === undefined ? [] : [forwardedPair("for", clientIp.includes(":") ? `[${clientIp}]` : clientIp)]),
      ...(forwarded.host === undefined ? [] : [forwardedPair("host", forwarded.host)]),
      forwardedPair("proto", forwarded.proto)
    ].join(";")
    out.push("forwarded", `${priorForwarded}, ${hop}`)
  }
  return out
}

/** Flat headers with every Content-Length replaced by `length` (a body the gateway read, and maybe changed). */
export const withContentLength = (headers: Array<string>, length: number): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.length === 14 && headers[i]!.toLowerCase() === "content-length") continue
    out.push(headers[i]!, headers[i + 1]!)
  }
  out.push("content-length", String(length))
  return out
}

/**
 * Response headers for the client, from undici's raw [name, value, ...] buffers: hop-by-hop and Connection-named
 * ones removed, the upstream's X-Request-ID replaced by `requestId` (when given), everything else (Content-Encoding,
 * Content-Length, Set-Cookie repeated) passed as sent, in order, names in their original case.
 */
export const clientHeaders = (raw: ReadonlyArray<Buffer | string>, requestId?: string): Array<string> => {
  let named: ReadonlySet<string> | undefined
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10) {
      const name = raw[i]!.toString("latin1").toLowerCase()
      if (name === "connection") {
        const value = raw[i + 1]!.toString("latin1")
        if (value !== "keep-alive" && value !== "close") named = new Set([...(named ?? []), ...connectionTokens(value)])
      }
    }
  }
  const out: Array<string> = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString("latin1")
    if (RESPONSE_LENGTHS[name.length] || named !== undefined) {
      const lower = name.toLowerCase()
      if (HOP_BY_HOP.has(lower) || (requestId !== undefined && lower === "x-request-id") || named?.has(lower)) continue
    }
    out.push(name, raw[i + 1]!.toString("latin1"))
  }
  if (requestId !== undefined) out.push("x-request-id", requestId)
  return out
}

/** Flat [name, value, ...] headers as an object, names lower-cased, repeated names as arrays (the dispatcher's answer). */
export const headersObject = (flat: ReadonlyArray<string>): Record<string, string | Array<string>> => {
  const out: Record<string, string | Array<string>> = {}
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!.toLowerCase()
    const prior = out[name]
    if (prior === undefined) out[name] = flat[i + 1]!
    else if (typeof prior === "string") out[name] = [prior, flat[i + 1]!]
    else prior.push(flat[i + 1]!)
  }
  return out
}

const MAX_REQUEST_ID = 200

/** The client's X-Request-ID when it sent a usable one, else a new UUID. */
export const requestIdOf = (headers: IncomingHttpHeaders | Readonly<Record<string, string>>) => {
  const given = headers["x-request-id"]
  return typeof given === "string" && given !== "" && given.length <= MAX_REQUEST_ID && !hasControl(given)
    ? given
    : randomUUID()
}

/** RFC 9110 §5.1: a field name is a token. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
/** RFC 9110 §5.5: a field value never holds CR, LF or NUL (nor other controls but HTAB). */
const hasControl = (value: string) => {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return true
  }
  return false
}

/** Why a header given by a dispatcher caller cannot be sent, or undefined when it can. */
export const invalidHeader = (name: string, value: string): string | undefined => {
  if (!TOKEN.test(name)) return `header name ${JSON.stringify(name)} is not a valid HTTP token`
  if (hasControl(value)) return `header "${name}" has a control character (CR, LF, NUL) in its value`
  return undefined
}

/** RFC 9112 §3.2: a request with more than one Host header is refused with 400. */
export const hasDuplicateHost = (raw: ReadonlyArray<string>) => {
  let seen = false
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 4 && raw[i]!.toLowerCase() === "host") {
      if (seen) return true
      seen = true
    }
  }
  return false
}
