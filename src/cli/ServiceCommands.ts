import { Args, Command, Options } from "@effect/cli"
import { Clock, Console, Effect, Option, Schema, Stream } from "effect"
import type { ServiceStatus } from "../http/ApiSchemas.ts"
import { ControlApi } from "../http/ControlApi.ts"
import type { CliError } from "./CliErrors.ts"
import { type Connection, connect, connection, type Gateway } from "./GatewayClient.ts"
import { ago, clock, dim, type Format, format, printJson, printLine, red, stateColour, table } from "./Output.ts"
import { reporting } from "./Report.ts"

// The commands that talk to a running gateway: status, start, stop, unload, logs, events, activity, config reload.

type Status = typeof ServiceStatus.Type

/** A service id; a word starting with `-` is an option @effect/cli did not know, not a service. */
const ServiceId = Schema.String.pipe(Schema.filter((id) => !id.startsWith("-") || `unknown option ${id}`))
/** Ids go into paths as one segment (HttpApiClient inserts path parameters as they are). */
const service = Args.text({ name: "SERVICE" }).pipe(Args.withSchema(ServiceId), Args.withDescription("a service id"))

/** Run `body` against the gateway the options name, its failures reported in the chosen format. */
const withGateway =
  <C extends Connection & { readonly format: Format }, R>(
    body: (gateway: Gateway, options: C) => Effect.Effect<void, CliError, R>
  ) =>
  (options: C) =>
    connect(options).pipe(
      Effect.flatMap((gateway) => body(gateway, options)),
      reporting(options.format)
    )

const attemptLine = (a: { machine: string; attempt: number; error: string; message: string }) =>
  `attempt ${a.attempt} on ${a.machine}: ${a.error}: ${a.message}`

const queue = (s: Status) => `${s.queuePending}/${s.queueCapacity}`

const statusDetail = (s: Status, now: number) => {
  const rows: Array<[string, string]> = [
    ["state", `${stateColour(s.state)}${s.machineId === null ? "" : ` on ${s.machineId}`} (${s.readiness})`],
    ["base url", s.baseUrl],
    ["queue", `${queue(s)} waiting`],
    ["in flight", String(s.inFlight)],
    ["last activity", s.lastActivity === null ? "-" : `${ago(s.lastActivity, now)} (${s.lastActivity})`],
    ["declared in", s.source === "config" ? "the config file" : "container labels"]
  ]
  if (s.group !== undefined) rows.push(["group", s.group])
  if (s.waitingFor !== undefined) rows.push(["waiting for", `${s.waitingFor} to stop (exclusive group)`])
  if (s.draining !== undefined) rows.push(["draining", `for ${s.draining.by} since ${s.draining.since}`])
  if (s.attempt !== undefined)
    rows.push([
      "attempt",
      `${s.attempt.number}/${s.attempt.of} on ${s.attempt.machine}: ${s.attempt.phase} since ${s.attempt.since}`
    ])
  if (s.container !== undefined)
    rows.push([
      "container",
      `${s.container.name} (${s.container.image ?? "image unknown"}) on ${s.container.engine}: ${s.container.state ?? "not seen yet"}`
    ])
  if (s.automation !== undefined) {
    const task = s.automation.current_task ?? s.automation.last_task
    rows.push([
      "semaphore",
      task === null ? "no task yet" : `task ${task.id} (${task.action}) ${task.status} on ${task.machine_id}`
    ])
  }
  if (s.lastError !== null) rows.push(["last error", red(`${s.lastError.error}: ${s.lastError.message}`)])
  const width = Math.max(...rows.map(([k]) => k.length))
  const lines = [s.serviceId, ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)]
  for (const attempt of s.lastError?.attempts ?? []) lines.push(`  ${"".padEnd(width)}  ${attemptLine(attempt)}`)
  return lines.join("\n")
}

const statusTable = (services: ReadonlyArray<Status>, now: number) =>
  table(
    ["SERVICE", "STATE", "MACHINE", "QUEUE", "IN FLIGHT", "LAST ACTIVITY", "LAST ERROR"],
    services.map((s) => [
      s.serviceId,
      stateColour(s.state),
      s.machineId ?? "-",
      queue(s),
      String(s.inFlight),
      ago(s.lastActivity, now),
      s.lastError === null ? "-" : red(s.lastError.error)
    ])
  )

export const status = Command.make(
  "status",
  { service: Args.optional(service), format, ...connection },
  withGateway((gateway, { service, format }) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      if (Option.isSome(service)) {
        const one = yield* gateway.call(
          gateway.api.services.status({ path: { id: encodeURIComponent(service.value) } })
        )
        return yield* format === "json" ? printJson(one) : Console.log(statusDetail(one, now))
      }
      const all = yield* gateway.call(gateway.api.services.list())
      if (format === "json") return yield* printJson(all)
      yield* Console.log(all.services.length === 0 ? "no services configured" : statusTable(all.services, now))
    })
  )
).pipe(Command.withDescription("every service's state (a table), or one service's in detail"))

export const start = Command.make(
  "start",
  {
    service,
    wait: Options.boolean("wait").pipe(
      Options.withDescription("answer once it is hot, or with the start's error (up to request_timeout_seconds)")
    ),
    format,
    ...connection
  },
  withGateway((gateway, { service, wait, format }) =>
    Effect.gen(function* () {
      const answer = yield* gateway.call(
        gateway.api.services.start({ path: { id: encodeURIComponent(service) }, urlParams: wait ? { wait: true } : {} })
      )
      if (format === "json") return yield* printJson(answer)
      const how = !answer.started ? "already hot" : answer.state === "hot" ? "started" : "start initiated"
      yield* Console.log(`${service}: ${stateColour(answer.state)} (${how})`)
    })
  )
).pipe(Command.withDescription("start a service (with --wait: until it is hot)"))

export const stop = Command.make(
  "stop",
  { service, format, ...connection },
  withGateway((gateway, { service, format }) =>
    Effect.gen(function* () {
      const answer = yield* gateway.call(gateway.api.services.stop({ path: { id: encodeURIComponent(service) } }))
      if (format === "json") return yield* printJson(answer)
      yield* Console.log(`${service}: ${stateColour(answer.state)} (stop initiated)`)
    })
  )
).pipe(Command.withDescription("stop a service (a start in progress is cancelled)"))

export const unload = Command.make(
  "unload",
  {
    group: Args.text({ name: "GROUP" }).pipe(Args.withSchema(ServiceId), Args.withDescription("a group's name")),
    format,
    ...connection
  },
  withGateway((gateway, { group, format }) =>
    Effect.gen(function* () {
      const answer = yield* gateway.call(gateway.api.groups.stop({ path: { name: encodeURIComponent(group) } }))
      if (format === "json") return yield* printJson(answer)
      if (answer.services.length === 0) return yield* Console.log(`${group}: no member runs`)
      for (const member of answer.services) {
        yield* Console.log(`${member.serviceId}: ${stateColour(member.state)} (stop initiated)`)
      }
    })
  )
).pipe(Command.withDescription("stop every member of a group (starts in progress are cancelled)"))

/** `hestia config reload`: lives under `config` beside the offline `check`. */
export const reload = Command.make(
  "reload",
  { format, ...connection },
  withGateway((gateway, { format }) =>
    Effect.gen(function* () {
      const { reloaded } = yield* gateway.call(gateway.api.config.reload())
      if (format === "json") return yield* printJson({ reloaded })
      const changes = [
        ["added", reloaded.added],
        ["removed", reloaded.removed],
        ["changed", reloaded.changed]
      ] as const
      const said = changes.filter(([, ids]) => ids.length > 0).map(([what, ids]) => `${what} ${ids.join(", ")}`)
      yield* Console.log(`reloaded ${reloaded.source}: ${said.length === 0 ? "no service changed" : said.join("; ")}`)
      if (reloaded.restartNeeded.length > 0) {
        yield* Console.log(`takes effect at the next gateway restart: ${reloaded.restartNeeded.join(", ")}`)
      }
    })
  )
).pipe(Command.withDescription("read the gateway's config file again and apply it (as saving it or SIGHUP does)"))

const logLine = (line: { ts: string; stream: string; line: string }) =>
  `${dim(clock(line.ts))} ${line.stream === "stderr" ? red("err") : dim("out")} ${line.line}`

export const logs = Command.make(
  "logs",
  {
    service,
    follow: Options.boolean("follow").pipe(
      Options.withAlias("f"),
      Options.withDescription("then every new line as it is written (until Ctrl-C)")
    ),
    tail: Options.integer("tail").pipe(
      Options.withDescription("the last N lines first (0 to 1000, default 100)"),
      Options.optional
    ),
    format,
    ...connection
  },
  withGateway((gateway, { service, follow, tail, format }) =>
    Effect.gen(function* () {
      const urlParams = Option.isSome(tail) ? { tail: tail.value } : {}
      if (!follow) {
        const answer = yield* gateway.call(
          gateway.api.logs.tail({ path: { id: encodeURIComponent(service) }, urlParams })
        )
        if (format === "json") return yield* printJson(answer)
        for (const line of answer.lines) yield* Console.log(logLine(line))
        return
      }
      const path = ControlApi.groups.logs.endpoints.tail.path.replace(":id", encodeURIComponent(service))
      yield* gateway.stream(path, { follow: "1", ...(Option.isSome(tail) ? { tail: String(tail.value) } : {}) }).pipe(
        Stream.runForEach((event) => {
          if (event.event === "line") {
            const line = JSON.parse(event.data) as { ts: string; stream: string; line: string }
            return format === "json" ? printLine(line) : Console.log(logLine(line))
          }
          if (event.event === "dropped") {
            const { lines } = JSON.parse(event.data) as { lines: number }
            return format === "json"
              ? printLine({ dropped: lines })
              : Console.error(`hestia: ${lines} line(s) skipped (this terminal read too slowly)`)
          }
          return Effect.void
        })
      )
    })
  )
).pipe(Command.withDescription("a service's captured stdout/stderr (--follow: and each new line)"))

/** One lifecycle event as a line a person reads: time, service, what happened. */
const eventLine = (type: string, data: Record<string, any>) => {
  const { serviceId, machine, at, ...fields } = data
  const where = machine === null || machine === undefined ? "" : ` on ${machine}`
  const said = (() => {
    switch (type) {
      case "state":
        return `${stateColour(fields.from)} → ${stateColour(fields.to)}`
      case "start_requested":
        return `start requested (${fields.trigger})`
      case "attempt_started":
        return `attempt ${fields.attempt}${where}`
      case "attempt_failed":
        return red(`attempt ${fields.attempt}${where} failed: ${fields.error}: ${fields.message}`)
      case "ready":
        return `ready${where} after ${(fields.durationMs / 1000).toFixed(1)} s`
      case "start_failed":
        return red(`start failed after ${Array.isArray(fields.attempts) ? fields.attempts.length : "?"} attempt(s)`)
      default:
        return `${type}${where}${Object.keys(fields).length === 0 ? "" : ` ${JSON.stringify(fields)}`}`
    }
  })()
  return `${dim(clock(String(at)))} ${serviceId ?? ""}  ${said}`
}

export const events = Command.make(
  "events",
  { format, ...connection },
  withGateway((gateway, { format }) =>
    gateway.stream(ControlApi.groups.events.endpoints.stream.path).pipe(
      Stream.runForEach((event) => {
        const data = JSON.parse(event.data) as Record<string, any>
        if (format === "json") return printLine({ event: event.event, ...data })
        if (event.event === "snapshot") {
          const services = data.services as ReadonlyArray<{ serviceId: string; state: string }>
          return Console.log(
            `${dim(clock(String(data.at)))} ${services.map((s) => `${s.serviceId} ${stateColour(s.state)}`).join(", ") || "no services"}`
          )
        }
        if (event.event === "dropped") return Console.error("hestia: events dropped: this terminal read too slowly")
        return Console.log(eventLine(event.event, data))
      })
    )
  )
).pipe(Command.withDescription("every lifecycle event as it happens (until Ctrl-C)"))

export const activity = Command.make(
  "activity",
  {
    service: Options.text("service").pipe(Options.withDescription("one service's rows only"), Options.optional),
    limit: Options.integer("limit").pipe(
      Options.withDescription("rows, newest first (1 to 1000, default 100)"),
      Options.optional
    ),
    format,
    ...connection
  },
  withGateway((gateway, { service, limit, format }) =>
    Effect.gen(function* () {
      const page = yield* gateway.call(
        gateway.api.activity.list({
          urlParams: {
            ...(Option.isSome(service) ? { serviceId: service.value } : {}),
            ...(Option.isSome(limit) ? { limit: limit.value } : {})
          }
        })
      )
      if (format === "json") return yield* printJson(page)
      if (page.activity.length === 0) return yield* Console.log("no activity")
      yield* Console.log(
        table(
          ["TIME", "SERVICE", "MACHINE", "EVENT", "DETAIL"],
          page.activity.map((row) => [
            row.ts.replace("T", " ").replace(/\.\d+Z$/, "Z"),
            row.serviceId ?? "-",
            row.machineId ?? "-",
            row.type,
            Object.keys(row.detail).length === 0 ? "" : JSON.stringify(row.detail)
          ])
        )
      )
    })
  )
).pipe(Command.withDescription("the persisted timeline, newest first"))
