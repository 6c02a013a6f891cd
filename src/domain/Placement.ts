import type {
  LabelValue,
  MachineConfig,
  OrchestratorKind,
  RoutingRule,
  ServiceConfig,
  Settings
} from "../config/HestiaConfig.ts"

/** One place a service can run: a machine, with the URLs it answers on there. */
export interface Target {
  readonly machineId: string
  readonly kind: OrchestratorKind
  readonly baseUrl: string
  readonly healthUrl: string | undefined
  /** Machine id as Semaphore's playbooks know it. */
  readonly semaphoreMachineId: string | undefined
}

/** The machine a service runs on when it names none. */
export const LOCAL_MACHINE = "local"
/** The machine id given to a service's `fallback_url`. */
export const FALLBACK_MACHINE = "fallback"

const fillHost = (url: string, host: string) => url.replaceAll("{host}", host)

/** `health_url` is moved to the fallback's origin when it lives under `base_url`; otherwise the fallback is not probed. */
const fallbackHealth = (service: ServiceConfig, fallbackUrl: string): string | undefined => {
  if (service.healthUrl === undefined) return undefined
  const base = service.baseUrl.replace(/\/+$/, "")
  if (!service.healthUrl.startsWith(base)) return undefined
  return fallbackUrl.replace(/\/+$/, "") + service.healthUrl.slice(base.length)
}

/** A routing rule's service pattern: `*` matches any run of characters, everything else itself. */
export const servicePattern = (pattern: string) => {
  const escaped = pattern.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
  return new RegExp(`^${escaped.join(".*")}$`)
}

/** Label values compare as text, so `gpu: "true"` and `gpu: true` agree. */
export const labelsMatch = (machine: MachineConfig, labels: Readonly<Record<string, LabelValue>>) =>
  Object.entries(labels).every(([key, value]) => key in machine.labels && String(machine.labels[key]) === String(value))

export const ruleMatches = (rule: RoutingRule, serviceId: string) =>
  rule.services === undefined || rule.services.some((pattern) => servicePattern(pattern).test(serviceId))

/** Where a service's machine order came from, for the routing-decision log. */
export type PlacementSource =
  | { readonly _tag: "Service" }
  | { readonly _tag: "Rule"; readonly index: number }
  | { readonly _tag: "Default" }

/**
 * The machine ids to try, in order: the service's own `machines:` list, else the first routing rule that matches
 * the service (its steps in order, a label selector expanding to the matching machines in file order, each machine
 * once), else none (the service runs where its URLs point, as a service with `instances:` always does).
 */
export const placementOf = (
  service: ServiceConfig,
  settings: Settings
): { readonly machineIds: ReadonlyArray<string>; readonly source: PlacementSource } => {
  if (service.machines.length > 0) return { machineIds: service.machines, source: { _tag: "Service" } }
  // Instances name their own hosts: no rule places them.
  if (service.instances.length > 0) return { machineIds: [], source: { _tag: "Default" } }
  const index = settings.routingRules.findIndex((rule) => ruleMatches(rule, service.id))
  if (index === -1) return { machineIds: [], source: { _tag: "Default" } }
  const ordered = new Set<string>()
  for (const step of settings.routingRules[index]!.prefer) {
    if (step._tag === "Machine") ordered.add(step.machineId)
    else
      for (const machine of settings.machines.values()) if (labelsMatch(machine, step.labels)) ordered.add(machine.id)
  }
  return { machineIds: [...ordered].filter((id) => settings.machines.has(id)), source: { _tag: "Rule", index } }
}

/** Machines to try for a start, in preference order. */
export const targetsFor = (service: ServiceConfig, settings: Settings): ReadonlyArray<Target> => {
  const { machineIds } = placementOf(service, settings)
  const primary: Array<Target> =
    machineIds.length === 0
      ? [
          {
            machineId: service.semaphore.machineId ?? LOCAL_MACHINE,
            kind: service.kind,
            baseUrl: fillHost(service.baseUrl, "localhost"),
            healthUrl: service.healthUrl && fillHost(service.healthUrl, "localhost"),
            semaphoreMachineId: service.semaphore.machineId
          }
        ]
      : machineIds.map((id) => {
          const machine = settings.machines.get(id)!
          return {
            machineId: id,
            kind: service.kind,
            baseUrl: fillHost(service.baseUrl, machine.host),
            healthUrl: service.healthUrl && fillHost(service.healthUrl, machine.host),
            semaphoreMachineId: machine.semaphoreMachineId ?? service.semaphore.machineId ?? id
          }
        })
  if (service.fallbackUrl === undefined) return primary
  return [
    ...primary,
    {
      machineId: FALLBACK_MACHINE,
      kind: "external",
      baseUrl: service.fallbackUrl,
      healthUrl: fallbackHealth(service, service.fallbackUrl),
      semaphoreMachineId: undefined
    }
  ]
}
