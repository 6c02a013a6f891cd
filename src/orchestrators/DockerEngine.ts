import { HttpClient, type HttpClientError, HttpClientRequest, type HttpClientResponse } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { Chunk, Config, Effect, Either, Option, Schema, type Scope, Stream } from "effect"
import { Agent } from "undici"
import { isEngineUrl, type Settings } from "../config/HestiaConfig.ts"
import { EngineRequestFailed, EngineUnreachable } from "../domain/Errors.ts"

// ---------------------------------------------------------------------------
// A Docker Engine API client (v1.41, which Docker ≥ 20.10 and Podman's Docker-compatible service both serve), on
// @effect/platform's HttpClient over undici: a unix socket or TCP. Only the calls the container orchestrator and
// label discovery need; the engine's answers are decoded down to the fields they read.
// ---------------------------------------------------------------------------

export const API_VERSION = "v1.41"
/** Where an engine is looked for when neither the machine's `docker_url` nor DOCKER_HOST says. */
export const DEFAULT_ENGINE_URL = "unix:///var/run/docker.sock"
/** How long one control call may take before the engine counts as unreachable (a stop adds its grace time). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000

/** DOCKER_HOST, as the docker CLI reads it: the engine of machines without their own `docker_url`. */
export const dockerHost = Config.option(Config.string("DOCKER_HOST")).pipe(Effect.orElseSucceed(() => Option.none()))

/** Where the engine of a machine answers: its `docker_url`, else DOCKER_HOST, else the default socket. */
export const engineUrlFor = (settings: Settings, machineId: string, fromEnv: string | undefined) =>
  settings.machines.get(machineId)?.dockerUrl ??
  (fromEnv === undefined || fromEnv === "" ? undefined : fromEnv) ??
  DEFAULT_ENGINE_URL

/** A single output line longer than this is cut (a container writing without newlines cannot grow memory). */
export const MAX_LINE_BYTES = 16 * 1024

export type EngineError = EngineUnreachable | EngineRequestFailed

// ---- what the engine answers, as far as Hestia reads it ----

const Labels = Schema.optionalWith(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.String })), {
  default: () => null
})

const ContainerJson = Schema.Struct({
  Id: Schema.String,
  Name: Schema.String,
  Image: Schema.String,
  Config: Schema.Struct({
    Image: Schema.String,
    Tty: Schema.optional(Schema.Boolean),
    Labels,
    Healthcheck: Schema.optional(
      Schema.NullOr(Schema.Struct({ Test: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))) }))
    )
  }),
  State: Schema.Struct({
    Status: Schema.String,
    Running: Schema.Boolean,
    Paused: Schema.Boolean,
    ExitCode: Schema.Number,
    StartedAt: Schema.optional(Schema.String),
    Health: Schema.optional(Schema.NullOr(Schema.Struct({ Status: Schema.String })))
  })
})

/** One container as `GET /containers/{id}/json` describes it. */
export interface ContainerInfo {
  readonly id: string
  /** Without the leading `/` the engine puts there. */
  readonly name: string
  /** The image as the container was created from it (`app:1.2`). */
  readonly image: string
  /** `created`, `running`, `paused`, `restarting`, `removing`, `exited`, `dead`. */
  readonly status: string
  readonly running: boolean
  readonly paused: boolean
  readonly exitCode: number
  /** Engine time of the last start, in seconds (fractional), for `logs?since=`. */
  readonly startedAtSeconds: number | undefined
  readonly tty: boolean
  readonly labels: Readonly<Record<string, string>>
  /** The image or container defines a HEALTHCHECK (not `NONE`). */
  readonly hasHealthcheck: boolean
  /** `starting`, `healthy`, `unhealthy`; undefined without a healthcheck. */
  readonly health: string | undefined
}

const toInfo = (json: typeof ContainerJson.Type): ContainerInfo => {
  const test = json.Config.Healthcheck?.Test ?? []
  const started = json.State.StartedAt === undefined ? Number.NaN : Date.parse(json.State.StartedAt)
  return {
    id: json.Id,
    name: json.Name.replace(/^\//, ""),
    image: json.Config.Image,
    status: json.State.Status,
    running: json.State.Running,
    paused: json.State.Paused,
    exitCode: json.State.ExitCode,
    // Date.parse drops the nanoseconds; a start less than a millisecond earlier is not missed for that.
    startedAtSeconds: Number.isFinite(started) && started > 0 ? started / 1000 : undefined,
    tty: json.Config.Tty ?? false,
    labels: json.Config.Labels ?? {},
    hasHealthcheck: test.length > 0 && test[0] !== "NONE",
    health: json.State.Health?.Status ?? undefined
  }
}

const ListedJson = Schema.Array(
  Schema.Struct({
    Id: Schema.String,
    Names: Schema.optionalWith(Schema.NullOr(Schema.Array(Schema.String)), { default: () => null }),
    Image: Schema.String,
    State: Schema.optional(Schema.String),
    Labels,
    Ports: Schema.optionalWith(
      Schema.NullOr(
        Schema.Array(
          Schema.Struct({
            PrivatePort: Schema.Number,
            PublicPort: Schema.optional(Schema.NullOr(Schema.Number)),
            Type: Schema.optional(Schema.String)
          })
        )
      ),
      { default: () => null }
    ),
    HostConfig: Schema.optional(Schema.NullOr(Schema.Struct({ NetworkMode: Schema.optional(Schema.String) })))
  })
)

/** One entry of `GET /containers/json`. */
export interface ListedContainer {
  readonly id: string
  readonly name: string
  readonly image: string
  readonly state: string
  readonly labels: Readonly<Record<string, string>>
  /** Published ports: container port → host port. */
  readonly publishedPorts: ReadonlyArray<{ readonly containerPort: number; readonly hostPort: number }>
  readonly networkMode: string | undefined
}

const EventJson = Schema.Struct({
  Type: Schema.optional(Schema.String),
  Action: Schema.String,
  Actor: Schema.optional(
    Schema.Struct({
      ID: Schema.optional(Schema.String),
      Attributes: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.String })))
    })
  ),
  timeNano: Schema.optional(Schema.Number)
})

/** One line of `GET /events`. */
export interface EngineEvent {
  /** `start`, `die`, `pause`, `destroy`, `health_status: healthy`, ... */
  readonly action: string
  readonly containerId: string | undefined
  readonly attributes: Readonly<Record<string, string>>
  /** Engine time, nanoseconds since the epoch. */
  readonly timeNano: number | undefined
}

/** One line a container wrote. */
export interface LogLine {
  readonly stream: "stdout" | "stderr"
  readonly line: string
}

const MessageJson = Schema.parseJson(Schema.Struct({ message: Schema.String }))

const ProgressJson = Schema.parseJson(
  Schema.Struct({
    status: Schema.optional(Schema.String),
    id: Schema.optional(Schema.String),
    error: Schema.optional(Schema.String),
    progressDetail: Schema.optional(Schema.Unknown)
  })
)

// ---------------------------------------------------------------------------
// Reading the engine's streams
// ---------------------------------------------------------------------------

/**
 * Splits the output of `/containers/{id}/logs` into lines. Without a TTY the engine multiplexes stdout and stderr in
 * frames (`[stream, 0, 0, 0, size: u32 BE]` + payload); with one it sends the raw bytes (all stdout). Each stream
 * keeps its own partial line; a line longer than MAX_LINE_BYTES is emitted in pieces of that size.
 */
export class LogDemuxer {
  private header = Buffer.alloc(0)
  private remaining = 0
  private current: "stdout" | "stderr" = "stdout"
  private readonly partial = { stdout: [] as Array<Buffer>, stderr: [] as Array<Buffer> }
  private readonly partialBytes = { stdout: 0, stderr: 0 }

  constructor(private readonly tty: boolean) {}

  push(chunk: Uint8Array): Array<LogLine> {
    const out: Array<LogLine> = []
    let data = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    if (this.tty) {
      this.take("stdout", data, out)
      return out
    }
    while (data.length > 0) {
      if (this.remaining === 0) {
        const need = 8 - this.header.length
        this.header = Buffer.concat([this.header, data.subarray(0, need)])
        data = data.subarray(need)
        if (this.header.length < 8) break
        // 0 stdin (never sent here), 1 stdout, 2 stderr.
        this.current = this.header[0] === 2 ? "stderr" : "stdout"
        this.remaining = this.header.readUInt32BE(4)
        this.header = Buffer.alloc(0)
        continue
      }
      const piece = data.subarray(0, this.remaining)
      data = data.subarray(piece.length)
      this.remaining -= piece.length
      this.take(this.current, piece, out)
    }
    return out
  }

  /** What is left without a final newline. */
  flush(): Array<LogLine> {
    const out: Array<LogLine> = []
    for (const stream of ["stdout", "stderr"] as const) {
      if (this.partialBytes[stream] > 0) out.push({ stream, line: this.drain(stream) })
    }
    return out
  }

  private take(stream: "stdout" | "stderr", bytes: Buffer, out: Array<LogLine>) {
    let rest = bytes
    for (;;) {
      const newline = rest.indexOf(0x0a)
      const end = newline === -1 ? rest.length : newline
      let piece = rest.subarray(0, end)
      while (this.partialBytes[stream] + piece.length >= MAX_LINE_BYTES) {
        const room = MAX_LINE_BYTES - this.partialBytes[stream]
        this.append(stream, piece.subarray(0, room))
        out.push({ stream, line: this.drain(stream) })
        piece = piece.subarray(room)
      }
      this.append(stream, piece)
      if (newline === -1) return
      out.push({ stream, line: this.drain(stream).replace(/\r$/, "") })
      rest = rest.subarray(newline + 1)
    }
  }

  private append(stream: "stdout" | "stderr", piece: Buffer) {
    if (piece.length === 0) return
    // Copied: the chunk's memory belongs to the HTTP client.
    this.partial[stream].push(Buffer.from(piece))
    this.partialBytes[stream] += piece.length
  }

  private drain(stream: "stdout" | "stderr") {
    const line = Buffer.concat(this.partial[stream]).toString("utf8")
    this.partial[stream] = []
    this.partialBytes[stream] = 0
    return line
  }
}

/** `ghcr.io/example/app:1.2` → `fromImage=ghcr.io/example/app&tag=1.2`; no tag means `latest`; digests stay whole. */
export const splitImageReference = (
  reference: string
): { readonly fromImage: string; readonly tag: string | undefined } => {
  if (reference.includes("@")) return { fromImage: reference, tag: undefined }
  const slash = reference.lastIndexOf("/")
  const colon = reference.lastIndexOf(":")
  return colon > slash
    ? { fromImage: reference.slice(0, colon), tag: reference.slice(colon + 1) }
    : { fromImage: reference, tag: "latest" }
}

const reasonOf = (error: unknown): string => {
  const e = error as { code?: string; message?: string; cause?: unknown }
  // undici wraps the socket's error (ENOENT, ECONNREFUSED) in its own.
  const inner = e.cause as { code?: string; message?: string; cause?: { code?: string; message?: string } } | undefined
  const code = e.code ?? inner?.code ?? inner?.cause?.code
  const message = inner?.message ?? inner?.cause?.message ?? e.message ?? String(error)
  return code !== undefined && !message.includes(code) ? `${code}: ${message}` : message
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

export interface CreateContainer {
  readonly name: string
  /** The engine's create body (`Image`, `Cmd`, `Env`, `Labels`, `HostConfig`, ...). */
  readonly body: Readonly<Record<string, unknown>>
}

export interface DockerEngine {
  /** The engine's address as configured, for messages and spans. */
  readonly url: string
  readonly ping: Effect.Effect<void, EngineError>
  /** `none` when no container of that name or id exists. */
  readonly inspectContainer: (nameOrId: string) => Effect.Effect<Option.Option<ContainerInfo>, EngineError>
  readonly imageExists: (reference: string) => Effect.Effect<boolean, EngineError>
  /** Pulls an image; each status line of the progress (not the byte counts) goes to `progress`. */
  readonly pullImage: (
    reference: string,
    progress: (line: string) => Effect.Effect<void>
  ) => Effect.Effect<void, EngineError | PullFailed>
  /** The new container's id; `none` when the engine has no such image. */
  readonly createContainer: (create: CreateContainer) => Effect.Effect<Option.Option<string>, EngineError>
  /** `false`: it was already running. */
  readonly startContainer: (id: string) => Effect.Effect<boolean, EngineError>
  /** SIGTERM, then SIGKILL after `graceSeconds`; a stopped or missing container is fine. */
  readonly stopContainer: (id: string, graceSeconds: number) => Effect.Effect<void, EngineError>
  /** A container that is not running (so cannot be paused) or not paused is fine. */
  readonly pauseContainer: (id: string) => Effect.Effect<void, EngineError>
  readonly unpauseContainer: (id: string) => Effect.Effect<void, EngineError>
  /** Forced (a running one is killed); a missing container is fine. */
  readonly removeContainer: (id: string) => Effect.Effect<void, EngineError>
  /** Every container (running or not) carrying `label` (`key` or `key=value`). */
  readonly listContainers: (label: string) => Effect.Effect<ReadonlyArray<ListedContainer>, EngineError>
  /**
   * The engine's events for one container, from the moment the returned effect succeeds (the engine has answered
   * and subscribed): nothing that happens after is missed. Ends when the scope closes.
   */
  readonly events: (
    containerId: string,
    actions: ReadonlyArray<string>
  ) => Effect.Effect<Stream.Stream<EngineEvent, EngineError>, EngineError, Scope.Scope>
  /** Output lines: `follow` keeps reading while it runs; `since` engine seconds; `tail` the last N lines only. */
  readonly logs: (
    containerId: string,
    options: {
      readonly follow: boolean
      readonly tty: boolean
      readonly since?: number | undefined
      readonly tail?: number | undefined
    }
  ) => Stream.Stream<LogLine, EngineError>
}

/** A pull the engine started and reported failed in its progress stream (no such image, no access, no network). */
export class PullFailed extends Schema.TaggedError<PullFailed>()("PullFailed", { reason: Schema.String }) {}

/** Where to send the requests for an engine URL, and through which socket. */
const transportFor = (url: string) => {
  if (url.startsWith("unix://")) {
    const socketPath = url.slice("unix://".length)
    return { base: `http://docker/${API_VERSION}`, agent: new Agent({ connect: { socketPath } }) }
  }
  const base = url.replace(/^tcp:\/\//, "http://").replace(/\/+$/, "")
  return { base: `${base}/${API_VERSION}`, agent: new Agent() }
}

export interface MakeOptions {
  readonly requestTimeoutMs?: number
}

/** A client for the engine at `url` (`unix:///path`, `tcp://host:port`, `http://host:port`); its sockets close with the scope. */
export const make = (url: string, options: MakeOptions = {}): Effect.Effect<DockerEngine, never, Scope.Scope> =>
  Effect.gen(function* () {
    const timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
    const { base, agent } = transportFor(url)
    yield* Effect.addFinalizer(() => Effect.promise(() => agent.destroy()).pipe(Effect.ignore))
    const client = NodeHttpClient.makeUndici(agent).pipe(HttpClient.mapRequest(HttpClientRequest.prependUrl(base)))
    // Long-lived bodies are aborted when their scope closes; those that follow a container get no client span (it
    // would stay open as long as the container runs).
    const scoped = HttpClient.withScope(client)
    const following = HttpClient.withTracerDisabledWhen(scoped, () => true)

    const unreachable = (reason: string) => new EngineUnreachable({ engine: url, reason })
    // DOCKER_HOST may name a transport this client does not speak (ssh://, npipe://): every call says so.
    const unsupported = isEngineUrl(url)
      ? undefined
      : unreachable("unsupported address: use unix:///path/to/docker.sock, tcp://host:port or http://host:port")

    /** Sends a request and waits for the response's headers (within the timeout). */
    const send = <R = never>(
      request: HttpClientRequest.HttpClientRequest,
      limitMs: number,
      via: HttpClient.HttpClient.With<HttpClientError.HttpClientError, R> = client as HttpClient.HttpClient.With<
        HttpClientError.HttpClientError,
        R
      >
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, EngineUnreachable, R> =>
      unsupported !== undefined
        ? Effect.fail(unsupported)
        : via.execute(request).pipe(
            Effect.mapError((error) => unreachable(reasonOf(error.cause ?? error))),
            Effect.timeoutFail({ duration: limitMs, onTimeout: () => unreachable(`no answer within ${limitMs} ms`) })
          )

    const operationOf = (request: HttpClientRequest.HttpClientRequest) =>
      `${request.method} ${request.url.replace(/\?.*$/, "")}`

    /** A non-2xx answer as the engine's own message. */
    const failed = (
      request: HttpClientRequest.HttpClientRequest,
      response: HttpClientResponse.HttpClientResponse
    ): Effect.Effect<never, EngineRequestFailed> =>
      response.text.pipe(
        Effect.orElseSucceed(() => ""),
        Effect.flatMap((text) => {
          const message = Either.match(Schema.decodeUnknownEither(MessageJson)(text), {
            onLeft: () => text.slice(0, 500) || `HTTP ${response.status}`,
            onRight: (body) => body.message
          })
          return new EngineRequestFailed({
            engine: url,
            operation: operationOf(request),
            status: response.status,
            message
          })
        })
      )

    /**
     * One control call: the whole exchange within the timeout. `accept` lists the statuses that are not failures;
     * the result is the status and body text.
     */
    const call = (
      request: HttpClientRequest.HttpClientRequest,
      accept: ReadonlyArray<number> = [],
      limitMs: number = timeoutMs
    ): Effect.Effect<{ readonly status: number; readonly text: string }, EngineError> =>
      send(request, limitMs).pipe(
        Effect.flatMap(
          (response): Effect.Effect<{ status: number; text: string }, EngineError> =>
            (response.status >= 200 && response.status < 300) || accept.includes(response.status)
              ? response.text.pipe(
                  Effect.map((text) => ({ status: response.status, text })),
                  Effect.mapError((error) => unreachable(`reading the answer: ${reasonOf(error)}`))
                )
              : failed(request, response)
        ),
        Effect.timeoutFail({ duration: limitMs, onTimeout: () => unreachable(`no answer within ${limitMs} ms`) })
      )

    const decode = <A, I>(schema: Schema.Schema<A, I>, request: HttpClientRequest.HttpClientRequest, text: string) =>
      Schema.decodeUnknown(Schema.parseJson(schema))(text).pipe(
        Effect.mapError(
          () =>
            new EngineRequestFailed({
              engine: url,
              operation: operationOf(request),
              status: 200,
              message: `unexpected answer: ${text.slice(0, 300)}`
            })
        )
      )

    /** A long-lived response body (events, followed logs, pull progress): only the headers are timed. */
    const streamOf = (request: HttpClientRequest.HttpClientRequest, follow: boolean) =>
      send(request, timeoutMs, follow ? following : scoped).pipe(
        Effect.flatMap((response) =>
          response.status >= 200 && response.status < 300
            ? Effect.succeed(
                response.stream.pipe(
                  Stream.mapError((error) => unreachable(`stream broke off: ${reasonOf(error.cause ?? error)}`))
                )
              )
            : failed(request, response)
        )
      )

    /** JSON lines, each at most MAX_LINE_BYTES (a longer one is dropped). */
    const jsonLines = (bytes: Stream.Stream<Uint8Array, EngineError>) =>
      bytes.pipe(
        Stream.decodeText(),
        Stream.splitLines,
        Stream.filter((line) => line.trim() !== "" && line.length <= MAX_LINE_BYTES)
      )

    const container = (id: string) => `/containers/${encodeURIComponent(id)}`

    const inspectContainer = (nameOrId: string) => {
      const request = HttpClientRequest.get(`${container(nameOrId)}/json`)
      return call(request, [404]).pipe(
        Effect.flatMap(({ status, text }) =>
          status === 404
            ? Effect.succeed(Option.none())
            : Effect.map(decode(ContainerJson, request, text), (json) => Option.some(toInfo(json)))
        )
      )
    }

    const imageExists = (reference: string) =>
      call(HttpClientRequest.get(`/images/${encodeURIComponent(reference)}/json`), [404]).pipe(
        Effect.map(({ status }) => status !== 404)
      )

    const pullImage = (reference: string, progress: (line: string) => Effect.Effect<void>) =>
      Effect.scoped(
        Effect.gen(function* () {
          const { fromImage, tag } = splitImageReference(reference)
          const request = HttpClientRequest.post("/images/create").pipe(
            HttpClientRequest.setUrlParams(tag === undefined ? { fromImage } : { fromImage, tag })
          )
          const body = yield* streamOf(request, false).pipe(
            Effect.catchTag("EngineRequestFailed", (error) =>
              // 404 (no such image), 401/403 (no access), 500 (registry unreachable): the pull failed.
              Effect.fail(new PullFailed({ reason: error.message }))
            )
          )
          let lastStatus = ""
          yield* jsonLines(body).pipe(
            Stream.mapEffect((line) =>
              Either.match(Schema.decodeUnknownEither(ProgressJson)(line), {
                onLeft: () => Effect.void,
                onRight: (entry): Effect.Effect<void, PullFailed> => {
                  if (entry.error !== undefined) return Effect.fail(new PullFailed({ reason: entry.error }))
                  // Byte counts (Downloading, Extracting) are left out; each layer's steps are kept.
                  const hasCounts =
                    typeof entry.progressDetail === "object" &&
                    entry.progressDetail !== null &&
                    Object.keys(entry.progressDetail).length > 0
                  const text = entry.id === undefined ? (entry.status ?? "") : `${entry.id}: ${entry.status ?? ""}`
                  if (hasCounts || text === lastStatus || text === "") return Effect.void
                  lastStatus = text
                  return progress(text)
                }
              })
            ),
            Stream.runDrain
          )
        })
      )

    const createContainer = ({ name, body }: CreateContainer) => {
      const request = HttpClientRequest.post("/containers/create").pipe(
        HttpClientRequest.setUrlParams({ name }),
        HttpClientRequest.bodyUnsafeJson(body)
      )
      return send(request, timeoutMs).pipe(
        Effect.flatMap((response) =>
          response.status === 201 || response.status === 200
            ? Effect.flatMap(
                Effect.mapError(response.text, (error) => unreachable(`reading the answer: ${reasonOf(error)}`)),
                (text) =>
                  Effect.map(decode(Schema.Struct({ Id: Schema.String }), request, text), (json) =>
                    Option.some(json.Id)
                  )
              )
            : failed(request, response)
        ),
        // A 404 is also a missing network or volume: only "no such image" (Podman: "image not known") means that.
        Effect.catchIf(
          (error) =>
            error._tag === "EngineRequestFailed" &&
            error.status === 404 &&
            /no such image|image not known/i.test(error.message),
          () => Effect.succeed(Option.none<string>())
        ),
        Effect.timeoutFail({ duration: timeoutMs, onTimeout: () => unreachable(`no answer within ${timeoutMs} ms`) })
      )
    }

    const startContainer = (id: string) =>
      call(HttpClientRequest.post(`${container(id)}/start`), [304]).pipe(Effect.map(({ status }) => status !== 304))

    const stopContainer = (id: string, graceSeconds: number) =>
      call(
        HttpClientRequest.post(`${container(id)}/stop`).pipe(HttpClientRequest.setUrlParams({ t: graceSeconds })),
        [304, 404],
        timeoutMs + graceSeconds * 1000
      ).pipe(Effect.asVoid)

    // 409: not running (pause) or not paused (unpause).
    const pauseContainer = (id: string) =>
      call(HttpClientRequest.post(`${container(id)}/pause`), [404, 409]).pipe(Effect.asVoid)
    const unpauseContainer = (id: string) =>
      call(HttpClientRequest.post(`${container(id)}/unpause`), [409]).pipe(Effect.asVoid)

    const removeContainer = (id: string) =>
      call(HttpClientRequest.del(container(id)).pipe(HttpClientRequest.setUrlParams({ force: "true" })), [404]).pipe(
        Effect.asVoid
      )

    const listContainers = (label: string) => {
      const request = HttpClientRequest.get("/containers/json").pipe(
        HttpClientRequest.setUrlParams({ all: "true", filters: JSON.stringify({ label: [label] }) })
      )
      return call(request).pipe(
        Effect.flatMap(({ text }) => decode(ListedJson, request, text)),
        Effect.map((list) =>
          list.map(
            (entry): ListedContainer => ({
              id: entry.Id,
              name: (entry.Names?.[0] ?? entry.Id).replace(/^\//, ""),
              image: entry.Image,
              state: entry.State ?? "unknown",
              labels: entry.Labels ?? {},
              publishedPorts: (entry.Ports ?? []).flatMap((port) =>
                port.PublicPort == null || port.PublicPort === 0
                  ? []
                  : [{ containerPort: port.PrivatePort, hostPort: port.PublicPort }]
              ),
              networkMode: entry.HostConfig?.NetworkMode
            })
          )
        )
      )
    }

    const events = (containerId: string, actions: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        const request = HttpClientRequest.get("/events").pipe(
          HttpClientRequest.setUrlParams({
            filters: JSON.stringify({ type: ["container"], container: [containerId] })
          })
        )
        const body = yield* streamOf(request, true)
        // Filtered here, not by the engine: Podman's `event` filter knows `die` as `died`.
        const wanted = (action: string) => actions.some((a) => action === a || action.startsWith(`${a}:`))
        return jsonLines(body).pipe(
          Stream.filterMap((line) =>
            Option.map(Option.getRight(Schema.decodeUnknownEither(Schema.parseJson(EventJson))(line)), (event) => ({
              action: event.Action,
              containerId: event.Actor?.ID,
              attributes: event.Actor?.Attributes ?? {},
              timeNano: event.timeNano
            }))
          ),
          Stream.filter((event) => wanted(event.action))
        )
      })

    const logs: DockerEngine["logs"] = (containerId, { follow, tty, since, tail }) =>
      Stream.unwrapScoped(
        Effect.gen(function* () {
          const params: Record<string, string> = { stdout: "true", stderr: "true", follow: String(follow) }
          if (since !== undefined) params.since = since.toFixed(6)
          if (tail !== undefined) params.tail = String(tail)
          const body = yield* streamOf(
            HttpClientRequest.get(`${container(containerId)}/logs`).pipe(HttpClientRequest.setUrlParams(params)),
            follow
          )
          const demuxer = new LogDemuxer(tty)
          return body.pipe(
            Stream.mapConcat((chunk) => demuxer.push(chunk)),
            Stream.concat(Stream.suspend(() => Stream.fromChunk(Chunk.fromIterable(demuxer.flush()))))
          )
        })
      )

    return {
      url,
      ping: call(HttpClientRequest.get("/_ping")).pipe(Effect.asVoid),
      inspectContainer,
      imageExists,
      pullImage,
      createContainer,
      startContainer,
      stopContainer,
      pauseContainer,
      unpauseContainer,
      removeContainer,
      listContainers,
      events,
      logs
    } satisfies DockerEngine
  })
