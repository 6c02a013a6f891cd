import { Context, Effect } from "effect"
import type { ServiceConfig } from "../config/HestiaConfig.ts"
import type { Target } from "../domain/Placement.ts"

/** What a placement decision may know about the gateway, besides the service and its machines. */
export interface PlacementContext {
  /** Clock millis. */
  readonly now: number
  /** The services running now and where. */
  readonly hot: ReadonlyArray<{ readonly serviceId: string; readonly machineId: string | undefined }>
  /** Machine id → Clock millis of the last start (of any service) that became ready there. */
  readonly lastStartedOn: Readonly<Record<string, number>>
}

export interface StartPlacementShape {
  /**
   * The machines a start of `service` tries, in order: by default `targets` as configured (its `machines:`, the
   * routing rules, then `fallback_url`); a placement strategy may reorder them. Never fails.
   */
  readonly order: (
    service: ServiceConfig,
    targets: ReadonlyArray<Target>,
    context: PlacementContext
  ) => Effect.Effect<ReadonlyArray<Target>>
}

/** The order a start tries its machines in. Without a strategy layer (tests, no plugins): the configured order. */
export class StartPlacement extends Context.Reference<StartPlacement>()("hestia/StartPlacement", {
  defaultValue: (): StartPlacementShape => ({ order: (_service, targets) => Effect.succeed(targets) })
}) {}
