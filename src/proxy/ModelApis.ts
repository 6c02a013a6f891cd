import { createHash } from "node:crypto"
import type { BadRequest } from "../domain/Errors.ts"
import type { ModelApi } from "../domain/ModelApiErrors.ts"
import type { ListedModel } from "../domain/ModelCatalog.ts"
import type { ServiceStatus } from "../registry/ServiceRegistry.ts"
import { checkPath } from "./ForwardingRules.ts"

// The two model APIs' addresses and the answers the gateway gives itself (the model lists), in each API's format.
// `OPENAI_BASE_URL=http://localhost:8080/openai/v1`, `OLLAMA_HOST=http://localhost:8080/ollama`.

const OPENAI = "/openai/v1"
const OLLAMA = "/ollama"
const OLLAMA_API = "/ollama/api"

const under = (url: string, prefix: string) =>
  url.startsWith(prefix) && (url.length === prefix.length || url[prefix.length] === "/" || url[prefix.length] === "?")

/** `/openai/v1...`, `/ollama/api...`, and Ollama's root (`/ollama`, `/ollama/`: "Ollama is running"). */
export const isModelUrl = (url: string) =>
  under(url, OPENAI) || under(url, OLLAMA_API) || url === OLLAMA || url === `${OLLAMA}/` || url.startsWith(`${OLLAMA}?`)

export interface ModelPath {
  readonly api: ModelApi
  /** The path forwarded upstream: the same below the prefix (`/v1/...`, `/api/...`); `/` for Ollama's root. */
  readonly path: string
  /** The query string with its "?", raw ("" when none). */
  readonly query: string
}

/** A model endpoint's URL → its API, the path to forward and the query; or why the path is refused. */
export const parseModelUrl = (url: string): ModelPath | BadRequest => {
  const queryAt = url.indexOf("?")
  const pathPart = queryAt === -1 ? url : url.slice(0, queryAt)
  const query = queryAt === -1 ? "" : url.slice(queryAt)
  const api: ModelApi = pathPart.startsWith(OPENAI) ? "openai" : "ollama"
  const rest = pathPart.slice(api === "openai" ? "/openai".length : OLLAMA.length)
  const path = rest === "" ? "/" : rest
  return checkPath(path) ?? { api, path, query }
}

/** What the gateway answers itself on a model endpoint, without asking (or starting) any service. */
export type LocalRoute =
  | { readonly _tag: "OpenAiModels" }
  | { readonly _tag: "OpenAiModel"; readonly id: string }
  | { readonly _tag: "OllamaTags" }
  | { readonly _tag: "OllamaRunning" }
  | { readonly _tag: "OllamaRoot" }

export const localRoute = (method: string, { api, path }: ModelPath): LocalRoute | undefined => {
  if (method !== "GET" && method !== "HEAD") return undefined
  if (api === "openai") {
    if (path === "/v1/models" || path === "/v1/models/") return { _tag: "OpenAiModels" }
    if (path.startsWith("/v1/models/")) {
      try {
        return { _tag: "OpenAiModel", id: decodeURIComponent(path.slice("/v1/models/".length)) }
      } catch {
        return undefined
      }
    }
    return undefined
  }
  if (path === "/api/tags") return { _tag: "OllamaTags" }
  if (path === "/api/ps") return { _tag: "OllamaRunning" }
  if (path === "/") return { _tag: "OllamaRoot" }
  return undefined
}

/** A model's state, as the lists tell it: its service's. */
export interface ModelState {
  readonly state: ServiceStatus
  /** ISO time its service is stopped when idle, if it stays idle (undefined: never). */
  readonly expiresAt: string | undefined
}

const hestiaField = (model: ListedModel, state: ServiceStatus) => ({
  service: model.serviceId,
  state,
  loaded: state === "hot",
  ...(model.aliasOf === undefined ? {} : { alias_of: model.aliasOf })
})

/** One entry of `GET /v1/models`, with the `hestia` field saying where it runs and whether it is loaded. */
export const openAiModel = (model: ListedModel, state: ServiceStatus, createdSeconds: number) => ({
  id: model.name,
  object: "model",
  created: createdSeconds,
  owned_by: model.serviceId,
  hestia: hestiaField(model, state)
})

export const openAiModelList = (data: ReadonlyArray<ReturnType<typeof openAiModel>>) => ({ object: "list", data })

/** Ollama's clients show a digest's first 12 characters: one derived from the name (no weights are known here). */
const digestOf = (name: string) => createHash("sha256").update(`hestia:${name}`).digest("hex")

const OLLAMA_DETAILS = {
  parent_model: "",
  format: "",
  family: "",
  families: null,
  parameter_size: "",
  quantization_level: ""
}

/** Go's zero time: Ollama's clients show it as "Never" (a service that is never stopped when idle). */
const NEVER = "0001-01-01T00:00:00Z"

/** One entry of `GET /api/tags`. */
export const ollamaTag = (model: ListedModel, state: ServiceStatus, modifiedAt: string) => ({
  name: model.name,
  model: model.name,
  modified_at: modifiedAt,
  size: 0,
  digest: digestOf(model.name),
  details: OLLAMA_DETAILS,
  hestia: hestiaField(model, state)
})

/** One entry of `GET /api/ps`: a model whose service is hot. */
export const ollamaRunning = (model: ListedModel, state: ModelState) => ({
  name: model.name,
  model: model.name,
  size: 0,
  digest: digestOf(model.name),
  details: OLLAMA_DETAILS,
  expires_at: state.expiresAt ?? NEVER,
  size_vram: 0,
  hestia: hestiaField(model, state.state)
})
