import { HttpServerRequest } from "@effect/platform"
import { Effect, ParseResult, Schema } from "effect"
import { BadRequest } from "../domain/Errors.ts"

/** A search parameter decoded with one plain message when it is wrong (the value is echoed back). */
export const param = <A>(
  name: string,
  expected: string,
  parse: (text: string) => A | undefined,
  show: (value: A) => string
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
  })

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
    String
  )

/** `1`/`true` or `0`/`false`. */
export const flagParam = (name: string) =>
  param(
    name,
    "1, 0, true or false",
    (text) => (text === "1" || text === "true" ? true : text === "0" || text === "false" ? false : undefined),
    (value) => (value ? "1" : "0")
  )

/** The request's search parameters decoded by `schema`; an unknown or malformed one is a BadRequest naming it. */
export const decodeSearchParams = <A, I>(schema: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknown(schema, { onExcessProperty: "error", errors: "first" })
  return Effect.flatMap(HttpServerRequest.ParsedSearchParams, decode).pipe(
    Effect.mapError((error) => {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]!
      const name = issue.path.join(".")
      if (issue._tag === "Unexpected") return new BadRequest({ reason: `unknown parameter "${name}"` })
      return new BadRequest({ reason: issue.message.startsWith(name) ? issue.message : `${name}: ${issue.message}` })
    })
  )
}
