// Preload for profiling a running gateway over a chosen window, whatever way it later exits:
//   HESTIA_PROFILE_DIR=/tmp/prof node --import ./bench/profile-preload.mjs --import tsx src/main.ts
//   kill -USR2 <pid>   → starts the CPU profiler (or, when it runs, writes <dir>/<pid>-<n>.cpuprofile and stops)
// Then: npx tsx bench/profile-summary.ts <dir>/<pid>-<n>.cpuprofile
import { writeFileSync } from "node:fs"
import { Session } from "node:inspector"
import { join } from "node:path"

const dir = process.env.HESTIA_PROFILE_DIR ?? "."
const session = new Session()
session.connect()
let running = false
let count = 0

const post = (method, params = {}) =>
  new Promise((resolve, reject) =>
    session.post(method, params, (error, result) => (error ? reject(error) : resolve(result)))
  )

process.on("SIGUSR2", async () => {
  if (!running) {
    running = true
    await post("Profiler.enable")
    await post("Profiler.setSamplingInterval", { interval: 100 })
    await post("Profiler.start")
    process.stderr.write(`profile-preload: profiling pid ${process.pid}\n`)
    return
  }
  running = false
  const { profile } = await post("Profiler.stop")
  const file = join(dir, `${process.pid}-${++count}.cpuprofile`)
  writeFileSync(file, JSON.stringify(profile))
  process.stderr.write(`profile-preload: wrote ${file}\n`)
})
