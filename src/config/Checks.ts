import { Effect, Either } from "effect"
import { ConfigError } from "../domain/Errors.ts"
import { makeCatalog } from "../domain/ModelCatalog.ts"
import { FALLBACK_MACHINE, labelsMatch, targetsFor } from "../domain/Placement.ts"
import type { ConfigWarning, Settings } from "./Settings.ts"

// Rules across keys, checked once the file decoded: each fails with the key path it is about, or warns.

const fail = (settings: Settings, path: string, problem: string) =>
  new ConfigError({ file: settings.source, path, problem })

const references = (settings: Settings) =>
  Effect.forEach(settings.services.values(), (service) =>
    Effect.gen(function* () {
      for (const machine of service.machines) {
        if (!settings.machines.has(machine)) {
          return yield* fail(
            settings,
            `services.${service.id}.machines`,
            `unknown machine "${machine}" (not under machines:)`
          )
        }
      }
      if (service.container !== undefined) {
        // A service is one kind: a container block does not mix with a process's or Semaphore's keys.
        if (service.semaphore.enabled) {
          return yield* fail(settings, `services.${service.id}.container`, "not with semaphore_enabled: true")
        }
        if (service.command !== undefined || service.cwd !== undefined) {
          const key = service.command !== undefined ? "command" : "cwd"
          return yield* fail(settings, `services.${service.id}.${key}`, "not for a container service")
        }
        if (Object.keys(service.env).length > 0) {
          return yield* fail(settings, `services.${service.id}.env`, "a container's variables go in container.env")
        }
      }
      if (service.kind === "semaphore" && service.semaphore.startTemplateId === undefined) {
        return yield* fail(
          settings,
          `services.${service.id}.semaphore_start_template_id`,
          "required when semaphore_enabled is true"
        )
      }
    })
  )

/**
 * `instances:` are upstreams the gateway does not start: a service with them is external (no command, container or
 * Semaphore), placed nowhere (no machines, no fallback), and lists each URL once.
 */
const instances = (settings: Settings) =>
  Effect.forEach(settings.services.values(), (service) =>
    Effect.gen(function* () {
      if (service.instances.length === 0) return
      const at = `services.${service.id}.instances`
      const starter =
        service.command !== undefined
          ? "command"
          : service.container !== undefined
            ? "container"
            : service.semaphore.enabled
              ? "semaphore_enabled"
              : undefined
      if (starter !== undefined) {
        return yield* fail(
          settings,
          at,
          `not with ${starter}: instances are upstreams that run on their own (the gateway starts none of them)`
        )
      }
      if (service.machines.length > 0) {
        return yield* fail(settings, at, "not with machines: an instance names its own host in its URL")
      }
      if (service.fallbackUrl !== undefined) {
        return yield* fail(settings, at, "not with fallback_url: the instances fail over among themselves")
      }
      const seen = new Set<string>()
      for (const [i, instance] of service.instances.entries()) {
        if (instance.url.includes("{host}") || instance.healthUrl?.includes("{host}")) {
          return yield* fail(
            settings,
            `${at}.${i}`,
            "{host} is filled from a machine: an instance's URL names its host"
          )
        }
        const key = instance.url.replace(/\/+$/, "")
        if (seen.has(key)) return yield* fail(settings, `${at}.${i}`, `${instance.url} is listed twice`)
        seen.add(key)
      }
    })
  )

/**
 * A Semaphore service cannot start without the server: an error. Without credentials its starts fail with
 * `SemaphoreAuthFailed`, which is a warning only, so that the first Hestia's example config (token commented out) loads.
 */
const semaphore = (settings: Settings) =>
  Effect.gen(function* () {
    const { apiKey, username, password, baseUrl } = settings.semaphore
    if ((username === undefined) !== (password === undefined)) {
      const [path, variable, other] =
        username === undefined
          ? ["semaphore_username", "SEMAPHORE_USERNAME", "semaphore_password"]
          : ["semaphore_password", "SEMAPHORE_PASSWORD", "semaphore_username"]
      return yield* fail(settings, path, `required (or env ${variable}) with ${other}`)
    }
    const services = [...settings.services.values()].filter((service) => service.kind === "semaphore")
    if (services.length === 0) return []
    if (baseUrl === undefined) {
      return yield* fail(
        settings,
        "semaphore_base_url",
        `required (or env SEMAPHORE_BASE_URL) because service "${services[0]!.id}" has semaphore_enabled: true`
      )
    }
    if (apiKey !== undefined || username !== undefined) return []
    const warning: ConfigWarning = {
      key: "semaphore_api_key",
      message:
        "no Semaphore credentials (semaphore_api_key, or semaphore_username and semaphore_password; env " +
        `SEMAPHORE_API_KEY, SEMAPHORE_USERNAME, SEMAPHORE_PASSWORD): starts of ${services.map((s) => s.id).join(", ")} ` +
        "will fail with SemaphoreAuthFailed",
      kind: "warning"
    }
    return [warning]
  })

const routingRules = (settings: Settings) =>
  Effect.forEach(settings.routingRules, (rule, index) =>
    Effect.gen(function* () {
      const at = (path: string, problem: string) => fail(settings, `routing_rules.${index}${path}`, problem)
      for (const [i, pattern] of (rule.services ?? []).entries()) {
        if (!pattern.includes("*") && !settings.services.has(pattern)) {
          return yield* at(`.services.${i}`, `unknown service "${pattern}" (not under services:)`)
        }
      }
      for (const [i, step] of rule.prefer.entries()) {
        if (step._tag === "Machine" && !settings.machines.has(step.machineId)) {
          return yield* at(`.prefer.${i}`, `unknown machine "${step.machineId}" (not under machines:)`)
        }
        if (step._tag === "Labels" && ![...settings.machines.values()].some((m) => labelsMatch(m, step.labels))) {
          return yield* at(`.prefer.${i}`, `no machine has the labels ${JSON.stringify(step.labels)}`)
        }
      }
    })
  )

/** Every name of this host's loopback and wildcard addresses: a process listening on one answers on the others. */
const thisHost = new Set(["localhost", "127.0.0.1", "[::1]", "0.0.0.0", "[::]"])

/** `host:port` of a URL, with this host's names made one and the scheme's default port written out. */
export const addressOf = (url: string) => {
  const parsed = new URL(url)
  const host = thisHost.has(parsed.hostname) ? "localhost" : parsed.hostname
  return `${host}:${parsed.port === "" ? (parsed.protocol === "https:" ? "443" : "80") : parsed.port}`
}

/**
 * Two local processes cannot listen on one address: the second dies of EADDRINUSE while the first answers its
 * health URL, and gets its requests. `{host}` URLs are compared as they resolve on each machine of the service.
 */
const processAddresses = (settings: Settings) =>
  Effect.gen(function* () {
    const owners = new Map<string, { readonly serviceId: string; readonly url: string }>()
    for (const service of settings.services.values()) {
      if (service.kind !== "process") continue
      for (const target of targetsFor(service, settings)) {
        if (target.machineId === FALLBACK_MACHINE) continue
        const address = addressOf(target.baseUrl)
        const owner = owners.get(address)
        if (owner === undefined) owners.set(address, { serviceId: service.id, url: target.baseUrl })
        else if (owner.serviceId !== service.id) {
          return yield* fail(
            settings,
            `services.${service.id}.base_url`,
            `${target.baseUrl} is the address of service "${owner.serviceId}" too (${owner.url}): two local ` +
              "processes cannot listen on one host and port"
          )
        }
      }
    }
  })

/** Members are configured services; a service belongs to one exclusive group at most. */
const groups = (settings: Settings) =>
  Effect.gen(function* () {
    const exclusiveOf = new Map<string, string>()
    for (const group of settings.groups.values()) {
      for (const [i, member] of group.members.entries()) {
        if (!settings.services.has(member)) {
          return yield* fail(
            settings,
            `groups.${group.id}.members.${i}`,
            `unknown service "${member}" (not under services:)`
          )
        }
        const other = exclusiveOf.get(member)
        if (group.exclusive && other !== undefined) {
          return yield* fail(
            settings,
            `groups.${group.id}.members.${i}`,
            `"${member}" is a member of exclusive group "${other}" already: a service belongs to one exclusive group at most`
          )
        }
        if (group.exclusive) exclusiveOf.set(member, group.id)
      }
      for (const [i, member] of group.persistent.entries()) {
        if (!group.members.includes(member)) {
          return yield* fail(
            settings,
            `groups.${group.id}.persistent.${i}`,
            `"${member}" is not one of the group's members`
          )
        }
      }
    }
  })

/** A model name or alias belongs to one service (see ModelCatalog for the precedence of globs). */
const models = (settings: Settings) =>
  Either.match(makeCatalog(settings.services.values()), {
    onLeft: (conflict) => Effect.fail(fail(settings, conflict.path, conflict.problem)),
    onRight: () => Effect.void
  })

/** All cross-key rules; the warnings of those that only warn. */
export const check = (settings: Settings) =>
  Effect.gen(function* () {
    yield* references(settings)
    yield* instances(settings)
    const warnings = yield* semaphore(settings)
    yield* routingRules(settings)
    yield* processAddresses(settings)
    yield* groups(settings)
    yield* models(settings)
    return warnings
  })
