import { Context, Effect, Layer, Option, Ref } from "effect"
import { LiveConfig } from "../config/LiveConfig.ts"
import { targetsFor } from "../domain/Placement.ts"
import { dockerHost, engineUrlFor } from "./DockerEngine.ts"

/** What the container orchestrator last saw of a service's container. */
export interface ContainerSeen {
  readonly machineId: string
  readonly engine: string
  readonly id: string
  readonly name: string
  readonly image: string
  /** Hestia created it from `container.image`. */
  readonly created: boolean
  /** The engine's state as last seen: `running`, `paused`, `exited`, `removed`. */
  readonly state: string
}

/** `container` in a container service's status. */
export interface ContainerView {
  /** The engine's address (`unix:///var/run/docker.sock`, `tcp://nas.lan:2375`). */
  readonly engine: string
  readonly machine_id: string
  readonly name: string
  /** The container's id; null until the gateway has seen it. */
  readonly id: string | null
  /** The image it runs (or will be created from); null for an existing container not yet seen. */
  readonly image: string | null
  /** `running`, `paused`, `exited`, `removed` as last seen; null when not seen yet. */
  readonly state: string | null
  readonly created_by_hestia: boolean
}

export interface ContainerRecordsShape {
  /** The container block for a service's status; undefined for services that are not containers. */
  readonly view: (serviceId: string) => Effect.Effect<ContainerView | undefined>
  /** Written by the container orchestrator whenever it learns something about a service's container. */
  readonly seen: (serviceId: string, seen: ContainerSeen) => Effect.Effect<void>
  /** Only the state changed (stopped, paused, exited on its own). */
  readonly state: (serviceId: string, state: string) => Effect.Effect<void>
}

export const make = Effect.gen(function* () {
  // The configuration in force now: a reload may add or change services.
  const live = yield* LiveConfig
  const fromEnv = yield* dockerHost
  const all = yield* Ref.make<ReadonlyMap<string, ContainerSeen>>(new Map())

  const modify = (f: (map: Map<string, ContainerSeen>) => void) =>
    Ref.update(all, (current) => {
      const next = new Map(current)
      f(next)
      return next
    })

  return {
    view: (serviceId) =>
      Effect.map(Ref.get(all), (records): ContainerView | undefined => {
        const service = live.current().services.get(serviceId)
        if (service?.container === undefined) return undefined
        const seen = records.get(serviceId)
        if (seen !== undefined) {
          return {
            engine: seen.engine,
            machine_id: seen.machineId,
            name: seen.name,
            id: seen.id,
            image: seen.image,
            state: seen.state,
            created_by_hestia: seen.created
          }
        }
        // Not started yet: where the first start would go.
        const machineId = targetsFor(service, live.current())[0]?.machineId ?? "local"
        return {
          engine: engineUrlFor(live.current(), machineId, Option.getOrUndefined(fromEnv)),
          machine_id: machineId,
          name: service.container.name,
          id: null,
          image: service.container.image ?? null,
          state: null,
          created_by_hestia: false
        }
      }),
    seen: (serviceId, seen) =>
      modify((map) => {
        map.set(serviceId, seen)
      }),
    state: (serviceId, state) =>
      modify((map) => {
        const seen = map.get(serviceId)
        if (seen !== undefined) map.set(serviceId, { ...seen, state })
      })
  } satisfies ContainerRecordsShape
})

/**
 * What each container service's status shows of its container (id, name, image, engine, state). The container
 * orchestrator writes here; the status view reads `view`.
 */
export class ContainerRecords extends Context.Tag("hestia/ContainerRecords")<
  ContainerRecords,
  ContainerRecordsShape
>() {
  static readonly layer = Layer.effect(ContainerRecords, make).pipe(Layer.provide(LiveConfig.Default))
}
