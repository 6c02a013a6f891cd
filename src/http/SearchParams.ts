import { ParseResult, Schema } from "effect"
import { BadRequest } from "../domain/Errors.ts"

/**
 * A search parameter decoded with one plain message when it is wrong (the value is echoed back). `jsonSchema` is
 * what the OpenAPI document says of its text.
 */
export const param = <A>(
  name: string,
  expected: string,
  parse: (text: string) => A | undefined,
  show: (value: A) => string,
  jsonSchema: object
) =>
  Schema.transformOrFail(Schema.String, Schema.Any as Schema.Schema<A>, {
    strict: true,
    decode: (text, _, ast) => {
      const value = parse(text)
      return value === undefined
        ? ParseResult.fail(new ParseResult.Type(ast, text, `${name} must be ${expected}, got "${text}"`))
        : ParseResult.succeed(value)
    },
    encode: (value) => ParseResult.succeed(show(value))
  }).annotations({ jsonSchema: { ...jsonSchema, description: expected }, description: expected })

export const wholeNumber = (text: string) => (/^\d{1,15}$/.test(text) ? Number(text) : undefined)

/** A whole number in [min, max]. */
export const intParam = (name: string, min: number, max: number) =>
  param(
    name,
    `a whole number from ${min} to ${max}`,
    (text) => {
      const n = wholeNumber(text)
      return n !== undefined && n >= min && n <= max ? n : undefined
    },
    String,
    { type: "integer", minimum: min, maximum: max }
  )

/** `1`/`true` or `0`/`false`. */
export const flagParam = (name: string) =>
  param(
    name,
    "1, 0, true or false",
    (text) => (text === "1" || text === "true" ? true : text === "0" || text === "false" ? false : undefined),
    (value) => (value ? "1" : "0"),
    { type: "string", enum: ["1", "0", "true", "false"] }
  )

/** A route's search parameters: an unknown one is refused (a typo must not be silently ignored). */
export const strictParams = <Fields extends Schema.Struct.Fields>(fields: Fields) =>
  Schema.Struct(fields).annotations({ parseOptions: { onExcessProperty: "error" } })

/** A request that did not decode (its first issue): BadRequest naming the parameter, in one plain sentence. */
export const badRequestOf = (issue: ParseResult.ArrayFormatterIssue | undefined) => {
  if (issue === undefined) return new BadRequest({ reason: "malformed request" })
  const name = issue.path.join(".")
  if (issue._tag === "Unexpected") return new BadRequest({ reason: `unknown parameter "${name}"` })
  if (name === "" || issue.message.startsWith(name)) return new BadRequest({ reason: issue.message })
  return new BadRequest({ reason: `${name}: ${issue.message}` })
}
