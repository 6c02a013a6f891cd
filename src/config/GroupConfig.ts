import { Schema } from "effect"
import { Flag, Millis } from "./Fields.ts"

const groupFields = {
  /** At most one member (besides the persistent ones) is running at a time: starting one evicts the other. */
  exclusive: Schema.optionalWith(Flag, { default: () => false }),
  members: Schema.Array(Schema.NonEmptyString).pipe(
    Schema.minItems(1, { message: () => "expected at least one service id" })
  ),
  /** Members that are never evicted and never evict: they fit beside the others. */
  persistent: Schema.optionalWith(Schema.Array(Schema.NonEmptyString), { default: () => [] }),
  /** A member is not evicted before it has been hot this long, so two busy members do not thrash. */
  minHotMs: Schema.optionalWith(Millis, { default: () => 0 }).pipe(Schema.fromKey("min_hot_ms")),
  /** How long an eviction waits for the victim's open requests and streams before it stops it anyway. */
  drainTimeoutMs: Schema.optionalWith(Millis, { default: () => 600_000 }).pipe(Schema.fromKey("drain_timeout_ms"))
}

/** A set of services decided together; `id` is its key under `groups:`. */
export const GroupConfig = Schema.Struct({ id: Schema.String, ...groupFields })
export type GroupConfig = typeof GroupConfig.Type

/** `groups:`, in file order. */
export const Groups = Schema.transform(
  Schema.Record({ key: Schema.String, value: Schema.Struct(groupFields) }),
  Schema.ReadonlyMapFromSelf({ key: Schema.String, value: Schema.typeSchema(GroupConfig) }),
  {
    strict: true,
    decode: (entries) => new Map(Object.entries(entries).map(([id, group]) => [id, { id, ...group }] as const)),
    encode: (groups) => Object.fromEntries([...groups].map(([id, { id: _, ...group }]) => [id, group] as const))
  }
)
