import { Clock, Effect, FiberSet, Queue } from "effect"
import type { Settings } from "../config/HestiaConfig.ts"
import { LiveConfig } from "../config/LiveConfig.ts"
import { QueueTimeout, UnknownGroup, UnknownService } from "../domain/Errors.ts"
import { type Target, targetsFor } from "../domain/Placement.ts"
import { tagError } from "../observability/Telemetry.ts"
import { ContainerRecords } from "../orchestrators/ContainerRecords.ts"
import type { Orchestrator } from "../orchestrators/Orchestrator.ts"
import { SemaphoreTasks } from "../orchestrators/SemaphoreTasks.ts"
import { Readiness } from "../readiness/Readiness.ts"
import { ActivityLog } from "../store/ActivityLog.ts"
import { ServiceRows } from "../store/ServiceRows.ts"
import * as ExclusiveGroup from "./ExclusiveGroup.ts"
import { InstanceBalance } from "./InstanceBalance.ts"
import { LifecycleEvents } from "./LifecycleEvents.ts"
import * as ServiceOwner from "./ServiceOwner.ts"
import * as StartGate from "./StartGate.ts"
import { StartPlacement } from "./StartPlacement.ts"

export type { Lease, ServiceStatusView } from "./ServiceOwner.ts"
export type { ServiceStatus, StartTrigger } from "./ServiceState.ts"

/**
 * The services and their owners: one `ServiceOwner` per service holds its lifecycle. This is the map, the listing,
 * and the hot path's lease; every decision about a service is its owner's.
 */
export class ServiceRegistry extends Effect.Service<ServiceRegistry>()("hestia/ServiceRegistry", {
  scoped: Effect.gen(function* () {
    const live = yield* LiveConfig
    const config = live.current()
    const events = yield* LifecycleEvents
    const semaphoreTasks = yield* SemaphoreTasks
    const containerRecords = yield* ContainerRecords
    const store = yield* ServiceRows
    // Opened when a request ends; the last-activity flush below sleeps on it, so an idle gateway does no periodic work.
    const lastActivityChanged = yield* Effect.makeLatch(false)
    const scope = yield* Effect.scope
    const fibers = yield* FiberSet.make()
    // Where starts become ready, for placement decisions (bounded by the configured machines).
    yield* events.subscribe.pipe(
      Effect.flatMap((subscription) =>
        Queue.take(subscription).pipe(
          Effect.tap((event) =>
            Effect.sync(() => {
              if (event.type === "ready" && event.machineId !== undefined) lastStartedOn[event.machineId] = event.at
            })
          ),
          Effect.forever
        )
      ),
      Effect.forkScoped
    )
    const context = yield* Effect.context<Orchestrator | Readiness>()
    const startPlacement = yield* StartPlacement
    const balance = yield* InstanceBalance
    /** Machine id → when a start last became ready there (what a least-recently-used placement needs). */
    const lastStartedOn: Record<string, number> = {}

    const owners = new Map<string, ServiceOwner.ServiceOwner>()
    // The members of an exclusive group share one lock and one gate: starting one is a decision about the others.
    // A group a reload leaves as it was keeps both, so its members' turn and queue carry on.
    const groups = new Map<
      string,
      { readonly written: string; readonly lock: Effect.Semaphore; readonly gate: StartGate.StartGate }
    >()
    const ownLocks = new Map<string, Effect.Semaphore>()

    /** Where each service of `settings` runs and with what lock and gate. */
    const placementsFor = (settings: Settings) =>
      Effect.gen(function* () {
        const decidedBy = new Map<string, { readonly lock: Effect.Semaphore; readonly gate: StartGate.StartGate }>()
        const kept = new Set<string>()
        for (const group of settings.groups.values()) {
          if (!group.exclusive) continue
          const written = JSON.stringify(group)
          let decision = groups.get(group.id)
          if (decision === undefined || decision.written !== written) {
            const lock = yield* Effect.makeSemaphore(1)
            decision = {
              written,
              lock,
              gate: ExclusiveGroup.make({ group, lock, owner: (id) => owners.get(id), fibers })
            }
            groups.set(group.id, decision)
          }
          kept.add(group.id)
          for (const member of group.members) decidedBy.set(member, decision)
        }
        for (const id of groups.keys()) if (!kept.has(id)) groups.delete(id)
        const placements = new Map<string, ServiceOwner.Placement>()
        for (const service of settings.services.values()) {
          const shared = decidedBy.get(service.id)
          let lock = shared?.lock ?? ownLocks.get(service.id)
          if (lock === undefined) {
            lock = yield* Effect.makeSemaphore(1)
            ownLocks.set(service.id, lock)
          }
          placements.set(service.id, {
            service,
            targets: targetsFor(service, settings),
            lock,
            gate: shared?.gate ?? StartGate.open,
            group: [...settings.groups.values()].find((group) => group.members.includes(service.id))?.id
          })
        }
        return placements
      })

    const ownerFor = (placement: ServiceOwner.Placement) =>
      ServiceOwner.make({
        ...placement,
        events,
        scope,
        fibers,
        context,
        automation: semaphoreTasks.automation,
        container: containerRecords.view,
        activityChanged: () => lastActivityChanged.unsafeOpen(),
        balance,
        placeStart: (service, targets) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            startPlacement.order(service, targets, {
              now,
              hot: Array.from(owners.values()).flatMap((owner) => {
                const state = owner.state()
                return state._tag === "Hot" ? [{ serviceId: owner.service.id, machineId: state.target.machineId }] : []
              }),
              lastStartedOn: { ...lastStartedOn }
            })
          )
      })

    for (const placement of (yield* placementsFor(config)).values()) {
      owners.set(placement.service.id, yield* ownerFor(placement))
    }

    /**
     * A configuration reload: new services appear cold; removed ones leave the map at once (new requests are for an
     * unknown service) and are drained and stopped; the others take their new settings (see ServiceOwner.reconfigure).
     */
    const reconcile = (next: Settings) =>
      Effect.gen(function* () {
        const placements = yield* placementsFor(next)
        for (const [id, owner] of owners) {
          if (placements.has(id)) continue
          owners.delete(id)
          ownLocks.delete(id)
          yield* owner.retire
        }
        for (const [id, placement] of placements) {
          const owner = owners.get(id)
          if (owner === undefined) owners.set(id, yield* ownerFor(placement))
          else yield* owner.reconfigure(placement)
        }
      })
    // The services rows first, so that the events of a new service find theirs.
    yield* live.follow({ apply: (next) => Effect.zipRight(store.mirrorConfig(next), reconcile(next)) })

    const lookup = (serviceId: string): Effect.Effect<ServiceOwner.ServiceOwner, UnknownService> => {
      const owner = owners.get(serviceId)
      return owner === undefined ? Effect.fail(new UnknownService({ serviceId })) : Effect.succeed(owner)
    }

    // Carry on from what the previous run recorded, every service at once.
    const persisted = yield* store.services()
    yield* Effect.forEach(owners.values(), (owner) => owner.restore(persisted.get(owner.service.id)), {
      concurrency: "unbounded",
      discard: true
    })

    // Last activity: the stamps that changed, written at most once a second (never per request) and once at shutdown.
    const flushed = new Map(Array.from(owners.values(), (o) => [o.service.id, o.lastActivity()] as const))
    const flushLastActivity = Effect.suspend(() => {
      const changed: Array<readonly [string, number]> = []
      for (const owner of owners.values()) {
        const at = owner.lastActivity()
        if (at > 0 && flushed.get(owner.service.id) !== at) changed.push([owner.service.id, at])
      }
      for (const [serviceId, at] of changed) flushed.set(serviceId, at)
      return store.recordLastActivity(changed)
    })
    yield* lastActivityChanged.await.pipe(
      Effect.zipRight(Effect.sleep("1 second")),
      Effect.zipRight(lastActivityChanged.close),
      Effect.zipRight(flushLastActivity),
      Effect.forever,
      Effect.forkScoped
    )
    yield* Effect.addFinalizer(() => flushLastActivity)

    const acquire = Effect.fn("ServiceRegistry.acquire")(function* (serviceId: string, requestId?: string) {
      return yield* (yield* lookup(serviceId)).acquire(requestId)
    }, Effect.tapError(tagError))

    /** The proxy's fast path: a lease when the service is hot, without a fiber. */
    const tryAcquireHot = (serviceId: string) => owners.get(serviceId)?.tryLeaseHot()

    /** The proxy saw the hot upstream refuse a connection: it is gone, the next request restarts it. */
    const reportUnavailable = (serviceId: string, target: Target, reason: string) =>
      owners.get(serviceId)?.reportUnavailable(target, reason) ?? Effect.void

    /** `requestId`: the control request's, so the start's events and log lines carry it. */
    const start = Effect.fn("ServiceRegistry.start")(function* (serviceId: string, requestId?: string) {
      return yield* (yield* lookup(serviceId)).start(requestId)
    })

    /** Hot, or the start's typed error; bounded like a request's wait (`request_timeout_seconds`: QueueTimeout). */
    const awaitHot = Effect.fn("ServiceRegistry.awaitHot")(function* (serviceId: string) {
      const owner = yield* lookup(serviceId)
      const waitMs = owner.service.requestTimeoutMs
      return yield* owner.awaitHot.pipe(
        Effect.timeoutFail({
          duration: waitMs,
          onTimeout: () => new QueueTimeout({ serviceId, waitedMs: waitMs })
        })
      )
    })

    /** `POST /v1/groups/{name}/stop`: every member stopped (a start in progress cancelled); their states before. */
    const stopGroup = Effect.fn("ServiceRegistry.stopGroup")(function* (name: string) {
      const group = live.current().groups.get(name)
      if (group === undefined) return yield* new UnknownGroup({ group: name })
      return yield* Effect.forEach(group.members, (member) =>
        lookup(member).pipe(
          Effect.flatMap((owner) => owner.stop),
          Effect.map((before) => ({ serviceId: member, before }))
        )
      )
    })

    const stop = Effect.fn("ServiceRegistry.stop")(function* (serviceId: string) {
      return yield* (yield* lookup(serviceId)).stop
    })

    const status = Effect.fn("ServiceRegistry.status")(function* (serviceId: string) {
      return yield* (yield* lookup(serviceId)).view
    })

    // Suspended: an iterator made once would be exhausted after the first listing.
    const list = Effect.suspend(() => Effect.forEach(owners.values(), (owner) => owner.view))

    return {
      acquire,
      tryAcquireHot,
      reportUnavailable,
      start,
      awaitHot,
      stop,
      stopGroup,
      status,
      list,
      has: (serviceId: string) => owners.has(serviceId)
    }
  }),
  // ActivityLog is built before the registry so that the timeline sees restore's first events.
  dependencies: [
    Readiness.Default,
    LifecycleEvents.Default,
    ServiceRows.Default,
    ActivityLog.Default,
    LiveConfig.Default
  ]
}) {}
