import { randomBytes } from "node:crypto"
import { assert, describe, it } from "@effect/vitest"
import { closeFrame, FrameBoundaries, GOING_AWAY } from "../../src/proxy/WebSocketFrames.ts"

/** One frame as RFC 6455 §5.2 lays it out (an independent encoder, so the tracker is not checked against itself). */
const frame = (opcode: number, payload: Buffer, masked: boolean) => {
  const n = payload.length
  const length = n < 126 ? [n] : n < 65536 ? [126, n >> 8, n & 0xff] : [127, 0, 0, 0, 0, ...bytes32(n)]
  const head = Buffer.from([0x80 | opcode, (masked ? 0x80 : 0) | length[0]!, ...length.slice(1)])
  if (!masked) return Buffer.concat([head, payload])
  const key = randomBytes(4)
  return Buffer.concat([head, key, Buffer.from(payload.map((byte, i) => byte ^ key[i % 4]!))])
}
const bytes32 = (n: number) => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]

const sizes = [0, 1, 125, 126, 127, 65535, 65536, 70_000]

describe("FrameBoundaries", () => {
  for (const masked of [false, true]) {
    it(`finds the end of every frame, whatever its length class (${masked ? "masked" : "unmasked"}), fed byte by byte`, () => {
      const frames = sizes.map((size, i) => frame(i % 2 === 0 ? 0x2 : 0x1, randomBytes(size), masked))
      const stream = Buffer.concat(frames)
      const ends = new Set<number>()
      let at = 0
      for (const f of frames) {
        at += f.length
        ends.add(at)
      }
      const boundaries = new FrameBoundaries()
      for (let i = 0; i < stream.length; i++) {
        boundaries.feed(stream.subarray(i, i + 1))
        assert.strictEqual(boundaries.atBoundary, ends.has(i + 1), `after byte ${i + 1}`)
      }
    })
  }

  it("stops at the first frame end of a chunk when asked, across chunks of any size", () => {
    const frames = [
      frame(0x1, randomBytes(10), true),
      frame(0x9, Buffer.alloc(0), true),
      frame(0x2, randomBytes(70_000), true)
    ]
    const stream = Buffer.concat(frames)
    for (const split of [1, 3, 7, 1000, stream.length]) {
      const boundaries = new FrameBoundaries()
      const found: Array<number> = []
      for (let start = 0; start < stream.length; start += split) {
        const chunk = stream.subarray(start, start + split)
        let from = 0
        while (from < chunk.length) {
          const end = boundaries.feed(chunk, true, from)
          if (boundaries.atBoundary) found.push(start + end)
          from = end
        }
      }
      assert.deepStrictEqual(
        found,
        [frames[0]!.length, frames[0]!.length + frames[1]!.length, stream.length],
        `split ${split}`
      )
    }
  })

  it("notices a close frame going by", () => {
    const boundaries = new FrameBoundaries()
    boundaries.feed(frame(0x1, Buffer.from("hi"), false))
    assert.isFalse(boundaries.sawClose)
    boundaries.feed(closeFrame(1000, "bye", false))
    assert.isTrue(boundaries.sawClose)
  })
})

describe("closeFrame", () => {
  it("is a close frame with the code and reason; masked towards an upstream, as a client's must be", () => {
    const plain = closeFrame(GOING_AWAY, "gateway stopping", false)
    assert.strictEqual(plain[0], 0x88)
    assert.strictEqual(plain[1], 2 + "gateway stopping".length)
    assert.strictEqual(plain.readUInt16BE(2), 1001)
    assert.strictEqual(plain.subarray(4).toString(), "gateway stopping")

    const masked = closeFrame(GOING_AWAY, "gateway stopping", true)
    assert.strictEqual(masked[1]! & 0x80, 0x80)
    const key = masked.subarray(2, 6)
    const payload = Buffer.from(masked.subarray(6).map((byte, i) => byte ^ key[i % 4]!))
    assert.strictEqual(payload.readUInt16BE(0), 1001)
    assert.strictEqual(payload.subarray(2).toString(), "gateway stopping")
    const boundaries = new FrameBoundaries()
    boundaries.feed(masked)
    assert.isTrue(boundaries.atBoundary)
  })

  it("keeps a control frame's payload within 125 bytes", () => {
    const frameOf = closeFrame(1001, "x".repeat(500), false)
    assert.strictEqual(frameOf[1], 125)
    assert.strictEqual(frameOf.length, 127)
  })
})
