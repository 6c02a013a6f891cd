// Hestia's dashboard: plain DOM, no framework, no build step. Live state comes from `GET /v1/events` (SSE); queue
// depth and in-flight counts, which change without an event, from `GET /v1/services` once a second while the page is
// visible. Every value from the gateway is written with textContent, never as HTML.

const boot = JSON.parse(document.getElementById("boot").textContent)
const byId = (id) => document.getElementById(id)

/** Server clock minus browser clock, from the event stream's snapshot: relative times use the gateway's clock. */
let clockOffset = 0
const now = () => Date.now() + clockOffset

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

const el = (tag, props = {}, children = []) => {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value
    else if (key === "text") node.textContent = value
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role") node.setAttribute(key, value)
    else node[key] = value
  }
  for (const child of children) node.append(child)
  return node
}

const SVG = "http://www.w3.org/2000/svg"
const svg = (tag, attributes = {}) => {
  const node = document.createElementNS(SVG, tag)
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value))
  return node
}

/** "just now", "12 s ago", "3 min ago", "2 h ago", "4 d ago". */
const ago = (ms) => {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 5) return "just now"
  if (s < 60) return `${s} s ago`
  const min = Math.floor(s / 60)
  if (min < 60) return `${min} min ago`
  const h = Math.floor(min / 60)
  if (h < 48) return `${h} h ago`
  return `${Math.floor(h / 24)} d ago`
}

/**
 * 0.4 s, 12 s, 3 min 5 s, 1 h 2 min. Never below zero: the gateway's clock is known to within the snapshot's delivery
 * time, so a phase that has just begun can seem to begin a few ms from now.
 */
const duration = (elapsed) => {
  const ms = Math.max(0, elapsed)
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`
  const s = Math.round(ms / 1000)
  if (s < 60) return `${s} s`
  const min = Math.floor(s / 60)
  if (min < 60) return s % 60 === 0 ? `${min} min` : `${min} min ${s % 60} s`
  return `${Math.floor(min / 60)} h ${min % 60} min`
}

const clockTime = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false })

const showMessage = (text) => {
  const message = byId("message")
  message.textContent = text
  message.hidden = text === ""
}

/** fetch with the browser's own credentials (the dashboard's Basic login is repeated for every path). */
const api = async (path, options = {}) => {
  const response = await fetch(path, { ...options, headers: { accept: "application/json", ...options.headers } })
  const text = await response.text()
  let body = null
  try {
    body = text === "" ? null : JSON.parse(text)
  } catch {
    body = { message: text }
  }
  if (!response.ok) {
    const error = new Error(body?.message ?? `HTTP ${response.status}`)
    error.status = response.status
    throw error
  }
  return body
}

// ---------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------

/** Per service: its config facts (from the page), its last status (from the API), the steps of its current start. */
const services = new Map(
  boot.services.map((config) => [
    config.serviceId,
    {
      config,
      status: null,
      /** The state the event stream last gave (null while it is not connected). */
      eventState: null,
      eventsSeen: 0,
      disagreed: 0,
      steps: [],
      stepsVersion: 0,
      history: null,
      card: null,
      seenWaiting: null
    }
  ])
)

/** Per group: its config (members in file order) and its heading's controls. */
const groups = new Map(boot.groups.map((config) => [config.name, { config, node: null }]))

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`

const stepText = (service, event) => {
  const of = service.config.attemptsPerMachine
  switch (event.type) {
    case "start_requested":
      return `start requested (${event.trigger}), will try ${event.machines.join(", ")}`
    case "attempt_started":
      return `attempt ${event.attempt}/${of} on ${event.machine}: starting`
    case "attempt_failed":
      return `attempt ${event.attempt}/${of} on ${event.machine} failed: ${event.error} — ${event.message}`
    case "ready":
      return `ready on ${event.machine} after ${duration(event.durationMs)}`
    case "start_failed":
      return `start failed after ${event.attempts.length} attempt(s)`
    case "evicted":
      return `evicted for ${event.by} after ${duration(event.waitedMs)} draining${
        event.cut > 0 ? `, ${plural(event.cut, "open request")} cut` : ""
      }`
    case "upstream_gone":
      return `went away: ${event.reason}`
    default:
      return event.type
  }
}

/** Events that tell the story of a start (or of an end): the first of each story clears the previous one. */
const STEP_TYPES = new Set([
  "start_requested",
  "attempt_started",
  "attempt_failed",
  "ready",
  "start_failed",
  "evicted",
  "upstream_gone"
])
const STORY_STARTS = new Set(["start_requested", "evicted", "upstream_gone"])

const pushStep = (service, step) => {
  service.steps.push(step)
  service.stepsVersion++
}

/** A lifecycle event as a step of the service's start (or eviction): a new story clears the previous steps. */
const addStep = (service, event) => {
  if (!STEP_TYPES.has(event.type)) return
  if (STORY_STARTS.has(event.type)) service.steps = []
  const at = typeof event.at === "string" ? Date.parse(event.at) : event.at
  const kind =
    event.type === "attempt_failed" || event.type === "start_failed" || event.type === "upstream_gone"
      ? "fail"
      : event.type === "ready"
        ? "done"
        : ""
  pushStep(service, { at, text: stepText(service, event), kind, type: event.type })
}

/**
 * What the card shows as its state: the API's four, and the two moments of an exclusive group that status tells
 * apart: `waiting` (starting, but for another member to make room) and `draining` (hot, finishing its open requests
 * before an eviction).
 */
const phaseOf = (status) =>
  status.state === "starting" && status.waitingFor !== undefined
    ? "waiting"
    : status.state === "hot" && status.draining !== undefined
      ? "draining"
      : status.state

const KIND_NAMES = { process: "process", semaphore: "Semaphore task", container: "container", external: "external" }

const buildCard = (id, service, headingLevel) => {
  const fact = (label) => {
    const value = el("dd", { text: "–" })
    return { node: el("div", {}, [el("dt", { text: label }), value]), value }
  }
  const kind = service.config.kind
  const facts = {
    kind: fact("Kind"),
    machine: fact("Machine"),
    queue: fact("Queue"),
    inFlight: fact("In flight"),
    lastActivity: fact("Last activity"),
    idle: fact("Idle stop"),
    ...(kind === "container" ? { container: fact("Container"), image: fact("Image") } : {}),
    ...(kind === "semaphore" ? { task: fact("Task") } : {})
  }
  const badges = el("span", { class: "badges" })
  if (service.config.source === "labels") {
    badges.append(el("span", { class: "badge", text: "from labels", title: "discovered from its container's labels" }))
  }
  if (service.config.persistent) {
    badges.append(el("span", { class: "badge", text: "persistent", title: "never evicted from its group" }))
  }
  const created = el("span", { class: "badge", text: "created by Hestia", hidden: true })
  badges.append(created)
  const state = el("span", { class: "state", text: "…" })
  const start = el("button", { type: "button", class: "primary", text: "Start", "aria-label": `Start ${id}` })
  const stop = el("button", { type: "button", text: "Stop", "aria-label": `Stop ${id}` })
  const logs = el("button", { type: "button", text: "Logs", "aria-label": `Show the logs of ${id}` })
  const steps = el("ol", { class: "steps", "aria-label": `Steps of the start of ${id}`, "aria-live": "polite" })
  const progress = el("p", { class: "progress", hidden: true })
  const errorSummary = el("summary")
  const errorMessage = el("pre", { class: "error-message" })
  const attempts = el("tbody")
  const attemptsTable = el("table", { class: "attempts" }, [
    el("thead", {}, [
      el("tr", {}, [
        el("th", { text: "#" }),
        el("th", { text: "Machine" }),
        el("th", { text: "Error" }),
        el("th", { text: "Message" })
      ])
    ]),
    attempts
  ])
  const error = el("details", { class: "error", hidden: true }, [errorSummary, errorMessage, attemptsTable])
  const requestsChart = el("figure", { class: "chart" })
  const coldChart = el("figure", { class: "chart" })
  const card = el("li", { class: "card", "data-service": id, "data-state": "cold", "data-phase": "cold" }, [
    el("div", { class: "card-head" }, [el(`h${headingLevel}`, { text: id }), badges, state]),
    el(
      "dl",
      { class: "facts" },
      Object.values(facts).map((f) => f.node)
    ),
    progress,
    steps,
    error,
    el("div", { class: "charts" }, [requestsChart, coldChart]),
    el("div", { class: "actions" }, [start, stop, logs])
  ])
  facts.kind.value.textContent = KIND_NAMES[kind] ?? kind
  start.addEventListener("click", () => act(id, "start"))
  stop.addEventListener("click", () => act(id, "stop"))
  logs.addEventListener("click", () => {
    byId("logs-service").value = id
    openLogs()
    byId("logs-output").focus()
  })
  return {
    card,
    state,
    facts,
    created,
    start,
    stop,
    steps,
    stepsShown: -1,
    progress,
    error,
    errorSummary,
    errorMessage,
    attemptsTable,
    attempts,
    requestsChart,
    coldChart
  }
}

/** A group: its name, what it is, an Unload button, and its members' cards under it. */
const buildGroup = (group, index) => {
  const name = group.config.name
  const titleId = `group-${index}`
  const unload = el("button", {
    type: "button",
    class: "unload",
    text: "Unload",
    "aria-label": `Unload group ${name}: stop every member`
  })
  const summary = el("p", { class: "group-summary", role: "status" })
  const members = el("ul", { class: "services members", "aria-labelledby": titleId })
  const node = el("li", { class: "group", "data-group": name }, [
    el("div", { class: "group-head" }, [
      el("h3", { id: titleId }, [el("span", { class: "muted", text: "group " }), document.createTextNode(name)]),
      el("span", {
        class: "badge",
        text: group.config.exclusive ? "exclusive: one at a time" : `${plural(group.config.members.length, "member")}`
      }),
      summary,
      unload
    ]),
    members
  ])
  unload.addEventListener("click", () => unloadGroup(name))
  return { node, unload, summary, members }
}

/** Disable a button, first moving the keyboard focus to `instead` if the button had it. */
const setDisabled = (button, disabled, instead) => {
  if (disabled && document.activeElement === button) instead.focus()
  button.disabled = disabled
}

const taskText = (automation) => {
  const task = automation?.current_task ?? automation?.last_task
  if (task === null || task === undefined) return "none yet"
  const text = `#${task.id} ${task.action}: ${task.status}`
  if (automation.current_task !== null) return `${text} (${duration(now() - Date.parse(task.started_at))})`
  return task.finished_at === null ? text : `${text}, ${ago(now() - Date.parse(task.finished_at))}`
}

/** The line under the facts while something is under way: waiting, the attempt in progress, draining. */
const progressText = (service, phase, first) => {
  const status = service.status
  if (phase === "waiting") {
    const since = first ?? service.seenWaiting ?? now()
    return `waiting for ${status.waitingFor} to make room — ${duration(now() - since)}`
  }
  if (phase === "draining") {
    const open =
      status.inFlight === 0 ? "its requests have ended" : `${plural(status.inFlight, "open request")} to finish`
    return `draining for ${status.draining.by}: ${open} — ${duration(now() - Date.parse(status.draining.since))}`
  }
  if (phase !== "starting") return null
  const attempt = status.attempt
  const total = first === undefined ? "" : ` (${duration(now() - first)} in all)`
  if (attempt === undefined) return `starting…${total}`
  const doing = attempt.phase === "probing" ? "probing health" : "starting"
  return `attempt ${attempt.number}/${attempt.of} on ${attempt.machine} — ${doing} for ${duration(now() - Date.parse(attempt.since))}${total}`
}

const renderService = (id) => {
  const service = services.get(id)
  const card = service.card
  const status = service.status
  if (status === null) return
  const state = status.state
  const phase = phaseOf(status)
  card.card.dataset.state = state
  card.card.dataset.phase = phase
  card.state.textContent = phase
  card.facts.machine.value.textContent = status.machineId ?? "–"
  card.facts.queue.value.textContent = `${status.queuePending} / ${status.queueCapacity}`
  card.facts.inFlight.value.textContent = String(status.inFlight)
  const last = status.lastActivity === null ? null : Date.parse(status.lastActivity)
  card.facts.lastActivity.value.textContent = last === null ? "never" : ago(now() - last)
  if (last !== null) card.facts.lastActivity.value.title = new Date(last).toLocaleString()
  const idleMs = service.config.idleTimeoutMs
  card.facts.idle.value.textContent =
    idleMs === 0
      ? "never"
      : phase !== "hot"
        ? "–"
        : status.inFlight > 0
          ? "after the open requests"
          : `in ${duration(Math.max(0, (last ?? now()) + idleMs - now()))}`
  const container = status.container
  if (card.facts.container !== undefined && container !== undefined) {
    card.facts.container.value.textContent = `${container.name} (${container.state ?? "not seen yet"})`
    card.facts.container.value.title = `${container.id ?? "no id yet"} on ${container.engine}`
    card.facts.image.value.textContent = container.image ?? "–"
    card.created.hidden = !container.created_by_hestia
  }
  if (card.facts.task !== undefined) card.facts.task.value.textContent = taskText(status.automation)

  setDisabled(card.start, state === "hot" || state === "starting", card.stop)
  setDisabled(card.stop, state === "cold" || state === "stopping", card.start)

  // A start that waits for its group: a step of its own, the first time status shows it. It has waited since it was
  // requested (the group's gate is its first step).
  const lastStep = service.steps.at(-1)
  if (phase === "waiting") {
    service.seenWaiting ??= now()
    if (lastStep?.type === "start_requested") {
      const text = `waiting for ${status.waitingFor} to make room`
      pushStep(service, { at: lastStep.at, text, kind: "", type: "wait" })
    }
  } else service.seenWaiting = null

  // The steps of the current (or last) start, with the time since the start was requested. The list is a live
  // region: it is rebuilt only when a step was added, so a screen reader hears each step once.
  const first = service.steps[0]?.type === "start_requested" ? service.steps[0].at : undefined
  const storyStart = service.steps[0]?.at
  if (card.stepsShown !== service.stepsVersion) {
    card.stepsShown = service.stepsVersion
    card.steps.replaceChildren(
      ...service.steps.map((step) =>
        el("li", { class: step.kind }, [
          el("span", { class: "at", text: `+${duration(step.at - storyStart)} ` }),
          document.createTextNode(step.text)
        ])
      )
    )
  }
  const progress = progressText(service, phase, first)
  card.progress.hidden = progress === null
  if (progress !== null) card.progress.textContent = progress

  const error = status.lastError
  card.error.hidden = error === null
  if (error !== null) {
    const hasAttempts = error.attempts.length > 0
    // A start that failed lists its attempts; an instance that died on its own (a process or container that exited,
    // an upstream that refused connections) has none: its message, with any output lines it carries, is the story.
    const [headline, ...rest] = error.message.split("\n")
    card.errorSummary.textContent = hasAttempts
      ? `Last error: ${error.error} — ${headline}`
      : `Went away while hot: ${error.error} — ${headline}`
    card.errorMessage.hidden = hasAttempts
    card.errorMessage.textContent = hasAttempts ? "" : [headline, ...rest].join("\n")
    card.attemptsTable.hidden = !hasAttempts
    card.attempts.replaceChildren(
      ...error.attempts.map((a) =>
        el("tr", {}, [
          el("td", { text: String(a.attempt) }),
          el("td", { text: a.machine }),
          el("td", { text: a.error }),
          el("td", { text: a.message })
        ])
      )
    )
  }
  for (const group of groups.values()) if (group.config.members.includes(id)) renderGroup(group)
}

const renderGroup = (group) => {
  if (group.node === null) return
  const members = group.config.members.map((id) => services.get(id)).filter((s) => s !== undefined && s.status !== null)
  const running = members
    .filter((s) => s.status.state !== "cold")
    .map((s) => `${s.config.serviceId} ${phaseOf(s.status)}`)
  // A live region: written only when it changes, so a screen reader hears each change once.
  const summary = running.length === 0 ? "nothing running" : running.join(" · ")
  if (group.node.summary.textContent !== summary) group.node.summary.textContent = summary
  const idle = members.every((s) => s.status.state === "cold")
  if (idle && document.activeElement === group.node.unload) group.node.members.querySelector("button")?.focus()
  group.node.unload.disabled = idle
}

// ---------------------------------------------------------------------------
// Charts: requests/s and cold-start durations over the last hour, as small SVGs
// ---------------------------------------------------------------------------

const W = 300
const H = 40

const drawChart = (figure, caption, points, { windowMs, kind }) => {
  const end = now()
  // A margin of a dot's radius, so points at either end stay whole.
  const x = (at) => 3 + ((at - (end - windowMs)) / windowMs) * (W - 6)
  const max = Math.max(...points.map((p) => p.value), kind === "line" ? 1 : 0.1)
  const y = (value) => H - 2 - (value / max) * (H - 4)
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" })
  const title = svg("title")
  title.textContent = caption
  chart.append(title)
  if (kind === "line" && points.length > 0) {
    // Steps: each value holds over its interval (`from` → `at`).
    chart.append(
      svg("polyline", {
        class: "line",
        points: points
          .map((p) => `${x(p.from).toFixed(1)},${y(p.value).toFixed(1)} ${x(p.at).toFixed(1)},${y(p.value).toFixed(1)}`)
          .join(" ")
      })
    )
  }
  if (kind === "bars") {
    // Bars, not dots: the chart stretches to its box, which would squash circles.
    for (const p of points) {
      const at = x(p.at).toFixed(1)
      chart.append(svg("line", { class: `bar ${p.outcome}`, x1: at, x2: at, y1: H, y2: y(p.value).toFixed(1) }))
    }
  }
  figure.replaceChildren(el("figcaption", { text: caption }), chart)
}

const renderCharts = (id) => {
  const service = services.get(id)
  const history = service.history
  if (history === null) return
  const rates = history.requests.map((r, i, all) => ({
    from: i === 0 ? r.at - history.intervalMs : all[i - 1].at,
    at: r.at,
    value: r.perSecond
  }))
  const peak = Math.max(0, ...rates.map((r) => r.value))
  drawChart(service.card.requestsChart, `requests/s, last hour (peak ${peak.toFixed(peak < 10 ? 1 : 0)})`, rates, {
    windowMs: history.windowMs,
    kind: "line"
  })
  const starts = history.coldStarts.map((c) => ({ at: c.at, value: c.durationMs / 1000, outcome: c.outcome }))
  const lastStart = history.coldStarts.at(-1)
  drawChart(
    service.card.coldChart,
    lastStart === undefined
      ? "cold starts, last hour: none"
      : `cold starts, last hour: ${starts.length} (last ${duration(lastStart.durationMs)})`,
    starts,
    { windowMs: history.windowMs, kind: "bars" }
  )
}

const refreshHistory = async () => {
  try {
    const body = await api("/v1/metrics/history")
    for (const [id, history] of Object.entries(body.services)) {
      const service = services.get(id)
      if (service === undefined) continue
      service.history = { ...history, windowMs: body.windowMs, intervalMs: body.intervalMs }
      renderCharts(id)
    }
  } catch {
    // the connection indicator says what is wrong
  }
}

// ---------------------------------------------------------------------------
// Live: the event stream, and a status read once a second
// ---------------------------------------------------------------------------

let events = null
let live = false
let retryMs = 1000

const setLive = (value) => {
  live = value
  const connection = byId("connection")
  connection.dataset.live = String(value)
  connection.textContent = value ? "live" : "reconnecting…"
}

/** How many events of each service have arrived: a read asked for before one of them is older than what it said. */
const eventsSeen = () => new Map([...services].map(([id, service]) => [id, service.eventsSeen]))

/**
 * A status read (or a start/stop answer) and the event stream travel apart, so a read can be older than an event
 * already shown, or newer than events still on their way. States come in order from the events (every change of
 * state is one); a read fills in the rest (queue, in flight, attempt, waiting, draining, last error). A read is
 * shown only when no event of its service came after it was asked for, and when it agrees with the state the events
 * gave; otherwise it waits for the events, and a few reads in a row that disagree win (a stream that lost events).
 */
const applyStatus = (status, asked) => {
  const service = services.get(status.serviceId)
  if (service === undefined || service.eventsSeen !== asked.get(status.serviceId)) return
  if (live && service.eventState !== null && status.state !== service.eventState && service.disagreed < 3) {
    service.disagreed++
    setTimeout(refreshStatus, 300)
    return
  }
  service.disagreed = 0
  service.eventState = live ? status.state : null
  service.status = status
  renderService(status.serviceId)
}

/** One read at a time; one asked for meanwhile runs right after it, so the page never rests on a stale read. */
let refreshing = false
let refreshAgain = false
const refreshStatus = async () => {
  if (refreshing) {
    refreshAgain = true
    return
  }
  refreshing = true
  try {
    do {
      refreshAgain = false
      const asked = eventsSeen()
      const body = await api("/v1/services")
      for (const status of body.services) applyStatus(status, asked)
    } while (refreshAgain)
  } catch {
    setLive(false)
  } finally {
    refreshing = false
  }
}

const onEvent = (type) => (message) => {
  const data = JSON.parse(message.data)
  const service = services.get(data.serviceId)
  if (service === undefined) return
  service.eventsSeen++
  if (type === "state") service.eventState = data.to
  if (type === "state" && service.status !== null) {
    // Until the status read that follows: what belonged to the state it left goes with it.
    const { waitingFor: _w, draining: _d, attempt: _a, ...rest } = service.status
    service.status = { ...rest, state: data.to, machineId: data.machine }
  }
  // An attempt has begun: the start no longer waits for its group (the status read that follows has the attempt).
  if (type === "attempt_started" && service.status !== null) {
    const { waitingFor: _w, ...rest } = service.status
    service.status = rest
  }
  addStep(service, { ...data, type })
  renderService(data.serviceId)
  if (type !== "request_queued" && type !== "request_released") activityChanged(data.serviceId)
  if (type === "ready" || type === "start_failed") void refreshHistory()
  void refreshStatus()
}

const EVENT_TYPES = [
  "state",
  "start_requested",
  "attempt_started",
  "attempt_failed",
  "ready",
  "start_failed",
  "idle_stop",
  "evicted",
  "stopped",
  "stop_failed",
  "upstream_gone",
  "adopted",
  "request_queued",
  "request_released",
  "request_rejected"
]

const connect = () => {
  events?.close()
  events = new EventSource("/v1/events")
  events.addEventListener("open", () => {
    retryMs = 1000
  })
  events.addEventListener("snapshot", (message) => {
    const data = JSON.parse(message.data)
    clockOffset = Date.parse(data.at) - Date.now()
    // After a gateway restart with another config, this page's service list is stale.
    const ids = data.services.map((s) => s.serviceId).sort()
    if (ids.join(",") !== [...services.keys()].sort().join(",")) return location.reload()
    for (const { serviceId, state } of data.services) {
      const service = services.get(serviceId)
      service.eventsSeen++
      service.eventState = state
      if (service.status !== null && service.status.state !== state) {
        const { waitingFor: _w, draining: _d, attempt: _a, ...rest } = service.status
        service.status = { ...rest, state }
        renderService(serviceId)
      }
    }
    setLive(true)
    void refreshStatus()
    void refreshHistory()
    activityChanged(undefined)
  })
  for (const type of EVENT_TYPES) events.addEventListener(type, onEvent(type))
  events.addEventListener("error", () => {
    setLive(false)
    // The browser retries by itself after a network error; after an HTTP error it gives up, so retry here.
    if (events?.readyState === EventSource.CLOSED) {
      events.close()
      setTimeout(() => document.visibilityState === "visible" && connect(), retryMs)
      retryMs = Math.min(retryMs * 2, 10_000)
    }
  })
}

const tick = () => {
  if (document.visibilityState !== "visible") return
  if (live) void refreshStatus()
  for (const id of services.keys()) renderService(id)
}

/** Start or stop; the outcome arrives as events. */
const act = async (id, action) => {
  showMessage("")
  try {
    const asked = eventsSeen()
    applyStatus(await api(`/v1/services/${encodeURIComponent(id)}/${action}`, { method: "POST" }), asked)
  } catch (error) {
    showMessage(`${action} ${id}: ${error.message}`)
  }
}

/** Unload: every member of the group stopped (a start in progress cancelled); the answer has each one's status. */
const unloadGroup = async (name) => {
  showMessage("")
  try {
    const asked = eventsSeen()
    const body = await api(`/v1/groups/${encodeURIComponent(name)}/stop`, { method: "POST" })
    for (const status of body.services) applyStatus(status, asked)
  } catch (error) {
    showMessage(`unload ${name}: ${error.message}`)
  }
}

// ---------------------------------------------------------------------------
// Activity timeline: newest first, filtered by service, paged with `before`
// ---------------------------------------------------------------------------

const PAGE = 20
/** `before` cursors of the pages above the current one; the first page has none. */
let pages = []
let nextBefore = null
let activityTimer = null

const detailText = (row) => {
  const d = row.detail ?? {}
  switch (row.type) {
    case "state":
      return `${d.from} → ${d.to}`
    case "start_requested":
      return `${d.trigger ?? ""}${d.machines ? `, will try ${d.machines.join(", ")}` : ""}`
    case "attempt_started":
      return `attempt ${d.attempt}`
    case "attempt_failed":
      return `attempt ${d.attempt}: ${d.error} — ${d.message}`
    case "ready":
      return `after ${duration(d.durationMs)}, released ${d.released}`
    case "start_failed":
      return `after ${duration(d.durationMs)}, ${(d.attempts ?? []).length} attempt(s)`
    case "stopped":
      return d.reason ?? ""
    case "idle_stop":
      return `idle for ${duration(d.idleMs)}`
    case "evicted":
      return `for ${d.by}, after ${duration(d.waitedMs)} draining${d.cut > 0 ? `; ${plural(d.cut, "open request")} cut` : ""}`
    case "upstream_gone":
      return d.reason ?? ""
    case "auth_denied":
      return `${d.reason}: ${d.method} ${d.path}`
    default:
      return Object.keys(d).length === 0 ? "" : JSON.stringify(d)
  }
}

const loadActivity = async () => {
  const serviceId = byId("activity-service").value
  const params = new URLSearchParams({ limit: String(PAGE) })
  if (serviceId !== "") params.set("serviceId", serviceId)
  const before = pages.at(-1)
  if (before !== undefined) params.set("before", String(before))
  try {
    const body = await api(`/v1/activity?${params}`)
    nextBefore = body.nextBefore
    byId("activity-list").replaceChildren(
      ...body.activity.map((row) =>
        el("li", { "data-type": row.type }, [
          el("time", { text: clockTime(Date.parse(row.ts)), dateTime: row.ts, title: row.ts }),
          el("span", { text: row.serviceId ?? "–" }),
          el("span", { class: `type type-${row.type}`, text: row.type }),
          el("span", { class: "detail", text: detailText(row) })
        ])
      )
    )
    if (body.activity.length === 0) byId("activity-list").append(el("li", { class: "muted", text: "nothing yet" }))
    byId("activity-older").disabled = nextBefore === null
    byId("activity-newer").disabled = pages.length === 0
    byId("activity-page").textContent = `page ${pages.length + 1}`
  } catch (error) {
    byId("activity-page").textContent = `could not load: ${error.message}`
  }
}

/** New rows only matter on the first page; a burst of events is one reload. */
const activityChanged = (serviceId) => {
  const filter = byId("activity-service").value
  if (pages.length > 0 || (filter !== "" && serviceId !== undefined && filter !== serviceId)) return
  clearTimeout(activityTimer)
  activityTimer = setTimeout(loadActivity, 300)
}

// ---------------------------------------------------------------------------
// Logs: the last lines of a service, and each new one while following
// ---------------------------------------------------------------------------

const MAX_LOG_LINES = 1000
let logSource = null

const appendLog = (output, text, kind) => {
  const atBottom = output.scrollHeight - output.scrollTop - output.clientHeight < 8
  output.append(el("span", { class: kind, text: `${text}\n` }))
  while (output.childElementCount > MAX_LOG_LINES) output.firstElementChild.remove()
  if (atBottom) output.scrollTop = output.scrollHeight
}

const logLine = (line) => `${clockTime(Date.parse(line.ts))} ${line.line}`

const openLogs = async () => {
  const id = byId("logs-service").value
  const tail = byId("logs-tail").value
  const follow = byId("logs-follow").checked
  const output = byId("logs-output")
  const state = byId("logs-state")
  logSource?.close()
  logSource = null
  output.replaceChildren()
  if (id === "") return
  const path = `/v1/services/${encodeURIComponent(id)}/logs`
  if (!follow) {
    try {
      const body = await api(`${path}?tail=${tail}`)
      for (const line of body.lines) appendLog(output, logLine(line), line.stream)
      state.textContent = body.lines.length === 0 ? "no output captured yet" : `${body.lines.length} line(s)`
    } catch (error) {
      state.textContent = `could not load: ${error.message}`
    }
    return
  }
  const source = new EventSource(`${path}?tail=${tail}&follow=1`)
  logSource = source
  state.textContent = "following…"
  source.addEventListener("open", () => {
    state.textContent = "following"
  })
  source.addEventListener("line", (message) => {
    const line = JSON.parse(message.data)
    appendLog(output, logLine(line), line.stream)
  })
  source.addEventListener("dropped", (message) => {
    appendLog(output, `… ${JSON.parse(message.data).lines} line(s) skipped (reading too slowly)`, "notice")
  })
  source.addEventListener("refused", (message) => {
    state.textContent = JSON.parse(message.data).message
  })
  source.addEventListener("error", () => {
    if (logSource !== source) return
    state.textContent = "reconnecting…"
    if (source.readyState === EventSource.CLOSED) setTimeout(() => logSource === source && openLogs(), 3000)
  })
}

// ---------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------

// A scrollable region must be reachable with the keyboard to be scrolled with it.
byId("logs-output").tabIndex = 0

// Services in file order; a group's members together under its heading, where its first member would be.
const list = byId("services")
let groupIndex = 0
for (const [id, service] of services) {
  const group = service.config.group === null ? undefined : groups.get(service.config.group)
  if (group !== undefined && group.node === null) {
    group.node = buildGroup(group, groupIndex++)
    list.append(group.node.node)
  }
  service.card = buildCard(id, service, group === undefined ? 3 : 4)
  const parent = group === undefined ? list : group.node.members
  parent.append(service.card.card)
  byId("activity-service").append(el("option", { value: id, text: id }))
  byId("logs-service").append(el("option", { value: id, text: id }))
}
// A group whose every member is shown under an earlier group still gets its heading and its Unload button.
for (const group of groups.values()) {
  if (group.node !== null) continue
  group.node = buildGroup(group, groupIndex++)
  group.node.members.replaceWith(
    el("p", { class: "muted", text: `members: ${group.config.members.join(", ")} (shown under their first group)` })
  )
  list.append(group.node.node)
}
if (services.size === 0) list.append(el("li", { class: "muted", text: "No services are configured." }))

byId("activity-service").addEventListener("change", () => {
  pages = []
  void loadActivity()
})
byId("activity-older").addEventListener("click", () => {
  if (nextBefore === null) return
  pages.push(nextBefore)
  void loadActivity()
})
byId("activity-newer").addEventListener("click", () => {
  pages.pop()
  void loadActivity()
})
for (const control of ["logs-service", "logs-tail", "logs-follow"]) byId(control).addEventListener("change", openLogs)

/** A start already under way when the page opens: its steps so far, from the timeline. */
const backfillSteps = async () => {
  for (const [id, service] of services) {
    if (service.status?.state !== "starting") continue
    try {
      const body = await api(`/v1/activity?serviceId=${encodeURIComponent(id)}&limit=50`)
      const rows = []
      for (const row of body.activity) {
        rows.unshift(row)
        if (row.type === "start_requested") break
      }
      if (service.steps.length > 0) continue
      for (const row of rows) addStep(service, { ...row.detail, type: row.type, at: row.ts, machine: row.machineId })
      renderService(id)
    } catch {
      // steps are a convenience
    }
  }
}

// A browser opens at most 6 connections to one host and this page holds two (events, logs): a hidden tab lets
// go of them, so that several open tabs do not starve each other; it reconnects (fresh snapshot) when shown.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden") {
    events?.close()
    events = null
    // States no longer follow the events: the snapshot on return sets them again.
    setLive(false)
    logSource?.close()
    logSource = null
  } else {
    if (events === null) connect()
    if (logSource === null && byId("logs-follow").checked) void openLogs()
  }
})

setLive(false)
byId("connection").textContent = "connecting…"
await refreshStatus()
void backfillSteps()
void openLogs()
connect()
setInterval(tick, 1000)
setInterval(refreshHistory, 5_000)
