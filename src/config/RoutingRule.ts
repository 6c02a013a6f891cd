import { Schema } from "effect"
import { Labels, LabelValue } from "./MachineConfig.ts"

/** A step of a routing rule's order: one machine, or every machine carrying all these labels (in file order). */
export const MachinePreference = Schema.Union(
  Schema.TaggedStruct("Machine", { machineId: Schema.String }),
  Schema.TaggedStruct("Labels", { labels: Labels })
)
export type MachinePreference = typeof MachinePreference.Type

const isPreferStep = Schema.is(
  Schema.Union(
    Schema.NonEmptyString,
    Schema.Record({ key: Schema.String, value: LabelValue }).pipe(
      Schema.filter((labels) => Object.keys(labels).length > 0)
    )
  )
)

/** In the file a step is a machine id or a label selector; declared as one check so a bad step gets one message. */
const PreferStep = Schema.transform(
  Schema.declare((input): input is string | Readonly<Record<string, LabelValue>> => isPreferStep(input), {
    message: () => "expected a machine id, or a label selector with at least one label such as { gpu: true }"
  }),
  Schema.typeSchema(MachinePreference),
  {
    strict: true,
    decode: (step) =>
      typeof step === "string"
        ? { _tag: "Machine" as const, machineId: step }
        : { _tag: "Labels" as const, labels: step },
    encode: (step) => (step._tag === "Machine" ? step.machineId : step.labels)
  }
)

/** One routing rule: for the services it matches, the machines to try, in order. */
export const RoutingRule = Schema.Struct({
  /** Service id patterns (`*` wildcard); undefined = every service. */
  services: Schema.optionalWith(
    Schema.UndefinedOr(
      Schema.Array(Schema.NonEmptyString).pipe(
        Schema.minItems(1, {
          message: () => "expected at least one service id or pattern (omit the key for every service)"
        })
      )
    ),
    { default: () => undefined }
  ),
  /** Each entry is a machine id, or a label selector standing for every machine with those labels (file order). */
  prefer: Schema.Array(PreferStep).pipe(
    Schema.minItems(1, { message: () => "expected at least one machine id or label selector" })
  )
})
export type RoutingRule = typeof RoutingRule.Type
