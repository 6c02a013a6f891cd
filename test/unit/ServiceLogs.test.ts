import { PassThrough } from "node:stream"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Exit, Layer, Scope, TestClock } from "effect"
import { HestiaConfig } from "../../src/config/HestiaConfig.ts"
import {
  FOLLOWER_BUFFER,
  MAX_FOLLOWERS_PER_SERVICE,
  MAX_LINE_CHARS,
  RING_LINES,
  ServiceLogs
} from "../../src/observability/ServiceLogs.ts"
import { lineSplitter } from "../../src/orchestrators/Process.ts"

const yaml = `services:
  a: { base_url: "http://127.0.0.1:1" }
  b: { base_url: "http://127.0.0.1:2" }
`
const withLogs = Effect.provide(ServiceLogs.Default.pipe(Layer.provide(HestiaConfig.layerYaml(yaml))))

describe("ServiceLogs: a bounded ring per service", () => {
  it.effect("keeps the last 1000 lines in order, numbered, stamped with the Clock; per service", () =>
    Effect.gen(function* () {
      const logs = yield* ServiceLogs
      yield* TestClock.setTime(5_000)
      for (let i = 1; i <= RING_LINES + 250; i++) logs.append("a", i % 2 === 0 ? "stderr" : "stdout", `line ${i}`)
      logs.append("b", "stdout", "only b")
      const all = logs.tail("a", RING_LINES)
      assert.strictEqual(all.length, RING_LINES)
      assert.strictEqual(all[0]!.line, "line 251")
      assert.strictEqual(all[0]!.seq, 251)
      assert.strictEqual(all.at(-1)!.line, `line ${RING_LINES + 250}`)
      assert.strictEqual(all.at(-1)!.stream, "stderr")
      assert.strictEqual(all.at(-1)!.at, 5_000)
      assert.deepStrictEqual(
        logs.tail("a", 3).map((l) => l.seq),
        [1248, 1249, 1250]
      )
      assert.deepStrictEqual(
        logs.tail("a", 100, 1247).map((l) => l.seq),
        [1248, 1249, 1250]
      )
      assert.deepStrictEqual(logs.tail("a", 0), [])
      assert.deepStrictEqual(
        logs.tail("b", 10).map((l) => [l.seq, l.line]),
        [[1, "only b"]]
      )
    }).pipe(withLogs)
  )

  it.effect("cuts an overlong line, and ignores services that are not configured", () =>
    Effect.gen(function* () {
      const logs = yield* ServiceLogs
      logs.append("a", "stdout", "x".repeat(MAX_LINE_CHARS * 3))
      logs.append("nope", "stdout", "dropped")
      const [line] = logs.tail("a", 1)
      assert.strictEqual(line!.line.length, MAX_LINE_CHARS)
      assert.isTrue(line!.line.endsWith("…"))
      assert.deepStrictEqual(logs.tail("nope", 10), [])
    }).pipe(withLogs)
  )

  it.effect("a follower gets the backlog, then each new line, and no line twice; leaving releases its place", () =>
    Effect.gen(function* () {
      const logs = yield* ServiceLogs
      logs.append("a", "stdout", "before 1")
      logs.append("a", "stdout", "before 2")
      const scope = yield* Scope.make()
      const follower = yield* logs.follow("a", 1).pipe(Scope.extend(scope))
      assert.deepStrictEqual(
        follower.backlog.map((l) => l.line),
        ["before 2"]
      )
      assert.strictEqual(logs.followers(), 1)
      logs.append("a", "stdout", "after 1")
      logs.append("b", "stdout", "other service")
      logs.append("a", "stderr", "after 2")
      const items = yield* follower.take
      assert.deepStrictEqual(
        items.map((item) => (item._tag === "Line" ? item.line.line : item._tag)),
        ["after 1", "after 2"]
      )
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(logs.followers(), 0)
    }).pipe(withLogs)
  )

  it.effect("a follower that falls a buffer behind is told how many lines it missed; the gateway never waits", () =>
    Effect.gen(function* () {
      const logs = yield* ServiceLogs
      const follower = yield* logs.follow("a", 0)
      for (let i = 1; i <= FOLLOWER_BUFFER + 7; i++) logs.append("a", "stdout", `l${i}`)
      const items = yield* follower.take
      assert.strictEqual(items.length, FOLLOWER_BUFFER + 1)
      assert.deepStrictEqual(items.at(-1), { _tag: "Dropped", lines: 7 })
      logs.append("a", "stdout", "caught up")
      const next = yield* follower.take
      assert.deepStrictEqual(
        next.map((item) => (item._tag === "Line" ? item.line.line : item._tag)),
        ["caught up"]
      )
    }).pipe(Effect.scoped, withLogs)
  )

  it.effect("followers are bounded per service: one more is refused with TooManyFollowers", () =>
    Effect.gen(function* () {
      const logs = yield* ServiceLogs
      for (let i = 0; i < MAX_FOLLOWERS_PER_SERVICE; i++) yield* logs.follow("a", 0)
      assert.isUndefined(logs.refusal("b"))
      const refused = logs.refusal("a")
      assert.strictEqual(refused?._tag, "TooManyFollowers")
      const result = yield* Effect.either(logs.follow("a", 0))
      assert.isTrue(Either.isLeft(result))
      assert.strictEqual((result as Either.Left<any, any>).left.limit, MAX_FOLLOWERS_PER_SERVICE)
      // Another service still has room.
      yield* logs.follow("b", 0)
    }).pipe(Effect.scoped, withLogs)
  )
})

describe("lineSplitter: a child's output as lines, bounded", () => {
  const split = (chunks: ReadonlyArray<Buffer | string>) =>
    Effect.promise(
      () =>
        new Promise<Array<string>>((resolve) => {
          const stream = new PassThrough()
          const lines: Array<string> = []
          lineSplitter(stream, (line) => lines.push(line))
          stream.on("end", () => setImmediate(() => resolve(lines)))
          for (const chunk of chunks) stream.write(chunk)
          stream.end()
        })
    )

  it.effect("joins lines across chunks, strips CR, keeps a split UTF-8 character, flushes the last line", () =>
    Effect.gen(function* () {
      const euro = Buffer.from("€")
      const lines = yield* split([
        "one\r\ntw",
        "o\n",
        Buffer.concat([Buffer.from("price "), euro.subarray(0, 1)]),
        Buffer.concat([euro.subarray(1), Buffer.from("5\n\nlast")])
      ])
      assert.deepStrictEqual(lines, ["one", "two", "price €5", "", "last"])
    })
  )

  it.effect("an endless line is passed on once, cut, and the rest up to its newline is dropped", () =>
    Effect.gen(function* () {
      const big = "y".repeat(MAX_LINE_CHARS)
      const lines = yield* split([big, big, big, "tail\nnext\n"])
      assert.strictEqual(lines.length, 2)
      assert.isTrue(lines[0]!.length > MAX_LINE_CHARS && lines[0]!.length <= 2 * MAX_LINE_CHARS)
      assert.strictEqual(lines[1], "next")
    })
  )
})
