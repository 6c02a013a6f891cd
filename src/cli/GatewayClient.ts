import { Options } from "@effect/cli"
import {
  FetchHttpClient,
  HttpApiClient,
  HttpClient,
  type HttpClientError,
  HttpClientRequest,
  type HttpClientResponse
} from "@effect/platform"
import { Config, Effect, Option, ParseResult, Redacted, Schema, Stream } from "effect"
import { HttpErrors, isGatewayError } from "../domain/HttpErrors.ts"
import { ControlApi } from "../http/ControlApi.ts"
import { GatewayRefused, GatewayUnreachable, StreamEnded, UnexpectedAnswer, UsageError } from "./CliErrors.ts"

export const DEFAULT_URL = "http://127.0.0.1:8080"

/** `--url` (env HESTIA_URL) and `--api-key` (env HESTIA_API_KEY): every command that talks to a gateway has them. */
export const connection = {
  url: Options.text("url").pipe(
    Options.withDescription(`the gateway (env HESTIA_URL, default ${DEFAULT_URL})`),
    Options.withFallbackConfig(Config.string("HESTIA_URL")),
    Options.withDefault(DEFAULT_URL)
  ),
  apiKey: Options.redacted("api-key").pipe(
    Options.withDescription("an API key, when the gateway has auth on (env HESTIA_API_KEY)"),
    Options.withFallbackConfig(Config.redacted("HESTIA_API_KEY")),
    Options.optional
  )
}

export interface Connection {
  readonly url: string
  readonly apiKey: Option.Option<Redacted.Redacted>
}

/** One Server-Sent Event as the gateway sends it. */
export interface ServerSentEvent {
  readonly event: string
  readonly data: string
  readonly id: string | undefined
}

const AnyGatewayError = Schema.Union(...Object.values(HttpErrors).map((entry) => entry.schema))
const decodeGatewayError = Schema.decodeUnknown(Schema.parseJson(AnyGatewayError))

const reasonOf = (error: HttpClientError.RequestError) => {
  const cause = error.cause as { cause?: { code?: unknown; message?: unknown }; message?: unknown } | undefined
  const code = cause?.cause?.code ?? cause?.cause?.message ?? cause?.message
  return typeof code === "string" ? code : error.message
}

/** Every failure of a call, as what the CLI tells (and exits with): typed, never a stack trace. */
const classify =
  (url: string) =>
  (error: unknown): GatewayRefused | GatewayUnreachable | UnexpectedAnswer | UsageError => {
    if (isGatewayError(error)) return new GatewayRefused({ error })
    const tagged = error as { _tag?: string }
    if (tagged._tag === "RequestError") {
      const request = error as HttpClientError.RequestError
      if (request.reason === "InvalidUrl") return new UsageError({ problem: `not a URL: ${url}` })
      return new GatewayUnreachable({ url, reason: reasonOf(request) })
    }
    if (tagged._tag === "ResponseError") {
      const response = (error as HttpClientError.ResponseError).response
      return new UnexpectedAnswer({ url, detail: `HTTP ${response.status} to ${response.request.url}` })
    }
    if (ParseResult.isParseError(error)) {
      return new UnexpectedAnswer({ url, detail: ParseResult.TreeFormatter.formatErrorSync(error).split("\n")[0]! })
    }
    return new UnexpectedAnswer({ url, detail: String(error) })
  }

/** Text as lines, each emitted as soon as its newline arrives (a line split across chunks waits for the rest). */
const lines = <E>(text: Stream.Stream<string, E>) =>
  text.pipe(
    Stream.mapAccum("", (pending, chunk) => {
      const parts = (pending + chunk).split("\n")
      const rest = parts.pop()!
      return [rest, parts.map((line) => (line.endsWith("\r") ? line.slice(0, -1) : line))]
    }),
    Stream.flattenIterables
  )

/** An SSE body as events: `event`/`data`/`id` lines up to a blank line; comments (heartbeats) skipped. */
const events = <E>(text: Stream.Stream<string, E>) =>
  lines(text).pipe(
    Stream.mapAccum(
      { event: "message", data: [] as Array<string>, id: undefined as string | undefined },
      (acc, line) => {
        if (line === "") {
          const done = acc.data.length === 0 ? [] : [{ event: acc.event, data: acc.data.join("\n"), id: acc.id }]
          return [{ event: "message", data: [], id: acc.id }, done]
        }
        if (line.startsWith(":")) return [acc, []]
        const colon = line.indexOf(":")
        const field = colon === -1 ? line : line.slice(0, colon)
        const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "")
        if (field === "event") return [{ ...acc, event: value }, []]
        if (field === "data") return [{ ...acc, data: [...acc.data, value] }, []]
        if (field === "id") return [{ ...acc, id: value }, []]
        return [acc, []]
      }
    ),
    Stream.flattenIterables
  )

/** The gateway, through the client derived from the API's declaration (and its SSE routes as streams of events). */
export const connect = ({ url, apiKey }: Connection) =>
  Effect.gen(function* () {
    const base = url.replace(/\/+$/, "")
    const http = (yield* HttpClient.HttpClient).pipe(
      HttpClient.mapRequest((request) =>
        Option.match(apiKey, {
          onNone: () => request,
          onSome: (key) => HttpClientRequest.setHeader(request, "x-api-key", Redacted.value(key))
        })
      )
    )
    const api = yield* HttpApiClient.makeWith(ControlApi, { httpClient: http, baseUrl: base })
    const failWith = classify(base)

    /** A call of the API, its failures classified. */
    const call = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.mapError(effect, failWith)

    /** An SSE route (its path from the declaration), with its typed refusal when it answers anything but 200. */
    const stream = (path: string, urlParams: Record<string, string> = {}) =>
      Stream.unwrapScoped(
        Effect.gen(function* () {
          const response: HttpClientResponse.HttpClientResponse = yield* http
            .execute(
              HttpClientRequest.get(`${base}${path}`).pipe(
                HttpClientRequest.setUrlParams(urlParams),
                HttpClientRequest.setHeader("accept", "text/event-stream")
              )
            )
            .pipe(Effect.mapError(failWith))
          if (response.status !== 200) {
            const text = yield* response.text.pipe(Effect.mapError(failWith))
            const error = yield* decodeGatewayError(text).pipe(
              Effect.mapError(
                () => new UnexpectedAnswer({ url: base, detail: `HTTP ${response.status} to ${response.request.url}` })
              )
            )
            return yield* new GatewayRefused({ error })
          }
          // The body ended or broke off: the gateway stopped (or dropped this subscriber, which its last event says).
          return events(response.stream.pipe(Stream.decodeText())).pipe(
            Stream.mapError(() => new StreamEnded({ url: base })),
            Stream.concat(Stream.fail(new StreamEnded({ url: base })))
          )
        })
      )

    return { api, call, stream, url: base }
  })

export type Gateway = Effect.Effect.Success<ReturnType<typeof connect>>

/** The platform's fetch client: Node's own, nothing to bundle. */
export const HttpLive = FetchHttpClient.layer
