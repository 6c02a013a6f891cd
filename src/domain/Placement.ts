import type { OrchestratorKind, ServiceConfig, Settings } from "../HestiaConfig.ts"

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

/** Machines to try for a start, in preference order. */
export const targetsFor = (service: ServiceConfig, settings: Settings): ReadonlyArray<Target> => {
  const primary: Array<Target> =
    service.machines.length === 0
      ? [
          {
            machineId: service.semaphore.machineId ?? LOCAL_MACHINE,
            kind: service.kind,
            baseUrl: fillHost(service.baseUrl, "localhost"),
            healthUrl: service.healthUrl && fillHost(service.healthUrl, "localhost"),
            semaphoreMachineId: service.semaphore.machineId
          }
        ]
      : service.machines.map((id) => {
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
