import { ParseResult, Schema, SchemaAST } from "effect"

// The value schemas every config schema is built from. A field reads `name: Value.pipe(default..., fromKey(...))`:
// the file's snake_case key, the check, the default and the domain name in one place.

const urlLike = (value: string) => {
  try {
    // `{host}` is filled from the machine at start time; any host name validates the rest.
    const url = new URL(value.replaceAll("{host}", "placeholder.invalid"))
    return url.protocol === "http:" || url.protocol === "https:"
  } catch {
    return false
  }
}

export const HttpUrl = Schema.String.pipe(
  Schema.filter(urlLike, { message: () => "expected an http:// or https:// URL" })
)

export const Millis = Schema.NonNegativeInt

export const PositiveInt = Schema.Int.pipe(Schema.positive({ message: () => "expected a whole number > 0" }))

export const Port = Schema.Int.pipe(Schema.between(0, 65535, { message: () => "expected a port 0-65535" }))

/** Seconds (fractions allowed) where 0 means "never", milliseconds in the domain. */
export const SecondsOrNeverAsMillis = Schema.transform(
  Schema.Number.pipe(Schema.nonNegative({ message: () => "expected a number of seconds >= 0 (0 = never)" })),
  Schema.Number,
  { strict: true, decode: (seconds) => Math.round(seconds * 1000), encode: (ms) => ms / 1000 }
)

/** A number of seconds in the file (fractions allowed), milliseconds in the domain. */
export const SecondsAsMillis = Schema.transform(
  Schema.Number.pipe(Schema.positive({ message: () => "expected a number of seconds > 0" })),
  Schema.Number,
  { strict: true, decode: (seconds) => Math.round(seconds * 1000), encode: (ms) => ms / 1000 }
)

const truthy = new Set(["true", "yes", "on", "1"])
const falsy = new Set(["false", "no", "off", "0"])

/**
 * A boolean, also spelled yes/no, on/off, 1/0 in any case: the first Hestia's environment values (and YAML 1.1's
 * booleans) mean what they meant there.
 */
export const Flag = Schema.transformOrFail(Schema.Unknown, Schema.Boolean, {
  strict: true,
  decode: (value, _, ast) => {
    const text = typeof value === "string" || typeof value === "number" ? String(value).trim().toLowerCase() : ""
    if (typeof value === "boolean") return ParseResult.succeed(value)
    if (truthy.has(text)) return ParseResult.succeed(true)
    if (falsy.has(text)) return ParseResult.succeed(false)
    return ParseResult.fail(
      new ParseResult.Type(ast, value, `expected true or false (or yes/no, on/off, 1/0), got ${JSON.stringify(value)}`)
    )
  },
  encode: ParseResult.succeed
})

/** A secret or a name where an empty string (an unset `${VAR:-}` in compose files) means "not given". */
export const Credential = Schema.transform(Schema.String, Schema.UndefinedOr(Schema.String), {
  strict: true,
  decode: (value) => (value.trim() === "" ? undefined : value),
  encode: (value) => value ?? ""
})

/** An optional key whose absence (or `null`) is `undefined` in the domain type, where the key is always present. */
export const orUndefined = <A, I, R>(schema: Schema.Schema<A, I, R>) =>
  Schema.optionalWith(Schema.UndefinedOr(schema), { nullable: true, default: () => undefined })

/** The keys a schema reads from the file (its encoded side), in declaration order. */
export const fileKeys = (schema: Schema.Schema.Any): ReadonlyArray<string> => {
  const ast = SchemaAST.encodedAST(schema.ast)
  return SchemaAST.isTypeLiteral(ast) ? ast.propertySignatures.map((property) => String(property.name)) : []
}
