import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as HestiaConfig from "../../src/config/HestiaConfig.ts"
import { placementOf, servicePattern, targetsFor } from "../../src/domain/Placement.ts"

const machines = `
machines:
  laptop: { host: 127.0.0.1, labels: { gpu: false, size: small } }
  hpc: { host: hpc.lan, semaphore_machine_id: hpc-01, labels: { gpu: true, size: large } }
  gpubox: { host: gpubox.lan, labels: { gpu: "true", size: large } }
  nas: { host: nas.lan, labels: { size: small } }
`

const parse = (text: string) => HestiaConfig.parse(text, "test.yml")

const settingsOf = (services: string, rules = "") =>
  parse(`${machines}services:\n${services}${rules === "" ? "" : `routing_rules:\n${rules}`}`)

const svc = (id: string, extra: Record<string, unknown> = {}) =>
  `  ${id}: ${JSON.stringify({ base_url: "http://{host}:11434", health_url: "http://{host}:11434/api/tags", ...extra })}\n`

const order = (text: string, serviceId: string) =>
  Effect.map(settingsOf(text.split("\n---\n")[0]!, text.split("\n---\n")[1] ?? ""), (settings) =>
    targetsFor(settings.services.get(serviceId)!, settings).map((t) => t.machineId)
  )

const configError = (text: string) =>
  Effect.flip(parse(text)).pipe(Effect.map((error) => ({ path: error.path, problem: error.problem })))

describe("placement", () => {
  it.effect("a service's own machines list is its order; {host} is filled from each machine", () =>
    Effect.gen(function* () {
      const settings = yield* settingsOf(svc("ollama", { machines: ["hpc", "laptop"] }))
      const targets = targetsFor(settings.services.get("ollama")!, settings)
      assert.deepStrictEqual(
        targets.map((t) => [t.machineId, t.baseUrl, t.healthUrl, t.semaphoreMachineId]),
        [
          ["hpc", "http://hpc.lan:11434", "http://hpc.lan:11434/api/tags", "hpc-01"],
          ["laptop", "http://127.0.0.1:11434", "http://127.0.0.1:11434/api/tags", "laptop"]
        ]
      )
    })
  )

  it.effect("the service's semaphore_machine_id stands in for machines without their own", () =>
    Effect.gen(function* () {
      const settings = yield* settingsOf(svc("ollama", { machines: ["hpc", "nas"], semaphore_machine_id: "svc-box" }))
      const targets = targetsFor(settings.services.get("ollama")!, settings)
      assert.deepStrictEqual(
        targets.map((t) => t.semaphoreMachineId),
        ["hpc-01", "svc-box"]
      )
    })
  )

  it.effect("no list and no matching rule: the service runs where its URLs point, {host} = localhost", () =>
    Effect.gen(function* () {
      const settings = yield* settingsOf(svc("ollama"), "  - { services: [other-*], prefer: [hpc] }\n")
      const targets = targetsFor(settings.services.get("ollama")!, settings)
      assert.deepStrictEqual(
        targets.map((t) => [t.machineId, t.baseUrl]),
        [["local", "http://localhost:11434"]]
      )
      assert.deepStrictEqual(placementOf(settings.services.get("ollama")!, settings).source, { _tag: "Default" })
    })
  )

  it.effect("a rule naming the service decides its order", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(
        yield* order(`${svc("ollama")}\n---\n  - { services: [ollama], prefer: [gpubox, hpc, laptop] }\n`, "ollama"),
        ["gpubox", "hpc", "laptop"]
      )
    })
  )

  it.effect("services patterns take * as a wildcard", () =>
    Effect.gen(function* () {
      const text = `${svc("llm-big")}${svc("llm-small")}${svc("web")}\n---\n  - { services: ["llm-*"], prefer: [hpc] }\n  - { prefer: [laptop] }\n`
      assert.deepStrictEqual(yield* order(text, "llm-big"), ["hpc"])
      assert.deepStrictEqual(yield* order(text, "llm-small"), ["hpc"])
      assert.deepStrictEqual(yield* order(text, "web"), ["laptop"])
      assert.isTrue(servicePattern("a.b*").test("a.b-c"))
      assert.isFalse(servicePattern("a.b*").test("axb"))
    })
  )

  it.effect("a label selector stands for every machine with those labels, in file order; values compare as text", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* order(`${svc("ollama")}\n---\n  - { prefer: [{ gpu: true }] }\n`, "ollama"), [
        "hpc",
        "gpubox"
      ])
      assert.deepStrictEqual(
        yield* order(
          `${svc("ollama")}\n---\n  - { prefer: [{ gpu: true, size: large }, { size: small }] }\n`,
          "ollama"
        ),
        ["hpc", "gpubox", "laptop", "nas"]
      )
    })
  )

  it.effect("steps mix machines and selectors; each machine is tried once, at its first place", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(
        yield* order(`${svc("ollama")}\n---\n  - { prefer: [gpubox, { gpu: true }, laptop, hpc] }\n`, "ollama"),
        ["gpubox", "hpc", "laptop"]
      )
    })
  )

  it.effect("the first matching rule wins; a rule without services matches every service", () =>
    Effect.gen(function* () {
      const text = `${svc("ollama")}${svc("web")}\n---\n  - { services: [web], prefer: [nas] }\n  - { prefer: [laptop] }\n  - { services: [ollama], prefer: [hpc] }\n`
      assert.deepStrictEqual(yield* order(text, "web"), ["nas"])
      assert.deepStrictEqual(yield* order(text, "ollama"), ["laptop"])
      const settings = yield* settingsOf(
        `${svc("ollama")}${svc("web")}`,
        "  - { services: [web], prefer: [nas] }\n  - { prefer: [laptop] }\n"
      )
      assert.deepStrictEqual(placementOf(settings.services.get("ollama")!, settings).source, { _tag: "Rule", index: 1 })
    })
  )

  it.effect("a service's own list beats the rules", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(
        yield* order(`${svc("ollama", { machines: ["laptop"] })}\n---\n  - { prefer: [hpc] }\n`, "ollama"),
        ["laptop"]
      )
    })
  )

  it.effect("fallback_url comes after the machines a rule picked", () =>
    Effect.gen(function* () {
      const settings = yield* settingsOf(
        svc("ollama", { fallback_url: "http://backup.lan:11434" }),
        "  - { prefer: [{ gpu: true }] }\n"
      )
      const targets = targetsFor(settings.services.get("ollama")!, settings)
      assert.deepStrictEqual(
        targets.map((t) => [t.machineId, t.kind, t.baseUrl, t.healthUrl]),
        [
          ["hpc", "external", "http://hpc.lan:11434", "http://hpc.lan:11434/api/tags"],
          ["gpubox", "external", "http://gpubox.lan:11434", "http://gpubox.lan:11434/api/tags"],
          ["fallback", "external", "http://backup.lan:11434", "http://backup.lan:11434/api/tags"]
        ]
      )
    })
  )

  it.effect("a Semaphore service placed by a rule carries each machine's Semaphore id", () =>
    Effect.gen(function* () {
      const settings = yield* parse(`
semaphore_base_url: http://semaphore:3000
semaphore_api_key: t
semaphore_project_id: 1
${machines}
services:
${svc("ollama", { semaphore_enabled: true, semaphore_start_template_id: 1 })}
routing_rules:
  - prefer: [{ size: large }, laptop]
`)
      const targets = targetsFor(settings.services.get("ollama")!, settings)
      assert.deepStrictEqual(
        targets.map((t) => [t.machineId, t.kind, t.semaphoreMachineId]),
        [
          ["hpc", "semaphore", "hpc-01"],
          ["gpubox", "semaphore", "gpubox"],
          ["laptop", "semaphore", "laptop"]
        ]
      )
    })
  )
})

describe("routing_rules validation", () => {
  const base = `${machines}services:\n${svc("ollama")}routing_rules:\n`

  it.effect("an unknown machine is a ConfigError at its key path", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* configError(`${base}  - { prefer: [hpc, mainframe] }\n`), {
        path: "routing_rules.0.prefer.1",
        problem: 'unknown machine "mainframe" (not under machines:)'
      })
    })
  )

  it.effect("a selector no machine matches is a ConfigError", () =>
    Effect.gen(function* () {
      const error = yield* configError(`${base}  - { prefer: [laptop] }\n  - { prefer: [{ tpu: true }] }\n`)
      assert.strictEqual(error.path, "routing_rules.1.prefer.0")
      assert.include(error.problem, "no machine has the labels")
    })
  )

  it.effect("an unknown service id (no wildcard) is a ConfigError", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* configError(`${base}  - { services: [olama], prefer: [hpc] }\n`), {
        path: "routing_rules.0.services.0",
        problem: 'unknown service "olama" (not under services:)'
      })
    })
  )

  it.effect("unknown keys, an empty prefer list and an empty selector are errors", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* configError(`${base}  - { prefer: [hpc], weight: 3 }\n`), {
        path: "routing_rules.0.weight",
        problem: "unknown key"
      })
      assert.strictEqual((yield* configError(`${base}  - { prefer: [] }\n`)).path, "routing_rules.0.prefer")
      assert.strictEqual((yield* configError(`${base}  - { services: [ollama] }\n`)).path, "routing_rules.0.prefer")
      assert.deepStrictEqual(yield* configError(`${base}  - { prefer: [{}] }\n`), {
        path: "routing_rules.0.prefer.0",
        problem: "expected a machine id, or a label selector with at least one label such as { gpu: true }"
      })
    })
  )

  it.effect("a Semaphore service needs the server; without a token it loads with a warning", () =>
    Effect.gen(function* () {
      const service = svc("ollama", { semaphore_enabled: true, semaphore_start_template_id: 1 })
      const error = yield* configError(`semaphore_api_key: t\nsemaphore_project_id: 1\nservices:\n${service}`)
      assert.strictEqual(error.path, "semaphore_base_url")
      assert.include(error.problem, 'service "ollama" has semaphore_enabled: true')
      const noToken = yield* parse(`semaphore_base_url: http://s:3000\nsemaphore_project_id: 1\nservices:\n${service}`)
      assert.deepStrictEqual(
        noToken.warnings.map((w) => w.key),
        ["semaphore_api_key"]
      )
    })
  )
})
