import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, ParseResult, Schema } from "effect"
import { HestiaConfig } from "../config/HestiaConfig.ts"
import { BadRequest, UnknownService } from "../domain/Errors.ts"
import { ActivityLog } from "../store/ActivityLog.ts"

export const DEFAULT_LIMIT = 100
export const MAX_LIMIT = 1_000

/** A search parameter decoded with one plain message when it is wrong (the value is echoed back). */
const param = <A>(name: string, expected: string, parse: (text: string) => A | undefined, show: (value: A) => string) =>
  Schema.transformOrFail(Schema.String, Schema.Any as Schema.Schema<A>, {
    strict: true,
    decode: (text, _, ast) => {
      const value = parse(text)
      return value === undefined
        ? ParseResult.fail(new ParseResult.Type(ast, text, `${name} must be ${expected}, got "${text}"`))
        : ParseResult.succeed(value)
    },
    encode: (value) => ParseResult.succeed(show(value))
  })

const wholeNumber = (text: string) => (/^\d{1,15}$/.test(text) ? Number(text) : undefined)

const Limit = param(
  "limit",
  `a whole number from 1 to ${MAX_LIMIT}`,
  (text) => {
    const n = wholeNumber(text)
    return n !== undefined && n >= 1 && n <= MAX_LIMIT ? n : undefined
  },
  String
)

const Before = param(
  "before",
  "an activity id or an ISO-8601 time such as 2025-01-31T12:00:00Z",
  (text): { readonly id: number } | { readonly ts: number } | undefined => {
    const id = wholeNumber(text)
    if (id !== undefined) return id > 0 ? { id } : undefined
    const ts = /^\d{4}-\d\d-\d\dT/.test(text) ? Date.parse(text) : Number.NaN
    return Number.isNaN(ts) ? undefined : { ts }
  },
  (before) => ("id" in before ? String(before.id) : new Date(before.ts).toISOString())
)

/** `?serviceId=&limit=&before=`: `before` is a row id (the previous page's `nextBefore`) or an ISO-8601 time. */
export const ActivityParams = Schema.Struct({
  serviceId: Schema.optional(Schema.NonEmptyString.annotations({ message: () => "serviceId must not be empty" })),
  limit: Schema.optional(Limit),
  before: Schema.optional(Before)
})

const decodeParams = Schema.decodeUnknown(ActivityParams, { onExcessProperty: "error", errors: "first" })

/** `GET /v1/activity`: the persisted timeline, newest first, one bounded page at a time. */
export const activity = Effect.gen(function* () {
  const params = yield* Effect.flatMap(HttpServerRequest.ParsedSearchParams, decodeParams).pipe(
    Effect.mapError((error) => {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]!
      const name = issue.path.join(".")
      if (issue._tag === "Unexpected") return new BadRequest({ reason: `unknown parameter "${name}"` })
      return new BadRequest({ reason: issue.message.startsWith(name) ? issue.message : `${name}: ${issue.message}` })
    })
  )
  const config = yield* HestiaConfig
  if (params.serviceId !== undefined && !config.services.has(params.serviceId)) {
    return yield* new UnknownService({ serviceId: params.serviceId })
  }
  const store = yield* ActivityLog
  const limit = params.limit ?? DEFAULT_LIMIT
  const before = params.before
  const rows = yield* store.activity({
    serviceId: params.serviceId,
    limit,
    beforeId: before !== undefined && "id" in before ? before.id : undefined,
    beforeTs: before !== undefined && "ts" in before ? before.ts : undefined
  })
  return yield* HttpServerResponse.json({
    activity: rows,
    nextBefore: rows.length === limit ? rows[rows.length - 1]!.id : null
  })
})
