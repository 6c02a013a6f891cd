import { Context, Effect } from "effect"
import type { ServiceConfig } from "../config/HestiaConfig.ts"
import type { BalanceInstance } from "../strategies/StrategyApi.ts"

export interface InstanceBalanceShape {
  /** Whether a balance strategy picks the instances of `service` (a loaded one its `strategy:` names): a lookup. */
  readonly balances: (service: ServiceConfig) => boolean
  /** The strategy's pick among `instances` (one of them), or undefined: the default rule decides. Never fails. */
  readonly pick: <I extends BalanceInstance>(
    service: ServiceConfig,
    instances: ReadonlyArray<I>
  ) => Effect.Effect<I | undefined>
}

/** Which instance a request gets. Without a strategy layer (tests, no plugins): always the default rule. */
export class InstanceBalance extends Context.Reference<InstanceBalance>()("hestia/InstanceBalance", {
  defaultValue: (): InstanceBalanceShape => ({ balances: () => false, pick: () => Effect.succeed(undefined) })
}) {}
