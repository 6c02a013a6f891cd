import { randomBytes } from "node:crypto"

// The gateway forwards a websocket's bytes as they come, never frames. It only follows where each frame ends (RFC
// 6455 §5.2), so that when it must close a websocket itself (the gateway stopping) its close frame goes in between
// two frames, never inside one.

/** Status codes of a close frame the gateway sends (RFC 6455 §7.4.1). */
export const GOING_AWAY = 1001

/**
 * The frame boundaries of one direction of a websocket, followed from the bytes: the header of each frame (2 to 14
 * bytes, possibly split across chunks) gives its payload length, which is skipped without being looked at.
 */
export class FrameBoundaries {
  private readonly header = Buffer.alloc(14)
  /** Header bytes held so far of the frame being read (0 while between frames or inside a payload). */
  private held = 0
  /** Payload bytes of the current frame still to come. */
  private payloadLeft = 0
  /** A close frame went by (its sender began the closing handshake). */
  sawClose = false

  /** Between two frames: nothing of a frame has been seen that its end has not followed. */
  get atBoundary() {
    return this.held === 0 && this.payloadLeft === 0
  }

  /**
   * Follows `chunk` from `from`. With `stopAtBoundary`, stops where the first frame of the chunk ends and returns
   * that offset; otherwise (or when no frame ends in the chunk) returns the chunk's length.
   */
  feed(chunk: Buffer, stopAtBoundary = false, from = 0): number {
    let at = from
    while (at < chunk.length) {
      if (this.payloadLeft > 0) {
        const take = Math.min(this.payloadLeft, chunk.length - at)
        this.payloadLeft -= take
        at += take
        if (this.payloadLeft === 0 && stopAtBoundary) return at
        continue
      }
      this.header[this.held++] = chunk[at++]!
      const need = this.headerLength()
      if (this.held < need) continue
      this.payloadLeft = this.payloadLength()
      this.held = 0
      if ((this.header[0]! & 0x0f) === 0x8) this.sawClose = true
      // A frame without payload (a ping, an empty message) ends with its header.
      if (this.payloadLeft === 0 && stopAtBoundary) return at
    }
    return chunk.length
  }

  /** The header's full length, as far as the bytes held tell it (2 until the second byte is known). */
  private headerLength() {
    if (this.held < 2) return 2
    const len7 = this.header[1]! & 0x7f
    const masked = (this.header[1]! & 0x80) !== 0
    return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0)
  }

  private payloadLength() {
    const len7 = this.header[1]! & 0x7f
    if (len7 === 126) return this.header.readUInt16BE(2)
    // 64 bits; beyond 2^53 bytes no frame will ever be whole anyway.
    if (len7 === 127) return this.header.readUInt32BE(2) * 2 ** 32 + this.header.readUInt32BE(6)
    return len7
  }
}

/**
 * A close frame with `code` and a short UTF-8 `reason` (at most 123 bytes, as control frames allow). Frames from a
 * client to a server are masked (§5.3): `masked` for the one the gateway sends to an upstream on the client's behalf.
 */
export const closeFrame = (code: number, reason: string, masked: boolean): Buffer => {
  const text = Buffer.from(reason, "utf8").subarray(0, 123)
  const payload = Buffer.alloc(2 + text.length)
  payload.writeUInt16BE(code, 0)
  text.copy(payload, 2)
  const head = Buffer.from([0x88, (masked ? 0x80 : 0) | payload.length])
  if (!masked) return Buffer.concat([head, payload])
  const key = randomBytes(4)
  for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ key[i % 4]!
  return Buffer.concat([head, key, payload])
}
