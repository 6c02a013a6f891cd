import { HttpServerResponse } from "@effect/platform"
import { Effect, Schema } from "effect"
import { LiveConfig } from "../config/LiveConfig.ts"
import { UnknownService } from "../domain/Errors.ts"
import { ActivityLog } from "../store/ActivityLog.ts"
import { decodeSearchParams, intParam, param, wholeNumber } from "./SearchParams.ts"

export const DEFAULT_LIMIT = 100
export const MAX_LIMIT = 1_000

const Limit = intParam("limit", 1, MAX_LIMIT)

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

/** `GET /v1/activity`: the persisted timeline, newest first, one bounded page at a time. */
export const activity = Effect.gen(function* () {
  const params = yield* decodeSearchParams(ActivityParams)
  const config = (yield* LiveConfig).current()
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
