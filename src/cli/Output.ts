import { Options } from "@effect/cli"
import { Console, Effect } from "effect"

// How the `hestia` CLI writes: `--format text` (tables and lines a person reads) or `--format json` (one document a
// script parses; a stream is one JSON object per line). Colours only on a terminal without NO_COLOR; anything else
// (a pipe, a file) gets plain text, @effect/cli's own help and errors included.

export type Format = "text" | "json"

export const format = Options.choice("format", ["text", "json"]).pipe(
  Options.withDescription("text: tables for a person; json: one document for scripts"),
  Options.withDefault("text" as Format)
)

const ESC = String.fromCharCode(27)
const ANSI = new RegExp(`${ESC}\\[[0-9;]*m`, "g")

export const colours = (stream: NodeJS.WriteStream) => stream.isTTY === true && process.env.NO_COLOR === undefined

const paint = (code: string) => (text: string) => (colours(process.stdout) ? `${ESC}[${code}m${text}${ESC}[0m` : text)
export const green = paint("32")
export const yellow = paint("33")
export const red = paint("31")
export const dim = paint("2")
export const bold = paint("1")

export const stateColour = (state: string) =>
  state === "hot" ? green(state) : state === "cold" ? dim(state) : state === "stopping" ? yellow(state) : yellow(state)

const visibleLength = (text: string) => text.replace(ANSI, "").length

/** Columns aligned on their widest cell (colour codes not counted); the last column is not padded. */
export const table = (headers: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) => {
  const all = [headers.map((h) => bold(h)), ...rows]
  const widths = headers.map((_, i) => Math.max(...all.map((row) => visibleLength(row[i] ?? ""))))
  return all
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell + " ".repeat(widths[i]! - visibleLength(cell))))
        .join("  ")
        .trimEnd()
    )
    .join("\n")
}

/** "3 min ago" from an ISO time, or "-". */
export const ago = (iso: string | null | undefined, now: number) => {
  if (iso === null || iso === undefined) return "-"
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000))
  if (seconds < 60) return `${seconds} s ago`
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ago`
  return `${Math.floor(seconds / 86_400)} d ago`
}

/** Local wall-clock time of an ISO time: `12:03:04`. */
export const clock = (iso: string) => {
  const at = new Date(iso)
  return Number.isNaN(at.getTime()) ? iso : at.toTimeString().slice(0, 8)
}

export const printJson = (value: unknown) => Console.log(JSON.stringify(value, null, 2))
export const printLine = (value: unknown) => Console.log(JSON.stringify(value))

/** The Console every command writes through: colour codes removed from what goes to a pipe or a file. */
export const plainWhereNotTerminal = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.console, (console) => {
    const strip = (stream: NodeJS.WriteStream) => (args: ReadonlyArray<unknown>) =>
      colours(stream) ? args : args.map((arg) => (typeof arg === "string" ? arg.replace(ANSI, "") : arg))
    const out = strip(process.stdout)
    const err = strip(process.stderr)
    return Effect.withConsole(effect, {
      ...console,
      log: (...args) => console.log(...out(args)),
      info: (...args) => console.info(...out(args)),
      error: (...args) => console.error(...err(args)),
      warn: (...args) => console.warn(...err(args)),
      unsafe: {
        ...console.unsafe,
        log: (...args) => console.unsafe.log(...out(args)),
        info: (...args) => console.unsafe.info(...out(args)),
        error: (...args) => console.unsafe.error(...err(args)),
        warn: (...args) => console.unsafe.warn(...err(args))
      }
    })
  })
