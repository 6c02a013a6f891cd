// The code a strategy's worker thread runs, and the messages it exchanges with the gateway. It is a CommonJS script
// run with `eval: true`: there is no file to ship beside the bundle (dist/main.mjs), and the same code runs under
// vitest, tsx and the bundle. It imports the strategy's bundled module (a `data:` URL) once, then answers calls.

/** What the worker is started with. */
export interface WorkerData {
  /** `data:text/javascript;base64,...`: the strategy bundled with its own imports (see StrategyBundle). */
  readonly url: string
  /** The file's URL as stack traces show it (the bundle's `//# sourceURL=`). */
  readonly sourceUrl: string
  /** The file's name, for error locations. */
  readonly fileName: string
  /** The bundle's source map (JSON), to name positions in the original files. */
  readonly sourceMap: string | undefined
}

export type ToWorker =
  | { readonly t: "call"; readonly id: number; readonly fn: string; readonly args: ReadonlyArray<unknown> }
  | { readonly t: "ping"; readonly id: number }

export type FromWorker =
  /** The module loaded: what it declares (checked by the gateway) and which kind functions it has. */
  | { readonly t: "ready"; readonly name: unknown; readonly kind: unknown; readonly functions: ReadonlyArray<string> }
  | { readonly t: "load_failed"; readonly message: string }
  | { readonly t: "result"; readonly id: number; readonly value: unknown }
  | { readonly t: "threw"; readonly id: number; readonly message: string }
  /** The function returned something that cannot be sent back (a function, a class instance with private state...). */
  | { readonly t: "unsendable"; readonly id: number; readonly message: string }
  | { readonly t: "pong"; readonly id: number }
  | { readonly t: "warning"; readonly message: string }

export const WORKER_SOURCE = String.raw`"use strict"
const { parentPort, workerData } = require("node:worker_threads")
const { SourceMap } = require("node:module")
const { url, sourceUrl, fileName } = workerData
const post = (message) => parentPort.postMessage(message)
const clip = (text) => (text.length > 1000 ? text.slice(0, 1000) + "..." : text)
let sourceMap
try { sourceMap = workerData.sourceMap === undefined ? undefined : new SourceMap(JSON.parse(workerData.sourceMap)) } catch {}

// A position in the bundle as a position in the file it came from: "router.ts:12:7", "lib/util.ts:3:1".
const original = (line, column) => {
  const entry = sourceMap && sourceMap.findEntry(line - 1, column - 1)
  if (!entry || entry.originalSource === undefined) return fileName + ":" + line + ":" + column
  return entry.originalSource + ":" + (entry.originalLine + 1) + ":" + (entry.originalColumn + 1)
}

// "TypeError: x is not a function (router.ts:12:7)": the first stack frame in the strategy's code.
const describe = (error) => {
  if (error instanceof Error) {
    const frame = String(error.stack || "").split("\n").find((line) => line.includes(sourceUrl))
    const position = frame && frame.slice(frame.indexOf(sourceUrl) + sourceUrl.length).match(/^:(\d+):(\d+)/)
    return clip(error.name + ": " + error.message + (position ? " (" + original(Number(position[1]), Number(position[2])) + ")" : ""))
  }
  let text
  try { text = JSON.stringify(error) } catch { text = undefined }
  return clip("threw a non-Error value: " + (text === undefined ? String(error) : text))
}

process.on("unhandledRejection", (reason) => post({ t: "warning", message: "unhandled rejection: " + describe(reason) }))

const loading = import(url).then(
  (module) => {
    const strategy = module.default
    if (strategy === null || typeof strategy !== "object") {
      post({ t: "load_failed", message: "its default export is not an object { name, kind, ... } (got " + (strategy === null ? "null" : typeof strategy) + ")" })
      return undefined
    }
    post({
      t: "ready",
      name: strategy.name,
      kind: strategy.kind,
      functions: ["route", "place", "balance"].filter((fn) => typeof strategy[fn] === "function")
    })
    return strategy
  },
  (error) => {
    post({ t: "load_failed", message: describe(error) })
    return undefined
  }
)

parentPort.on("message", async (message) => {
  if (message.t === "ping") return post({ t: "pong", id: message.id })
  const strategy = await loading
  if (strategy === undefined) return
  let value
  try {
    value = await strategy[message.fn](...message.args)
  } catch (error) {
    return post({ t: "threw", id: message.id, message: describe(error) })
  }
  try {
    post({ t: "result", id: message.id, value })
  } catch (error) {
    post({ t: "unsendable", id: message.id, message: clip(String(error && error.message)) })
  }
})
`
