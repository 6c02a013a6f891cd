import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { Effect } from "effect"
import { StrategyLoadFailed } from "../domain/Errors.ts"

// A strategy file as its worker imports it: bundled by esbuild with its own relative imports and packages (Node's
// built-ins stay imports) into one ES module, then imported from a `data:` URL. That is how `.ts` files load in the
// bundle users run (Node 20 cannot import TypeScript by itself), and why every load is fresh: the worker imports code
// it was handed, not a path whose module (and helpers) Node would have cached.

/** A strategy file larger than this is refused before it is read. */
export const MAX_SOURCE_BYTES = 1024 * 1024
/** Its bundle (the file with everything it imports) larger than this is refused. */
export const MAX_BUNDLE_BYTES = 8 * 1024 * 1024

export const loaderOf = (file: string): "ts" | "js" | undefined =>
  file.endsWith(".d.ts") ? undefined : file.endsWith(".ts") ? "ts" : /\.m?js$/.test(file) ? "js" : undefined

/** One line from esbuild's messages: `router.ts:3:7: Expected ";" but found "x"`. */
const formatMessages = (messages: ReadonlyArray<{ text: string; location: { line: number; column: number } | null }>) =>
  messages
    .slice(0, 3)
    .map((m) => `${m.location === null ? "" : `line ${m.location.line}, column ${m.location.column + 1}: `}${m.text}`)
    .join("; ")
    .replace(/\s+/g, " ")

const esbuild = Effect.promise(() => import("esbuild"))

export interface Bundled {
  /** `data:text/javascript;base64,...` */
  readonly url: string
  /** The file's own URL: stack traces name it (`//# sourceURL=`). */
  readonly sourceUrl: string
  /** To turn positions in the bundle into positions in the files it was made of. */
  readonly sourceMap: string | undefined
  readonly bytes: number
}

/** Bundle `source` (the content of `path`, already read and bounded) into a module its worker can import. */
export const bundle = (path: string, source: string) =>
  Effect.gen(function* () {
    const file = Path.basename(path)
    const loader = loaderOf(file)
    if (loader === undefined)
      return yield* new StrategyLoadFailed({ file: path, problem: "not a .ts, .mjs or .js file" })
    const { build } = yield* esbuild
    const fileUrl = pathToFileURL(path).href
    const dir = Path.dirname(path)
    const result = yield* Effect.tryPromise({
      try: () =>
        build({
          // The content that was read (and hashed), not whatever the file holds by now.
          stdin: { contents: source, loader, resolveDir: dir, sourcefile: file },
          bundle: true,
          write: false,
          // Paths in the source map are relative to the folder: errors name "router.ts:12:7", "lib/util.ts:3:1".
          absWorkingDir: dir,
          outfile: `${file}.bundle.mjs`,
          sourcemap: "external",
          format: "esm",
          platform: "node",
          target: "node20",
          logLevel: "silent",
          // As if the module ran from its own file: import.meta and CommonJS globals name it, require() resolves from it.
          define: {
            "import.meta.url": JSON.stringify(fileUrl),
            "import.meta.filename": JSON.stringify(path),
            "import.meta.dirname": JSON.stringify(dir),
            __filename: JSON.stringify(path),
            __dirname: JSON.stringify(dir)
          },
          banner: {
            js: `import { createRequire as __hestiaCreateRequire } from "node:module"; const require = __hestiaCreateRequire(${JSON.stringify(fileUrl)});`
          },
          footer: { js: `//# sourceURL=${fileUrl}` }
        }),
      catch: (error) => {
        const errors = (error as { errors?: ReadonlyArray<any> }).errors
        return new StrategyLoadFailed({
          file: path,
          problem:
            errors !== undefined && errors.length > 0
              ? `does not compile: ${formatMessages(errors)}`
              : `does not compile: ${String(error)}`
        })
      }
    })
    const output = result.outputFiles.find((out) => out.path.endsWith(".mjs"))!.contents
    const sourceMap = result.outputFiles.find((out) => out.path.endsWith(".map"))?.text
    if (output.byteLength > MAX_BUNDLE_BYTES) {
      return yield* new StrategyLoadFailed({
        file: path,
        problem: `bundles to ${mebibytes(output.byteLength)} with its imports; the limit is ${mebibytes(MAX_BUNDLE_BYTES)}`
      })
    }
    return {
      url: `data:text/javascript;base64,${Buffer.from(output).toString("base64")}`,
      sourceUrl: fileUrl,
      sourceMap: sourceMap !== undefined && sourceMap.length <= MAX_BUNDLE_BYTES ? sourceMap : undefined,
      bytes: output.byteLength
    } satisfies Bundled
  })

export const mebibytes = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`
