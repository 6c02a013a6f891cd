import { Schema } from "effect"
import { EngineUrl } from "./ContainerConfig.ts"
import { Flag, orUndefined } from "./Fields.ts"

export const LabelValue = Schema.Union(Schema.String, Schema.Number, Schema.Boolean)
export type LabelValue = typeof LabelValue.Type

export const Labels = Schema.Record({ key: Schema.String, value: LabelValue })

const machineFields = {
  /** Fills `{host}` in a service's URLs. */
  host: Schema.NonEmptyString,
  /** The name Semaphore's playbooks know the machine by. */
  semaphoreMachineId: orUndefined(Schema.String).pipe(Schema.fromKey("semaphore_machine_id")),
  /** Free-form, for routing rules (and strategies, later). */
  labels: Schema.optionalWith(Labels, { default: () => ({}) }),
  /** The machine's Docker Engine API; undefined: DOCKER_HOST, else unix:///var/run/docker.sock. */
  dockerUrl: orUndefined(EngineUrl).pipe(Schema.fromKey("docker_url")),
  /** Containers labelled `hestia.service=<id>` on this machine's engine become services (at start). */
  containerDiscovery: Schema.optionalWith(Flag, { default: () => false }).pipe(Schema.fromKey("container_discovery"))
}

/** A machine a service can run on; `id` is its key under `machines:`. */
export const MachineConfig = Schema.Struct({ id: Schema.String, ...machineFields })
export type MachineConfig = typeof MachineConfig.Type

/** `machines:`, in file order. */
export const Machines = Schema.transform(
  Schema.Record({ key: Schema.String, value: Schema.Struct(machineFields) }),
  Schema.ReadonlyMapFromSelf({ key: Schema.String, value: Schema.typeSchema(MachineConfig) }),
  {
    strict: true,
    decode: (entries) => new Map(Object.entries(entries).map(([id, machine]) => [id, { id, ...machine }] as const)),
    encode: (machines) => Object.fromEntries([...machines].map(([id, { id: _, ...machine }]) => [id, machine] as const))
  }
)
