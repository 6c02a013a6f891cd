/** Where the bench's own files and the gateway it measures live. */
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..")
export const BENCH_DIR = join(ROOT, "bench")
export const UPSTREAM = join(BENCH_DIR, "upstream.mjs")
export const REFERENCE = join(BENCH_DIR, "reference-proxy.mjs")
export const NODE = process.execPath
/** The checkout whose gateway is measured (BENCH_GATEWAY_ROOT: another checkout, e.g. a branch). */
export const GATEWAY_ROOT = process.env.BENCH_GATEWAY_ROOT ?? ROOT
