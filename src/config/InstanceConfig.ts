import { ParseResult, Schema } from "effect"
import { HttpUrl } from "./Fields.ts"
import { LabelValue } from "./MachineConfig.ts"

// `instances:` of a service: several upstreams behind one service id, each request sent to one of them (a balance
// strategy, or the default rule), an instance that refuses connections taken out until its health answers again.
// An instance is a URL, or the first Hestia's mapping `{ url, health_url?, ...labels }`: every other key is a label.

const Label = LabelValue.annotations({ message: () => "expected a label value: a string, a number or a boolean" })

const InstanceMapping = Schema.Struct(
  {
    url: HttpUrl,
    health_url: Schema.optionalWith(Schema.UndefinedOr(HttpUrl), { nullable: true })
  },
  Schema.Record({ key: Schema.String, value: Label })
)

/** One instance as the gateway reads it. */
export const InstanceConfig = Schema.Struct({
  url: Schema.String,
  /** Its own health URL; undefined: the service's health path on the instance's origin (or any HTTP answer). */
  healthUrl: Schema.UndefinedOr(Schema.String),
  /** Every other key of its mapping (`region: us-east`): for balance strategies. */
  labels: Schema.Record({ key: Schema.String, value: LabelValue })
})
export type InstanceConfig = typeof InstanceConfig.Type

const decodeUrl = ParseResult.decodeUnknown(HttpUrl)
const decodeMapping = ParseResult.decodeUnknown(InstanceMapping)

/**
 * `http://a:11434` or `{ url: http://a:11434, health_url: ..., region: us-east }`. Chosen by the value's type, so a
 * bad URL and a bad mapping each get their own message (a union would answer with its first member's).
 */
export const Instance = Schema.transformOrFail(Schema.Unknown, Schema.typeSchema(InstanceConfig), {
  strict: true,
  decode: (entry, options, ast) => {
    if (typeof entry === "string") {
      return ParseResult.map(decodeUrl(entry, options), (url) => ({ url, healthUrl: undefined, labels: {} }))
    }
    if (typeof entry === "object" && entry !== null && !Array.isArray(entry)) {
      return ParseResult.map(decodeMapping(entry, options), ({ url, health_url, ...labels }) => ({
        url,
        healthUrl: health_url,
        labels: labels as Record<string, LabelValue>
      }))
    }
    return ParseResult.fail(
      new ParseResult.Type(ast, entry, "expected a URL, or a mapping { url, health_url?, ...labels }")
    )
  },
  encode: ({ url, healthUrl, labels }) =>
    ParseResult.succeed(
      healthUrl === undefined && Object.keys(labels).length === 0
        ? url
        : { ...labels, url, ...(healthUrl === undefined ? {} : { health_url: healthUrl }) }
    )
})
