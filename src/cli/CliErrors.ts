import { Data } from "effect"
import type { GatewayError } from "../domain/HttpErrors.ts"

// Why a `hestia` command failed, each with its exit code (README "The hestia CLI"): 1 the gateway (or, offline, the
// database) refused, 2 a usage or configuration error, 3 no gateway answers.

/** The gateway answered with one of its typed errors (decoded by the client from the declaration). */
export class GatewayRefused extends Data.TaggedError("GatewayRefused")<{ readonly error: GatewayError }> {
  readonly exitCode = 1
  override get message() {
    return this.error.message
  }
}

/** Something answered, but not as the gateway's API does (another server on that port, an older gateway). */
export class UnexpectedAnswer extends Data.TaggedError("UnexpectedAnswer")<{
  readonly url: string
  readonly detail: string
}> {
  readonly exitCode = 1
  override get message() {
    return `unexpected answer from ${this.url}: ${this.detail}`
  }
}

/** Nothing answers at the URL: no gateway running there (or not reachable). */
export class GatewayUnreachable extends Data.TaggedError("GatewayUnreachable")<{
  readonly url: string
  readonly reason: string
}> {
  readonly exitCode = 3
  override get message() {
    return `no gateway answers at ${this.url} (${this.reason}): is it running? (--url or HESTIA_URL)`
  }
}

/** A stream the gateway was sending ended because the gateway went away. */
export class StreamEnded extends Data.TaggedError("StreamEnded")<{ readonly url: string }> {
  readonly exitCode = 3
  override get message() {
    return `the gateway at ${this.url} closed the stream`
  }
}

/** The command line or the configuration file is wrong. */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly problem: string }> {
  readonly exitCode = 2
  override get message() {
    return this.problem
  }
}

/** An offline operation the database refused (no key of that label, a label taken). */
export class StoreRefused extends Data.TaggedError("StoreRefused")<{ readonly problem: string }> {
  readonly exitCode = 1
  override get message() {
    return this.problem
  }
}

export type CliError = GatewayRefused | UnexpectedAnswer | GatewayUnreachable | StreamEnded | UsageError | StoreRefused
