import type { ModelApi } from "../domain/ModelApiErrors.ts"
import { jsonDeeperThan, MAX_JSON_DEPTH } from "./Dispatcher.ts"

// The `model` of a model endpoint's request body, and the one edit the gateway makes to that body: an alias's value
// replaced by the upstream's name, every other byte as the client sent it.

/** Where the model was named: `model`, or (Ollama's older API: `/api/show`, `/api/pull`...) `name` without `model`. */
export type ModelField = "model" | "name"

export interface ModelNamed {
  readonly model: string
  readonly field: ModelField
}

/** The model a body names, or why it names none (the reason a client is told). */
export const modelOf = (body: Buffer, api: ModelApi): ModelNamed | { readonly problem: string } => {
  if (body.length === 0) return { problem: 'the request has no body: a JSON object with "model" is expected' }
  const text = body.toString("utf8")
  if (jsonDeeperThan(text, MAX_JSON_DEPTH)) {
    return { problem: `the request body is JSON nested deeper than ${MAX_JSON_DEPTH} levels` }
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    return { problem: `the request body is not JSON (${(error as Error).message})` }
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    return { problem: 'the request body is not a JSON object with "model"' }
  }
  const fields = parsed as Record<string, unknown>
  const field: ModelField = api === "ollama" && !("model" in fields) && "name" in fields ? "name" : "model"
  const value = fields[field]
  if (value === undefined) return { problem: 'the request body has no "model"' }
  if (typeof value !== "string") return { problem: `"${field}" must be a string, not ${JSON.stringify(value)}` }
  return { model: value, field }
}

const isSpace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d

/** The offset just past the JSON string that starts at `at` (a `"`). */
const stringEnd = (bytes: Buffer, at: number) => {
  let i = at + 1
  while (i < bytes.length) {
    const c = bytes[i]!
    if (c === 0x5c) i += 2
    else if (c === 0x22) return i + 1
    else i++
  }
  return i
}

/** The offset just past the JSON value that starts at `at`. */
const valueEnd = (bytes: Buffer, at: number) => {
  const first = bytes[at]
  if (first === 0x22) return stringEnd(bytes, at)
  if (first === 0x7b || first === 0x5b) {
    let depth = 0
    let i = at
    while (i < bytes.length) {
      const c = bytes[i]!
      if (c === 0x22) {
        i = stringEnd(bytes, i)
        continue
      }
      if (c === 0x7b || c === 0x5b) depth++
      else if (c === 0x7d || c === 0x5d) {
        depth--
        if (depth === 0) return i + 1
      }
      i++
    }
    return i
  }
  let i = at
  while (i < bytes.length && !isSpace(bytes[i]!) && bytes[i] !== 0x2c && bytes[i] !== 0x7d) i++
  return i
}

/**
 * Byte offsets of the value of top-level `field` in a JSON object (the last one, as JSON.parse keeps the last of a
 * key given twice). The text is valid JSON already (`modelOf` parsed it); keys are compared once decoded, so an
 * escaped spelling of the name counts.
 */
export const fieldValueSpan = (bytes: Buffer, field: string): readonly [number, number] | undefined => {
  let i = 0
  const skipSpace = () => {
    while (i < bytes.length && isSpace(bytes[i]!)) i++
  }
  skipSpace()
  if (bytes[i] !== 0x7b) return undefined
  i++
  let found: readonly [number, number] | undefined
  for (;;) {
    skipSpace()
    if (i >= bytes.length || bytes[i] === 0x7d) return found
    const keyEnd = stringEnd(bytes, i)
    const key = JSON.parse(bytes.toString("utf8", i, keyEnd)) as string
    i = keyEnd
    skipSpace()
    i++ // the colon
    skipSpace()
    const end = valueEnd(bytes, i)
    if (key === field) found = [i, end]
    i = end
    skipSpace()
    if (bytes[i] === 0x2c) i++
  }
}

/** The body with the value of `field` replaced by `name` (a JSON string); every other byte unchanged. */
export const withModel = (body: Buffer, field: ModelField, name: string): Buffer => {
  const span = fieldValueSpan(body, field)
  if (span === undefined) return body
  return Buffer.concat([body.subarray(0, span[0]), Buffer.from(JSON.stringify(name), "utf8"), body.subarray(span[1])])
}
