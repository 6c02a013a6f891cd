import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { createServer } from "node:net"
import { setTimeout as sleep } from "node:timers/promises"
import { request } from "undici"

/** Wall clock in ms, sub-millisecond, comparable across processes on this machine. */
export const now = () => performance.timeOrigin + performance.now()

// ---------------------------------------------------------------------------
// Children: every process the bench starts is tracked and killed on the way out, whatever the way out.
// ---------------------------------------------------------------------------

export interface Child {
  readonly name: string
  readonly process: ChildProcess
  readonly pid: number
  /** The last lines of its stdout/stderr, for error messages. */
  readonly output: () => string
  readonly exited: Promise<number | null>
}

const children = new Set<Child>()
/** Pids the bench itself is stopping: their exit is expected. */
const stopping = new Set<number>()
/** Files of upstream marks: the processes the gateway spawned, killed too in case the gateway could not. */
const markFiles = new Set<string>()

export const trackMarks = (file: string) => {
  markFiles.add(file)
}

export const startChild = (
  name: string,
  command: string,
  args: ReadonlyArray<string>,
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}
): Child => {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"]
  })
  if (child.pid === undefined) throw new Error(`${name}: could not spawn ${command}`)
  let tail = ""
  const keep = (data: Buffer) => {
    tail = (tail + data.toString("utf8")).slice(-4000)
  }
  child.stdout!.on("data", keep)
  child.stderr!.on("data", keep)
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code, signal) => {
      if (!stopping.has(child.pid!)) {
        process.stderr.write(
          `!! ${name} (pid ${child.pid}) exited by itself: code ${code}, signal ${signal}\n${tail}\n`
        )
      }
      resolve(code)
    })
  )
  const tracked: Child = { name, process: child, pid: child.pid, output: () => tail, exited }
  children.add(tracked)
  void exited.then(() => children.delete(tracked))
  return tracked
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
export const stopChild = async (child: Child, graceMs = 5_000) => {
  if (child.process.exitCode !== null || child.process.signalCode !== null) return
  stopping.add(child.pid)
  child.process.kill("SIGTERM")
  const timer = setTimeout(() => child.process.kill("SIGKILL"), graceMs)
  await child.exited
  clearTimeout(timer)
}

const markedPids = (): Array<number> => {
  const pids: Array<number> = []
  for (const file of markFiles) {
    if (!existsSync(file)) continue
    for (const line of readFileSync(file, "utf8").split("\n")) {
      if (line === "") continue
      const mark = JSON.parse(line) as { event: string; pid: number }
      if (mark.event === "spawned") pids.push(mark.pid)
    }
  }
  return pids
}

/** Synchronous last resort (process exit): SIGKILL every child and every upstream the gateway spawned. */
export const killEverythingNow = () => {
  for (const child of children) {
    stopping.add(child.pid)
    try {
      child.process.kill("SIGKILL")
    } catch {
      // gone
    }
  }
  for (const pid of markedPids()) {
    if (!alive(pid)) continue
    try {
      // The gateway starts upstreams in their own process group.
      process.kill(-pid, "SIGKILL")
    } catch {
      try {
        process.kill(pid, "SIGKILL")
      } catch {
        // gone
      }
    }
  }
}

/** The upstreams the gateway spawned (from the marks files) that still run. */
export const spawnedStillRunning = () => markedPids().filter(alive)

/** Orderly: stop every child (gateways first, they stop their own upstreams), then anything left behind. */
export const stopEverything = async () => {
  const all = Array.from(children)
  await Promise.all(all.filter((c) => c.name.startsWith("gateway")).map((c) => stopChild(c)))
  await Promise.all(Array.from(children).map((c) => stopChild(c, 2_000)))
  const leftovers = markedPids().filter(alive)
  killEverythingNow()
  return leftovers
}

/**
 * Whatever way the process leaves (an error, a signal, the end), no child stays behind; `cleanUp` runs last
 * (synchronously) at exit.
 */
export const stopEverythingOnExit = (cleanUp: () => void) => {
  process.on("exit", () => {
    killEverythingNow()
    cleanUp()
  })
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping every process the bench started\n`)
      void stopEverything().finally(() => process.exit(130))
    })
  }
}

// ---------------------------------------------------------------------------
// Ports and readiness
// ---------------------------------------------------------------------------

export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

/** `port(name)`: a free port per name, the same on every call, never one already handed out under another name. */
export const namedPorts = () => {
  const byName = new Map<string, Promise<number>>()
  const taken = new Set<number>()
  const fresh = async () => {
    for (;;) {
      const port = await freePort()
      if (!taken.has(port)) {
        taken.add(port)
        return port
      }
    }
  }
  return (name: string) => {
    let port = byName.get(name)
    if (port === undefined) {
      port = fresh()
      byName.set(name, port)
    }
    return port
  }
}

/** Polls `url` every `everyMs` until it answers 2xx; resolves with the wall time of that answer. */
export const waitForHttp = async (
  url: string,
  child: Child | undefined,
  options: { timeoutMs?: number; everyMs?: number; headers?: Record<string, string> } = {}
) => {
  const deadline = now() + (options.timeoutMs ?? 30_000)
  for (;;) {
    if (child !== undefined && child.process.exitCode !== null) {
      throw new Error(`${child.name} exited with code ${child.process.exitCode}:\n${child.output()}`)
    }
    try {
      const response = await request(url, { headers: options.headers ?? {}, reset: true })
      await response.body.dump()
      if (response.statusCode >= 200 && response.statusCode < 300) return now()
    } catch {
      // not listening yet
    }
    if (now() > deadline) {
      throw new Error(`${url} did not answer 2xx in time${child === undefined ? "" : `:\n${child.output()}`}`)
    }
    await sleep(options.everyMs ?? 20)
  }
}

// ---------------------------------------------------------------------------
// /proc: CPU time and resident memory of one process
// ---------------------------------------------------------------------------

const CLOCK_TICKS_PER_SECOND = 100

/** User + system CPU time of `pid` in ms (resolution 10 ms). */
export const cpuMs = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  // After "pid (comm) ", field 0 is the state; utime and stime are fields 14 and 15 of the whole line.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND
}

/** Resident set size of `pid` in MiB. */
export const rssMiB = (pid: number) => {
  const status = readFileSync(`/proc/${pid}/status`, "utf8")
  const line = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)
  return line === null ? Number.NaN : Number(line[1]) / 1024
}

/** Samples RSS every `everyMs` until stopped; returns the peak. */
export const rssSampler = (pid: number, everyMs = 25) => {
  let peak = rssMiB(pid)
  const timer = setInterval(() => {
    peak = Math.max(peak, rssMiB(pid))
  }, everyMs)
  return {
    stop: () => {
      clearInterval(timer)
      peak = Math.max(peak, rssMiB(pid))
      return peak
    }
  }
}

/** Jiffies the whole machine spent busy and in total, from /proc/stat. */
const machineTicks = () => {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number)
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = fields
  return {
    busy: user + nice + system + irq + softirq + steal,
    total: user + nice + system + idle + iowait + irq + softirq + steal
  }
}

/** How busy the machine is (all cores, 0–100 %) over `ms`: other work running there skews every figure. */
export const machineBusyPercent = async (ms: number) => {
  const before = machineTicks()
  await sleep(ms)
  const after = machineTicks()
  return after.total === before.total ? 0 : ((after.busy - before.busy) / (after.total - before.total)) * 100
}
