import { Cookies, HttpClient, type HttpClientError, HttpClientRequest, type HttpClientResponse } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { Context, Effect, Layer, Ref, Stream } from "effect"
import { HestiaConfig } from "../config/HestiaConfig.ts"
import { SemaphoreAuthFailed, SemaphoreRequestFailed, SemaphoreUnreachable } from "../domain/Errors.ts"

export type SemaphoreError = SemaphoreUnreachable | SemaphoreAuthFailed | SemaphoreRequestFailed

/** Of an error answer's body, this much is kept (and no more than about this much is read). */
export const MAX_ERROR_BODY = 500

/** The start of a body, reading one chunk past `max` at most: an error page cannot fill the gateway's memory. */
export const boundedText = (response: HttpClientResponse.HttpClientResponse, max = MAX_ERROR_BODY) =>
  response.stream.pipe(
    Stream.decodeText(),
    Stream.runFoldWhile(
      "",
      (text) => text.length < max,
      (text, chunk) => text + chunk
    ),
    Effect.map((text) => text.slice(0, max)),
    Effect.orElseSucceed(() => "")
  )

/** `ECONNREFUSED: connect ECONNREFUSED 10.0.0.2:3000`: the code first, where undici's message lacks it. */
const networkReason = (error: HttpClientError.RequestError) => {
  const cause = error.cause as { code?: unknown; message?: unknown; cause?: { code?: unknown } } | undefined
  const code = cause?.code ?? cause?.cause?.code
  const message = typeof cause?.message === "string" ? cause.message : error.message
  return typeof code === "string" && !message.includes(code) ? `${code}: ${message}` : message
}

const isOk = (status: number) => status >= 200 && status < 300

/** A non-2xx answer as its typed error: 401/403 is the credentials, anything else a failed request. */
const statusError = (
  response: HttpClientResponse.HttpClientResponse
): Effect.Effect<never, SemaphoreAuthFailed | SemaphoreRequestFailed> =>
  Effect.flatMap(boundedText(response), (body) =>
    Effect.fail(
      response.status === 401 || response.status === 403
        ? new SemaphoreAuthFailed({ url: response.request.url, status: response.status })
        : new SemaphoreRequestFailed({ url: response.request.url, status: response.status, body })
    )
  )

/**
 * Password login, for a server given no API token: `POST /api/auth/login`, then the session cookie on every call. A
 * 401 on a later call (the session aged out, the server restarted) logs in again once and repeats the call; wrong
 * credentials are the login's own 401, SemaphoreAuthFailed.
 */
const withLogin = (api: HttpClient.HttpClient.With<SemaphoreError>, auth: string, password: string) =>
  Effect.gen(function* () {
    const session = yield* Ref.make(Cookies.empty)
    /** Successful logins so far: a call that saw `n` and got a 401 logs in only if nobody has since. */
    const logins = yield* Ref.make(0)
    const oneAtATime = yield* Effect.makeSemaphore(1)
    const login = (seen: number) =>
      oneAtATime.withPermits(1)(
        Effect.gen(function* () {
          if ((yield* Ref.get(logins)) !== seen) return
          const response = yield* api.execute(
            HttpClientRequest.post("/auth/login").pipe(HttpClientRequest.bodyUnsafeJson({ auth, password }))
          )
          if (!isOk(response.status)) return yield* statusError(response)
          yield* Ref.update(session, (cookies) => Cookies.merge(cookies, response.cookies))
          yield* Ref.update(logins, (n) => n + 1)
        })
      )
    return api.pipe(
      // Read at each send, so a repeated call carries the new session.
      HttpClient.mapRequestEffect((request) =>
        Effect.map(Ref.get(session), (cookies) =>
          Cookies.isEmpty(cookies)
            ? request
            : HttpClientRequest.setHeader(request, "cookie", Cookies.toCookieHeader(cookies))
        )
      ),
      HttpClient.transformResponse((send) =>
        Effect.gen(function* () {
          if ((yield* Ref.get(logins)) === 0) yield* login(0)
          const seen = yield* Ref.get(logins)
          const response = yield* send
          if (response.status !== 401) return response
          yield* login(seen)
          return yield* send
        })
      )
    )
  })

/**
 * Semaphore's API (`{semaphore_base_url}/api`) with the gateway's credentials: the API token as a Bearer header, or a
 * password login. Every failure is typed: no answer (refused, reset, unresolvable) is SemaphoreUnreachable, a 401/403
 * SemaphoreAuthFailed, any other non-2xx SemaphoreRequestFailed with the status and the start of the body. The time
 * limit of a call is the caller's (on the Clock), so that it covers reading the answer too.
 */
export const make = Effect.gen(function* () {
  const { semaphore } = yield* HestiaConfig
  const http = yield* HttpClient.HttpClient
  const api: HttpClient.HttpClient.With<SemaphoreError> = http.pipe(
    HttpClient.mapRequest(HttpClientRequest.prependUrl(`${(semaphore.baseUrl ?? "").replace(/\/+$/, "")}/api`)),
    HttpClient.mapRequest(HttpClientRequest.acceptJson),
    HttpClient.catchAll(
      (error): Effect.Effect<never, SemaphoreError> =>
        error._tag === "RequestError"
          ? Effect.fail(new SemaphoreUnreachable({ url: error.request.url, reason: networkReason(error) }))
          : statusError(error.response)
    )
  )
  const authenticated =
    semaphore.apiKey !== undefined && semaphore.apiKey !== ""
      ? api.pipe(HttpClient.mapRequest(HttpClientRequest.bearerToken(semaphore.apiKey)))
      : semaphore.username !== undefined && semaphore.password !== undefined
        ? yield* withLogin(api, semaphore.username, semaphore.password)
        : // No credentials: config validation refuses that for a Semaphore service; a call gets its 401.
          api
  return authenticated.pipe(
    HttpClient.transformResponse((send) =>
      Effect.flatMap(send, (response) => (isOk(response.status) ? Effect.succeed(response) : statusError(response)))
    )
  )
})

/** The HttpClient through which the Semaphore orchestrator talks to Semaphore (cf. Effect's K8sHttpClient). */
export class SemaphoreClient extends Context.Tag("hestia/SemaphoreClient")<
  SemaphoreClient,
  HttpClient.HttpClient.With<SemaphoreError>
>() {
  /** Over whatever HttpClient is provided (a scripted one in tests). */
  static readonly layer = Layer.effect(SemaphoreClient, make)
  /** Over undici, as the gateway runs. */
  static readonly Default = SemaphoreClient.layer.pipe(Layer.provide(NodeHttpClient.layerUndici))
}
