import { createHash } from "node:crypto"
import * as Path from "node:path"
import { FileSystem } from "@effect/platform"
import { Data, Effect, Option } from "effect"
import { StrategyLoadFailed } from "../domain/Errors.ts"
import { loaderOf, MAX_SOURCE_BYTES, mebibytes } from "./StrategyBundle.ts"

// Reading `strategies_dir`: which files are strategies, and the content of those that changed since the last read.
// Bounded: a folder with too many entries or strategy files is refused whole; a file too large is refused unread.

/** A folder with more strategy files than this is refused (each loaded strategy may get a thread). */
export const MAX_STRATEGY_FILES = 64
/** A folder with more entries than this (of any kind) is refused before its names are looked at. */
export const MAX_FOLDER_ENTRIES = 10_000

/** `.ts`, `.mjs`, `.js` at the top of the folder; hidden files (editors' swap files) and `.d.ts` are not. */
export const isStrategyFile = (name: string) => !name.startsWith(".") && loaderOf(name) !== undefined

/** The folder cannot be read, or holds too much: nothing in it is looked at. */
export class FolderProblem extends Data.TaggedError("FolderProblem")<{
  readonly dir: string
  readonly problem: string
  /** The folder does not exist (at start, that means no strategies). */
  readonly missing: boolean
}> {
  override get message() {
    return `${this.dir}: ${this.problem}`
  }
}

/** What identifies one version of a file without reading it. */
export const stampOf = (info: FileSystem.File.Info) =>
  `${info.size}:${Option.match(info.mtime, { onNone: () => "", onSome: (date) => date.getTime() })}:${Option.getOrElse(info.ino, () => "")}`

export type FileRead =
  /** Same stamp as last time: not read again. */
  | { readonly _tag: "Unchanged"; readonly name: string }
  | {
      readonly _tag: "Read"
      readonly name: string
      readonly stamp: string
      readonly source: string
      readonly hash: string
    }
  | { readonly _tag: "Unreadable"; readonly name: string; readonly stamp: string; readonly error: StrategyLoadFailed }

export const hashOf = (source: string) => createHash("sha256").update(source).digest("hex")

/**
 * The strategy files of `dir`, in name order. `unchanged(name, stamp, mtimeMs)` says which need not be read again
 * (the caller compares with what it read before).
 */
export const readFolder = (dir: string, unchanged: (name: string, stamp: string, mtimeMs: number) => boolean) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const entries = yield* fs.readDirectory(dir).pipe(
      Effect.mapError(
        (error) =>
          new FolderProblem({
            dir,
            problem: `cannot read the folder: ${error.message}`,
            missing: error._tag === "SystemError" && error.reason === "NotFound"
          })
      )
    )
    if (entries.length > MAX_FOLDER_ENTRIES) {
      return yield* new FolderProblem({
        dir,
        problem: `holds ${entries.length} entries, more than ${MAX_FOLDER_ENTRIES}: is it the right folder?`,
        missing: false
      })
    }
    const names = entries.filter(isStrategyFile).sort()
    if (names.length > MAX_STRATEGY_FILES) {
      return yield* new FolderProblem({
        dir,
        problem: `holds ${names.length} strategy files (.ts, .mjs, .js), more than the limit of ${MAX_STRATEGY_FILES}`,
        missing: false
      })
    }
    const files: Array<FileRead> = []
    for (const name of names) {
      const path = Path.join(dir, name)
      const unreadable = (stamp: string, problem: string) =>
        files.push({ _tag: "Unreadable", name, stamp, error: new StrategyLoadFailed({ file: path, problem }) })
      const info = yield* Effect.either(fs.stat(path))
      // Gone between the listing and now: the next scan will not list it.
      if (info._tag === "Left") continue
      if (info.right.type !== "File") continue
      const stamp = stampOf(info.right)
      if (
        unchanged(name, stamp, Option.match(info.right.mtime, { onNone: () => 0, onSome: (date) => date.getTime() }))
      ) {
        files.push({ _tag: "Unchanged", name })
        continue
      }
      if (Number(info.right.size) > MAX_SOURCE_BYTES) {
        unreadable(
          stamp,
          `is ${mebibytes(Number(info.right.size))}; a strategy file may be at most ${mebibytes(MAX_SOURCE_BYTES)}`
        )
        continue
      }
      const source = yield* Effect.either(fs.readFileString(path))
      if (source._tag === "Left") {
        unreadable(stamp, `cannot be read: ${source.left.message}`)
        continue
      }
      // It may have grown since its stat.
      if (source.right.length > MAX_SOURCE_BYTES) {
        unreadable(stamp, `is larger than ${mebibytes(MAX_SOURCE_BYTES)}, the limit of a strategy file`)
        continue
      }
      files.push({ _tag: "Read", name, stamp, source: source.right, hash: hashOf(source.right) })
    }
    return files
  })
