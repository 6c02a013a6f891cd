/** What a scenario is, and what it is given. One module per scenario in bench/scenarios/; run.ts lists them. */
import type { Agent } from "undici"
import type { ConfigPart, Gateway } from "./gateway.ts"
import type { Target } from "./measure.ts"
import type { Bar, Row } from "./report.ts"

/** What a scenario can use before the shared gateway launches (when it adds to that gateway's config). */
export interface Setup {
  /** `--quick`: shorter runs, rougher figures. */
  readonly quick: boolean
  /** A free port for `name`: the same one on every call within the run, never one handed out for another name. */
  readonly port: (name: string) => Promise<number>
  /** A path for `name` in the run's temp directory (removed on the way out). */
  readonly file: (name: string) => string
  /** The plain upstream every target proxies to (`/json`, `/ndjson`, `/bytes`, `/sink`, `/health`). */
  readonly upstream: { readonly url: string; readonly port: number; readonly pid: number }
  readonly log: (message: string) => void
}

/** What a scenario's run is given. */
export interface Bench extends Setup {
  /** Sent with every request: the API key the gateways are configured with. */
  readonly headers: Record<string, string>
  /** Keep-alive client for the streaming, bulk and cold-start requests. */
  readonly agent: Agent
  /** direct, reference, nginx (when installed), gateway (`/services/direct` on the shared gateway), in that order. */
  readonly targets: ReadonlyArray<Target>
  readonly target: (name: string) => Target
  readonly withNginx: boolean
  /** The shared gateway (stopped already when an `own` scenario runs; its launch figure stays). */
  readonly gateway: Gateway
  /** Launches a gateway of the scenario's own (config `name`.yml from `part` and the bench's auth), killed at exit. */
  readonly launchGateway: (name: string, port: number, part: ConfigPart) => Promise<Gateway>
}

/** What a scenario hands back: its part of the results file and of the two tables, in its own order. */
export interface Outcome {
  /** Top-level entries of bench/results/*.json. */
  readonly results: Readonly<Record<string, unknown>>
  readonly rows: ReadonlyArray<Row>
  readonly bars: ReadonlyArray<Bar>
}

export interface Scenario {
  /** The name `--only` takes. */
  readonly name: string
  /**
   * "shared": measured on the shared targets while the shared gateway runs (every shared scenario before any `own`
   * one); "own": launches what it measures itself, after the shared gateway has stopped.
   */
  readonly gateway: "shared" | "own"
  /** What a shared scenario adds to the shared gateway's config (its services, ports, files), before it launches. */
  readonly config?: (setup: Setup) => Promise<ConfigPart>
  readonly run: (bench: Bench) => Promise<Outcome>
}
