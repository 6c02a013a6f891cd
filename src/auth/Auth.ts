import { hash, randomBytes, timingSafeEqual } from "node:crypto"
import { Effect, FiberSet } from "effect"
import { HestiaConfig } from "../config/HestiaConfig.ts"
import { Unauthorized } from "../domain/Errors.ts"
import { ActivityLog } from "../store/ActivityLog.ts"
import { AuthKeys } from "../store/AuthKeys.ts"
import { guardFor } from "./Guard.ts"

export { type Guard, guardFor } from "./Guard.ts"

/**
 * Keys are stored as SHA-256: they are 256-bit random strings, so a slow password hash would add latency to every
 * request without making a leaked hash any easier to reverse.
 */
export const hashKey = (key: string) => hash("sha256", key, "hex")

/** A new API key: 32 random bytes, base64url, with a prefix that makes it recognisable in a config or a leak scan. */
export const newKey = () => `hk_${randomBytes(32).toString("base64url")}`

type HeaderValue = string | ReadonlyArray<string> | undefined
export type RequestHeaders = Readonly<Record<string, HeaderValue>>

const single = (value: HeaderValue) => (typeof value === "string" ? value : undefined)

/** The API key a request presents: `X-API-Key: <key>` or `Authorization: Bearer <key>`. */
export const presentedKey = (headers: RequestHeaders): string | undefined => {
  const header = single(headers["x-api-key"])?.trim()
  if (header !== undefined && header !== "") return header
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(single(headers.authorization) ?? "")
  return bearer?.[1]
}

/** `Authorization: Basic ...` as `user:password`, or undefined. */
const basicCredentials = (headers: RequestHeaders): string | undefined => {
  const basic = /^Basic\s+(\S+)\s*$/i.exec(single(headers.authorization) ?? "")
  return basic === null ? undefined : Buffer.from(basic[1]!, "base64").toString("utf8")
}

// One-shot hashing: about half the cost of createHash().update().digest() on the request path.
const digest = (text: string) => hash("sha256", text, "buffer")

export interface RequestInfo {
  readonly method: string
  /** Path with the query string; only the path is ever recorded. */
  readonly url: string
  readonly headers: RequestHeaders
  readonly remoteAddress?: string | undefined
  readonly serviceId?: string | undefined
}

/** At most this many denials a second become log lines and activity rows; the rest are counted in the next one. */
const DENIALS_PER_SECOND = 10
/** How often, at most, key changes made with `npm run keys` are read and last-use times written. */
const MAINTENANCE_MS = 5_000

/**
 * API keys and dashboard credentials. Checks are synchronous against hashes held in memory (the proxy's fast path
 * calls them per request); last use is written in batches, never per request.
 */
export class Auth extends Effect.Service<Auth>()("hestia/Auth", {
  scoped: Effect.gen(function* () {
    const config = yield* HestiaConfig
    const store = yield* AuthKeys
    const activity = yield* ActivityLog
    const clock = yield* Effect.clock
    // Denial logging and key maintenance run off the request path, on fibers of this service's scope.
    const background = yield* FiberSet.make()
    const runFork = yield* FiberSet.runtime(background)<never>()

    const configHashes = config.auth.apiKeys.map(hashKey)
    yield* store.syncConfigKeys(configHashes)

    let keys: ReadonlyArray<{ readonly hash: string; readonly digest: Buffer }> = []
    let enabled = false
    /** Request headers never forwarded upstream: the gateway's own credentials. Updated in place. */
    const strip = new Set<string>()

    // Enabled by keys in the config, or by any key added with the CLI, even if disabled since: disabling the last
    // key locks the API rather than opening it. The config's keys count even when the database could not record
    // them (a read-only file): only a row that disables one turns it off.
    const reload = Effect.gen(function* () {
      const rows = yield* store.authKeys()
      const disabled = new Set(rows.filter((row) => row.disabledAt !== null).map((row) => row.hash))
      const usable = new Set([
        ...rows.filter((row) => row.disabledAt === null).map((row) => row.hash),
        ...configHashes.filter((hash) => !disabled.has(hash))
      ])
      keys = Array.from(usable, (hash) => ({ hash, digest: Buffer.from(hash, "hex") }))
      enabled = config.auth.apiKeys.length > 0 || rows.some((row) => row.source === "cli")
      strip.clear()
      if (enabled) {
        strip.add("x-api-key")
        if (!config.auth.forwardAuthorization) strip.add("authorization")
      }
    })
    yield* reload

    const used = new Map<string, number>()
    const flushUsed = Effect.suspend(() => {
      const batch = Array.from(used)
      used.clear()
      return store.touchKeys(batch)
    })
    let lastMaintenance = clock.unsafeCurrentTimeMillis()
    let maintaining = false
    /** Piggybacks on requests, so an idle gateway runs no timer for it. */
    const maintain = (now: number) => {
      if (maintaining || now - lastMaintenance < MAINTENANCE_MS) return
      maintaining = true
      lastMaintenance = now
      runFork(
        flushUsed.pipe(
          Effect.zipRight(reload),
          // The keys in memory stay as they were: the next maintenance tries again.
          Effect.catchAllCause((cause) =>
            Effect.logWarning("could not reload API keys", cause).pipe(
              Effect.annotateLogs({ event: "auth_reload_failed" })
            )
          ),
          Effect.ensuring(
            Effect.sync(() => {
              maintaining = false
            })
          )
        )
      )
    }
    // At shutdown: what is running finishes (a denial row, a maintenance), then the last uses are written.
    yield* Effect.addFinalizer(() => FiberSet.awaitEmpty(background).pipe(Effect.zipRight(flushUsed)))

    if (!enabled) {
      yield* Effect.logWarning("authentication is disabled: anyone who can reach this port can use every service").pipe(
        Effect.annotateLogs({ event: "auth_disabled" })
      )
    }

    /** Constant time: every enabled key is compared, whatever matched. */
    const matchKey = (key: string): string | undefined => {
      const presented = digest(key)
      let match: string | undefined
      for (const candidate of keys) {
        if (timingSafeEqual(presented, candidate.digest)) match = candidate.hash
      }
      return match
    }

    const dashboardDigest =
      config.auth.dashboard === undefined
        ? undefined
        : digest(`${config.auth.dashboard.username}:${config.auth.dashboard.password}`)

    const dashboardMatches = (headers: RequestHeaders) => {
      const credentials = basicCredentials(headers)
      return (
        dashboardDigest !== undefined &&
        credentials !== undefined &&
        timingSafeEqual(digest(credentials), dashboardDigest)
      )
    }

    let windowStart = 0
    let inWindow = 0
    let suppressed = 0
    const recordDenial = (request: RequestInfo, reason: string) => {
      const now = clock.unsafeCurrentTimeMillis()
      if (now - windowStart >= 1_000) {
        windowStart = now
        inWindow = 0
      }
      if (inWindow >= DENIALS_PER_SECOND) {
        suppressed++
        return
      }
      inWindow++
      const queryAt = request.url.indexOf("?")
      const detail = {
        reason,
        method: request.method,
        path: queryAt === -1 ? request.url : request.url.slice(0, queryAt),
        remoteAddress: request.remoteAddress ?? null,
        ...(suppressed > 0 ? { suppressed } : {})
      }
      suppressed = 0
      const requestId = single(request.headers["x-request-id"])?.slice(0, 200)
      runFork(
        Effect.logWarning(`request denied: ${reason}`).pipe(
          Effect.annotateLogs({ event: "auth_denied", ...detail, serviceId: request.serviceId, requestId }),
          Effect.zipRight(
            activity.append({ ts: now, type: "auth_denied", serviceId: request.serviceId, requestId, detail })
          )
        )
      )
    }

    /** A valid API key presented as a header, or as the password of Basic credentials (what a browser can send). */
    const keyMatches = (headers: RequestHeaders, now: number): "ok" | "missing" | "invalid" => {
      const basic = basicCredentials(headers)
      const key = presentedKey(headers) ?? (basic === undefined ? undefined : basic.slice(basic.indexOf(":") + 1))
      if (key === undefined) return "missing"
      const hash = matchKey(key)
      if (hash === undefined) return "invalid"
      used.set(hash, now)
      return "ok"
    }

    /** The credentials a request needs, checked; the typed error (also recorded) when they are missing or wrong. */
    const check = (request: RequestInfo): Unauthorized | undefined => {
      const queryAt = request.url.indexOf("?")
      const guard = guardFor(request.method, queryAt === -1 ? request.url : request.url.slice(0, queryAt))
      if (guard === "open") return undefined
      if (guard === "dashboard") {
        if (dashboardDigest !== undefined) {
          if (dashboardMatches(request.headers)) return undefined
          const reason =
            basicCredentials(request.headers) === undefined
              ? "missing dashboard credentials"
              : "wrong dashboard credentials"
          recordDenial(request, reason)
          return new Unauthorized({ reason, challenge: "Basic" })
        }
        // No dashboard login but API keys on: the page needs a key (in a browser: any user name, the key as password).
        if (!enabled) return undefined
        const now = clock.unsafeCurrentTimeMillis()
        maintain(now)
        const outcome = keyMatches(request.headers, now)
        if (outcome === "ok") return undefined
        const reason = outcome === "missing" ? "missing API key" : "invalid API key"
        recordDenial(request, reason)
        return new Unauthorized({ reason, challenge: "Basic" })
      }
      const now = clock.unsafeCurrentTimeMillis()
      maintain(now)
      if (!enabled) return undefined
      // The dashboard's own calls: the browser repeats its Basic credentials for every path under `/`.
      if (presentedKey(request.headers) === undefined && dashboardMatches(request.headers)) return undefined
      const outcome = keyMatches(request.headers, now)
      if (outcome === "ok") return undefined
      const reason = outcome === "missing" ? "missing API key" : "invalid API key"
      recordDenial(request, reason)
      return new Unauthorized({ reason })
    }

    return {
      check,
      /** Whether API keys are required (keys configured, or added with the CLI). */
      enabled: () => enabled,
      strip: strip as ReadonlySet<string>
    }
  }),
  dependencies: [AuthKeys.Default, ActivityLog.Default]
}) {}
