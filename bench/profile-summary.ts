// Summarises a V8 .cpuprofile (node --cpu-prof): self time per function, per file and per package, and the
// inclusive time of functions whose name matches a filter.
//   npx tsx bench/profile-summary.ts PROFILE.cpuprofile [--top 40] [--match ServiceProxy]
import { readFileSync } from "node:fs"

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
}
interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: ReadonlyArray<number>
}
interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
  readonly startTime: number
  readonly endTime: number
}

const args = process.argv.slice(2)
const file = args.find((arg) => !arg.startsWith("--") && !/^\d+$/.test(arg))
if (file === undefined) {
  process.stderr.write("usage: tsx bench/profile-summary.ts PROFILE.cpuprofile [--top N] [--match TEXT]\n")
  process.exit(2)
}
const option = (name: string) => {
  const at = args.indexOf(`--${name}`)
  return at === -1 ? undefined : args[at + 1]
}
const top = Number(option("top") ?? "40")
const match = option("match")

const profile = JSON.parse(readFileSync(file, "utf8")) as Profile
const byId = new Map(profile.nodes.map((node) => [node.id, node]))
const parent = new Map<number, number>()
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)

// Self time per node: each sample is charged the time delta that follows it.
const selfUs = new Map<number, number>()
for (let i = 0; i < profile.samples.length; i++) {
  const delta = profile.timeDeltas[i + 1] ?? 0
  selfUs.set(profile.samples[i]!, (selfUs.get(profile.samples[i]!) ?? 0) + delta)
}
const totalUs = Array.from(selfUs.values()).reduce((a, b) => a + b, 0)

const shortUrl = (url: string) => {
  const nm = url.lastIndexOf("node_modules/")
  if (nm !== -1) return url.slice(nm + "node_modules/".length)
  const src = url.search(/\/(src|bench)\//)
  return src === -1 ? url.replace(/^file:\/\//, "") : url.slice(src + 1)
}
const packageOf = (url: string) => {
  if (url === "") return "(native / vm)"
  if (url.startsWith("node:")) return "node: core"
  const nm = url.lastIndexOf("node_modules/")
  if (nm === -1) return url.includes("/src/") ? "gateway src/" : shortUrl(url)
  const rest = url.slice(nm + "node_modules/".length).split("/")
  return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!
}

const add = (map: Map<string, number>, key: string, us: number) => map.set(key, (map.get(key) ?? 0) + us)
const byFunction = new Map<string, number>()
const byFile = new Map<string, number>()
const byPackage = new Map<string, number>()
for (const [id, us] of selfUs) {
  const frame = byId.get(id)!.callFrame
  const name = frame.functionName === "" ? "(anonymous)" : frame.functionName
  add(byFunction, `${name}  ${shortUrl(frame.url)}:${frame.lineNumber + 1}`, us)
  add(byFile, shortUrl(frame.url) || name, us)
  add(byPackage, packageOf(frame.url), us)
}

// Inclusive time of functions matching --match (each sample counted once per function name on its stack).
const inclusive = new Map<string, number>()
if (match !== undefined) {
  for (const [id, us] of selfUs) {
    const seen = new Set<string>()
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame
      const key = `${frame.functionName || "(anonymous)"}  ${shortUrl(frame.url)}:${frame.lineNumber + 1}`
      if (!seen.has(key) && `${key}`.includes(match)) {
        seen.add(key)
        add(inclusive, key, us)
      }
    }
  }
}

const print = (title: string, map: Map<string, number>, limit: number) => {
  process.stdout.write(`\n## ${title}\n`)
  const rows = Array.from(map.entries())
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
  for (const [key, us] of rows) {
    process.stdout.write(
      `${((us / totalUs) * 100).toFixed(1).padStart(5)} %  ${(us / 1000).toFixed(0).padStart(7)} ms  ${key}\n`
    )
  }
}

process.stdout.write(`profile: ${file}\nsampled ${(totalUs / 1000).toFixed(0)} ms\n`)
print("self time by package", byPackage, 15)
print("self time by file", byFile, 25)
print("self time by function", byFunction, top)
if (match !== undefined) print(`inclusive time of functions matching "${match}"`, inclusive, top)
