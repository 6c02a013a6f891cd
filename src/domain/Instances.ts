import type { ServiceConfig } from "../config/HestiaConfig.ts"
import type { InstanceConfig } from "../config/InstanceConfig.ts"
import type { Target } from "./Placement.ts"

// The instances of a service (`instances:`): where each one's health is asked, and the target a request to it uses.

/** One health question: a URL, and whether any HTTP answer counts (no health URL anywhere) or only a 2xx. */
export interface HealthCheck {
  readonly url: string
  readonly anyAnswer: boolean
}

/** The service's health path (and query) on another origin; undefined when the service has no health URL. */
const healthPathOn = (service: ServiceConfig, origin: string): string | undefined => {
  if (service.healthUrl === undefined) return undefined
  const health = new URL(service.healthUrl.replaceAll("{host}", "localhost"))
  return `${origin}${health.pathname}${health.search}`
}

/** An instance's own `health_url`, else the service's health path on the instance's origin, else any answer at all. */
export const instanceHealth = (service: ServiceConfig, instance: InstanceConfig): HealthCheck => {
  if (instance.healthUrl !== undefined) return { url: instance.healthUrl, anyAnswer: false }
  const onOrigin = healthPathOn(service, new URL(instance.url).origin)
  return onOrigin === undefined ? { url: instance.url, anyAnswer: true } : { url: onOrigin, anyAnswer: false }
}

/** Where a request to one instance goes: the service's target with the instance's URLs. */
export const instanceTarget = (target: Target, instance: InstanceConfig, health: HealthCheck): Target => ({
  ...target,
  baseUrl: instance.url,
  healthUrl: health.url
})

/** What readiness asks of a started service: each instance's health (any answering is enough), or the target's. */
export const healthChecks = (service: ServiceConfig, target: Target): ReadonlyArray<HealthCheck> =>
  service.instances.length > 0
    ? service.instances.map((instance) => instanceHealth(service, instance))
    : target.healthUrl === undefined
      ? []
      : [{ url: target.healthUrl, anyAnswer: false }]
