import { Console, Effect } from "effect"
import { toErrorResponse } from "../domain/HttpErrors.ts"
import type { CliError } from "./CliErrors.ts"
import { type Format, printJson } from "./Output.ts"

/** The JSON document of a failure: the gateway's own error body, or the CLI's `{error, message}`. */
export const errorDocument = (error: CliError): Record<string, unknown> =>
  error._tag === "GatewayRefused"
    ? toErrorResponse(error.error).body
    : { error: error._tag, message: error.message, ...("url" in error ? { url: error.url } : {}) }

/** Lines after the one-line message that a person needs: each failed start attempt. */
const details = (error: CliError): ReadonlyArray<string> => {
  if (error._tag !== "GatewayRefused") return []
  const inner = error.error
  const attempts = inner._tag === "StartupFailed" || inner._tag === "QueueTimeout" ? (inner.attempts ?? []) : []
  return attempts.map((a) => `  attempt ${a.attempt} on ${a.machine}: ${a.error}: ${a.message}`)
}

/**
 * A command's failure told once: one line on stderr (`hestia: ...`), the attempts below it in text, the document on
 * stdout in json; the exit code is the error's (the process ends with it once the command is over).
 */
export const reporting =
  (format: Format) =>
  <R>(effect: Effect.Effect<void, CliError, R>): Effect.Effect<void, never, R> =>
    Effect.catchAll(effect, (error) =>
      Effect.gen(function* () {
        if (format === "json") yield* printJson(errorDocument(error))
        yield* Console.error(`hestia: ${error.message}`)
        if (format === "text") for (const line of details(error)) yield* Console.error(line)
        yield* Effect.sync(() => {
          process.exitCode = error.exitCode
        })
      })
    )
