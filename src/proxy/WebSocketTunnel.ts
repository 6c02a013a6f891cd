import type { Socket } from "node:net"
import { closeFrame, FrameBoundaries, GOING_AWAY } from "./WebSocketFrames.ts"

/** How long a websocket may stay half closed (one side gone, or the gateway's close frame sent) before both are cut. */
export const CLOSE_WAIT_MS = 10_000

/** Who ended a websocket first: sent the first close frame, or else ended or lost its connection first. */
export type ClosedBy = "client" | "upstream" | "gateway" | "error"

/**
 * One direction of a tunnel: the bytes of `source` written to `sink` as they come, reading paused while the sink is
 * full (so a slow reader holds the writer back instead of filling the gateway's memory), its frame ends followed.
 */
class Direction {
  readonly boundaries = new FrameBoundaries()
  bytes = 0
  /** The gateway closes this direction: its close frame goes out at the next frame end. */
  private closing = false
  /** The gateway's close frame is out: whatever the source still sends is read and dropped. */
  private closed = false
  private waiting = false

  constructor(
    readonly source: Socket,
    readonly sink: Socket,
    /** Frames towards an upstream are masked, as a client's are (RFC 6455 §5.3). */
    private readonly masked: boolean,
    private readonly onSourceEnd: () => void,
    /** The source sent a close frame: it began the closing handshake. */
    private readonly onCloseFrame: () => void
  ) {}

  start(early: Buffer) {
    if (early.length > 0) this.onData(early)
    this.source.on("data", this.onData)
    this.source.once("end", this.onEnd)
  }

  /** The gateway is stopping: a close frame (1001, going away) at the next frame end, then the sink ends. */
  goAway() {
    if (this.closing) return
    this.closing = true
    if (this.boundaries.atBoundary) this.sendClose()
  }

  private readonly onData = (chunk: Buffer) => {
    if (this.closed) return
    if (!this.closing) {
      const sawClose = this.boundaries.sawClose
      this.boundaries.feed(chunk)
      if (!sawClose && this.boundaries.sawClose) this.onCloseFrame()
      this.write(chunk)
      return
    }
    // The rest of the frame under way, then the close frame.
    const end = this.boundaries.feed(chunk, true)
    this.write(end === chunk.length ? chunk : chunk.subarray(0, end))
    if (this.boundaries.atBoundary) this.sendClose()
  }

  private write(piece: Buffer) {
    this.bytes += piece.length
    if (this.sink.write(piece) || this.waiting) return
    this.waiting = true
    this.source.pause()
    this.sink.once("drain", this.onDrain)
  }

  private readonly onDrain = () => {
    this.waiting = false
    this.source.resume()
  }

  private sendClose() {
    this.closed = true
    this.sink.end(closeFrame(GOING_AWAY, "gateway stopping", this.masked))
    // Keep reading (and dropping) so the peer can answer the close and end its side.
    this.sink.removeListener("drain", this.onDrain)
    this.source.resume()
  }

  private readonly onEnd = () => {
    if (!this.closed) this.sink.end()
    this.onSourceEnd()
  }
}

/**
 * An open websocket: the client's socket and the upstream's, piped both ways as bytes. Either side ending ends the
 * other (a close frame passes through like any bytes, so the peers close it between them); an error on either cuts
 * both; `goAway` is the gateway's own close. `onClosed` is called once, when both sockets are closed.
 */
export class WebSocketTunnel {
  private readonly toUpstream: Direction
  private readonly toClient: Direction
  private open = 2
  private lingering = false
  closedBy: ClosedBy | undefined = undefined

  constructor(
    readonly client: Socket,
    readonly upstream: Socket,
    private readonly onClosed: (tunnel: WebSocketTunnel) => void
  ) {
    this.toUpstream = new Direction(
      client,
      upstream,
      true,
      () => this.sideEnded("client"),
      () => this.began("client")
    )
    this.toClient = new Direction(
      upstream,
      client,
      false,
      () => this.sideEnded("upstream"),
      () => this.began("upstream")
    )
  }

  get bytesToUpstream() {
    return this.toUpstream.bytes
  }

  get bytesToClient() {
    return this.toClient.bytes
  }

  /** Starts both directions; `early` is what the client sent after its request head (node's `head`). */
  start(early: Buffer) {
    for (const socket of [this.client, this.upstream]) {
      socket.on("error", this.onError)
      socket.once("close", this.onSocketClose)
    }
    this.toUpstream.start(early)
    this.toClient.start(Buffer.alloc(0))
    this.client.resume()
    this.upstream.resume()
  }

  /** The gateway is stopping: each side gets a close frame (1001) at its next frame end, then both are ended. */
  goAway() {
    this.closedBy ??= "gateway"
    this.toClient.goAway()
    this.toUpstream.goAway()
    this.linger()
  }

  /** Cuts both sockets at once. */
  destroy() {
    this.client.destroy()
    this.upstream.destroy()
  }

  private began(side: "client" | "upstream") {
    this.closedBy ??= side
  }

  private sideEnded(side: "client" | "upstream") {
    this.closedBy ??= side
    this.linger()
  }

  /** Once one side is done, a peer that never ends its own is cut after CLOSE_WAIT_MS of silence. */
  private linger() {
    if (this.lingering) return
    this.lingering = true
    for (const socket of [this.client, this.upstream]) {
      socket.setTimeout(CLOSE_WAIT_MS)
      socket.once("timeout", this.onLingerTimeout)
    }
  }

  private readonly onLingerTimeout = () => this.destroy()

  private readonly onError = () => {
    this.closedBy ??= "error"
    this.destroy()
  }

  private readonly onSocketClose = () => {
    // One socket closed: the other has nothing left to talk to once its pending writes are out.
    if (--this.open === 1) {
      const other = this.client.destroyed ? this.upstream : this.client
      this.closedBy ??= other === this.upstream ? "client" : "upstream"
      if (other.writableLength === 0) other.destroy()
      else other.end()
      this.linger()
      return
    }
    if (this.open === 0) this.onClosed(this)
  }
}
