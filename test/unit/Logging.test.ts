import { Writable } from "node:stream"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger } from "effect"
import { makePrettyLogger, resolveFormat, safeWriter } from "../../src/observability/Logging.ts"

/** Run `effect` with the pretty logger writing into an array. */
const pretty = (effect: Effect.Effect<unknown>, colour = false) =>
  Effect.gen(function* () {
    const lines: Array<string> = []
    const logger = makePrettyLogger((line) => lines.push(line), {
      colour,
      attemptsOf: (id) => (id === "demo" ? 3 : undefined),
      width: 6
    })
    yield* effect.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
    return lines
  })

const TIME = /^\d\d:\d\d:\d\d /

describe("Logging: pretty lines for a person", () => {
  it.effect("one readable line per event, the service in its own column, attempt N of M", () =>
    Effect.gen(function* () {
      const lines = yield* pretty(
        Effect.all([
          Effect.logInfo("demo: attempt 1 on local").pipe(
            Effect.annotateLogs({ event: "attempt_started", serviceId: "demo", machineId: "local", attempt: 1 })
          ),
          Effect.logWarning("demo: attempt 1 on local failed: boom").pipe(
            Effect.annotateLogs({
              event: "attempt_failed",
              serviceId: "demo",
              machineId: "local",
              attempt: 1,
              error: "ProcessExited",
              message: "process 7 exited during start (code 3, signal none)"
            })
          ),
          Effect.logInfo("demo: ready on local after 575 ms").pipe(
            Effect.annotateLogs({ event: "ready", serviceId: "demo", machineId: "local", durationMs: 575, released: 2 })
          ),
          Effect.logInfo("upstream listening on 127.0.0.1:9801").pipe(
            Effect.annotateLogs({ event: "process_output", serviceId: "demo", pid: 7, stream: "stdout" })
          ),
          Effect.logInfo("listening on http://127.0.0.1:8080").pipe(Effect.annotateLogs({ event: "listening" })),
          Effect.logError("other: something broke").pipe(Effect.annotateLogs({ serviceId: "other" }))
        ])
      )
      assert.strictEqual(lines.length, 6)
      for (const line of lines) assert.match(line, TIME)
      const text = lines.map((line) => line.replace(TIME, ""))
      assert.deepStrictEqual(text, [
        "demo    starting on local (attempt 1/3)…\n",
        "demo    warning: attempt 1/3 on local failed: ProcessExited: process 7 exited during start (code 3, signal none)\n",
        "demo    ready on local after 0.6 s (2 waiting request(s) released)\n",
        "demo    | upstream listening on 127.0.0.1:9801\n",
        "listening on http://127.0.0.1:8080\n",
        "other   error: something broke\n"
      ])
      // Without colour (not a terminal) no escape code appears.
      assert.isFalse(lines.some((line) => line.includes("\u001b[")))
    })
  )

  it.effect("colours only when asked (a terminal)", () =>
    Effect.gen(function* () {
      const [line] = yield* pretty(
        Effect.logError("demo: start failed").pipe(
          Effect.annotateLogs({ event: "start_failed", serviceId: "demo", durationMs: 1200, attempts: [1, 2] })
        ),
        true
      )
      assert.include(line, "\u001b[31merror: start failed after 2 attempt(s), 1.2 s\u001b[0m")
    })
  )

  it("pretty on a terminal, JSON otherwise, unless configured", () => {
    assert.strictEqual(resolveFormat(undefined, true), "pretty")
    assert.strictEqual(resolveFormat(undefined, false), "json")
    assert.strictEqual(resolveFormat("json", true), "json")
    assert.strictEqual(resolveFormat("pretty", false), "pretty")
  })
})

describe("Logging: a stream whose reader went away", () => {
  it("an EPIPE is noted once, later lines are dropped, nothing throws", () => {
    const written: Array<string> = []
    let fail = false
    const stream = new Writable({
      write(chunk, _encoding, done) {
        if (fail) return done(Object.assign(new Error("write EPIPE"), { code: "EPIPE" }))
        written.push(String(chunk))
        done()
      }
    })
    const notes: Array<string> = []
    const write = safeWriter(stream, "stdout", (note) => notes.push(note))
    write("one\n")
    fail = true
    write("two\n") // fails asynchronously: the 'error' event has a listener now
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        write("three\n")
        write("four\n")
        assert.deepStrictEqual(written, ["one\n"])
        assert.deepStrictEqual(notes, ["hestia: stdout closed (EPIPE); log lines to it are dropped from now on\n"])
        resolve()
      })
    )
  })
})
