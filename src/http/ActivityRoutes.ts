import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { LiveConfig } from "../config/LiveConfig.ts"
import { UnknownService } from "../domain/Errors.ts"
import { ActivityLog } from "../store/ActivityLog.ts"
import { DEFAULT_ACTIVITY_LIMIT } from "./ApiSchemas.ts"
import { ControlApi } from "./ControlApi.ts"

/** `GET /v1/activity`: the persisted timeline, newest first, one bounded page at a time. */
export const ActivityHandlers = HttpApiBuilder.group(ControlApi, "activity", (handlers) =>
  Effect.gen(function* () {
    const live = yield* LiveConfig
    const store = yield* ActivityLog
    return handlers.handle("list", ({ urlParams }) =>
      Effect.gen(function* () {
        const { serviceId, before } = urlParams
        if (serviceId !== undefined && !live.current().services.has(serviceId))
          return yield* new UnknownService({ serviceId })
        const limit = urlParams.limit ?? DEFAULT_ACTIVITY_LIMIT
        const rows = yield* store.activity({
          serviceId,
          limit,
          beforeId: before !== undefined && "id" in before ? before.id : undefined,
          beforeTs: before !== undefined && "ts" in before ? before.ts : undefined
        })
        return { activity: rows, nextBefore: rows.length === limit ? rows[rows.length - 1]!.id : null }
      })
    )
  })
)
