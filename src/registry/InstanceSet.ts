import { Effect, type Fiber, FiberId, Schedule } from "effect"
import type { ServiceConfig } from "../config/HestiaConfig.ts"
import { type HealthCheck, instanceHealth, instanceTarget } from "../domain/Instances.ts"
import type { Target } from "../domain/Placement.ts"
import type { BalanceInstance } from "../strategies/StrategyApi.ts"

// The instances of one service (`instances:`) as requests see them: which are healthy, how many requests each has,
// which one the next request gets by the default rule, and the health-based failover of the first Hestia's load
// balancer — an instance that refused (or reset) a connection is taken out until its health answers again.

/** One instance: what a balance strategy is shown, plus where requests to it go. */
export interface InstanceState extends BalanceInstance {
  readonly url: string
  readonly labels: Readonly<Record<string, string | number | boolean>>
  /** Where its health is asked while it is out. */
  readonly health: HealthCheck
  /** Where a request to it goes (a lease's target). */
  readonly target: Target
  healthy: boolean
  inFlight: number
}

/** What the set is told to do outside itself. */
export interface InstanceSetContext {
  readonly serviceId: string
  /** One health probe (bounded by the caller): true when the instance answers as its check asks. */
  readonly probe: (check: HealthCheck) => Effect.Effect<boolean>
  /** Runs an effect on a supervised fiber (the owner's); the set keeps the fibers of its probes to end them. */
  readonly run: <A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>
  /** An instance went out or came back: the event (and its log line). */
  readonly changed: (change: InstanceChange) => Effect.Effect<void>
  /** Clock millis. */
  readonly now: () => number
}

export type InstanceChange =
  | { readonly type: "instance_down"; readonly url: string; readonly reason: string }
  | { readonly type: "instance_up"; readonly url: string; readonly downMs: number }

/** How an instance that is out is asked again: soon at first (a restart is often quick), then once a second. */
export const RECHECK = Schedule.exponential("100 millis", 2).pipe(Schedule.union(Schedule.spaced("1 second")))

export interface InstanceView {
  readonly url: string
  readonly healthy: boolean
  readonly inFlight: number
}

const stateOf = (service: ServiceConfig, base: Target, index: number): InstanceState => {
  const instance = service.instances[index]!
  const health = instanceHealth(service, instance)
  return {
    url: instance.url,
    labels: instance.labels,
    health,
    target: instanceTarget(base, instance, health),
    healthy: true,
    inFlight: 0
  }
}

/** An instance taken out: when, and the fiber asking its health. */
interface Out {
  fiber: Fiber.RuntimeFiber<void> | undefined
  readonly since: number
}

const written = (instance: InstanceState) => JSON.stringify([instance.target, instance.labels, instance.health])

/**
 * The instance set of one service. Every method is synchronous (the request path calls them); what takes time — the
 * probes of the instances taken out, one fiber per instance at most — runs on fibers the context supervises.
 */
export class InstanceSet {
  instances: ReadonlyArray<InstanceState>
  /** The instances out, each with the fiber that asks its health and when it went out. */
  private readonly probes = new Map<InstanceState, Out>()

  constructor(
    private readonly ctx: InstanceSetContext,
    service: ServiceConfig,
    base: Target
  ) {
    this.instances = service.instances.map((_, i) => stateOf(service, base, i))
  }

  /** The default rule: the healthy instance with the fewest requests in flight, ties in config order. */
  pick(): InstanceState | undefined {
    let best: InstanceState | undefined
    for (const instance of this.instances) {
      if (instance.healthy && (best === undefined || instance.inFlight < best.inFlight)) best = instance
    }
    return best
  }

  healthy(): number {
    let count = 0
    for (const instance of this.instances) if (instance.healthy) count++
    return count
  }

  has(instance: InstanceState): boolean {
    return this.instances.includes(instance)
  }

  /** It refused or reset a connection: out until its health answers again (asked on RECHECK, by one fiber). */
  takeOut(instance: InstanceState, reason: string) {
    if (!instance.healthy || !this.has(instance)) return
    instance.healthy = false
    this.ctx.run(this.ctx.changed({ type: "instance_down", url: instance.url, reason }))
    this.watch(instance, this.ctx.now())
  }

  /**
   * A reload: an instance whose URL stays keeps its state (out stays out); if its health check, labels or target
   * changed it becomes a new state (leases on the old one finish there) whose probe asks the new health URL. New
   * instances come in healthy; the probes of removed ones end.
   */
  update(service: ServiceConfig, base: Target) {
    const byUrl = new Map(this.instances.map((instance) => [instance.url, instance] as const))
    const next = service.instances.map((_, i) => {
      const fresh = stateOf(service, base, i)
      const kept = byUrl.get(fresh.url)
      if (kept === undefined) return fresh
      byUrl.delete(fresh.url)
      if (written(kept) === written(fresh)) return kept
      const out = this.probes.get(kept)
      if (out !== undefined) {
        this.end(kept)
        fresh.healthy = false
        this.watch(fresh, out.since)
      }
      return fresh
    })
    this.instances = next
    for (const gone of byUrl.values()) this.end(gone)
  }

  /** The probes end (the service was removed, or has no instances any more). */
  close() {
    for (const instance of [...this.probes.keys()]) this.end(instance)
    this.instances = []
  }

  view(): ReadonlyArray<InstanceView> {
    return this.instances.map(({ url, healthy, inFlight }) => ({ url, healthy, inFlight }))
  }

  private watch(instance: InstanceState, since: number) {
    // In the map before the fiber runs: a probe that answers at once must find its own entry to remove.
    const out: Out = { fiber: undefined, since }
    this.probes.set(instance, out)
    const backIn = Effect.suspend(() => {
      if (this.probes.get(instance) !== out) return Effect.void
      this.probes.delete(instance)
      if (!this.has(instance)) return Effect.void
      instance.healthy = true
      return this.ctx.changed({ type: "instance_up", url: instance.url, downMs: this.ctx.now() - since })
    })
    out.fiber = this.ctx.run(
      this.ctx
        .probe(instance.health)
        .pipe(Effect.repeat({ schedule: RECHECK, until: (up) => up }), Effect.zipRight(backIn))
    )
  }

  private end(instance: InstanceState) {
    const out = this.probes.get(instance)
    if (out === undefined) return
    this.probes.delete(instance)
    out.fiber?.unsafeInterruptAsFork(FiberId.none)
  }
}
