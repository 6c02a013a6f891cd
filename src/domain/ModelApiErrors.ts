import { type ErrorResponse, type GatewayError, toErrorResponse } from "./HttpErrors.ts"

/** The two model APIs the gateway speaks: OpenAI's (`/openai/v1`) and Ollama's (`/ollama/api`). */
export type ModelApi = "openai" | "ollama"

/** OpenAI's own codes where it has one for the same failure; otherwise the error's tag in snake case. */
const openAiCodes: Partial<Record<GatewayError["_tag"], string>> = {
  UnknownModel: "model_not_found",
  Unauthorized: "invalid_api_key",
  RequestBodyTooLarge: "request_too_large"
}

const snakeCase = (tag: string) => tag.replace(/(?<=[a-z0-9])([A-Z])/g, "_$1").toLowerCase()

/**
 * A typed error as a model API's client expects it: the status and headers of the one table (`toErrorResponse`),
 * the body in that API's format. OpenAI: `{"error": {"message", "type", "param", "code"}}`, with the gateway's own
 * body beside them under `hestia` (attempts, waited time, the known models...). Ollama: `{"error": "message"}`, as
 * Ollama answers (its clients show that string).
 */
export const toModelApiErrorResponse = (api: ModelApi, error: GatewayError): ErrorResponse => {
  const { status, headers, body } = toErrorResponse(error)
  if (api === "ollama") return { status, headers, body: { error: error.message } }
  return {
    status,
    headers,
    body: {
      error: {
        message: error.message,
        type: status >= 500 ? "server_error" : "invalid_request_error",
        param: error._tag === "UnknownModel" || error._tag === "InvalidModelRequest" ? "model" : null,
        code: openAiCodes[error._tag] ?? snakeCase(error._tag),
        hestia: body
      }
    }
  }
}

/** A bug (a defect, not a typed error): 500 in the client's format. */
export const internalErrorResponse = (api: ModelApi) => ({
  status: 500,
  body:
    api === "ollama"
      ? { error: "internal error" }
      : { error: { message: "internal error", type: "server_error", param: null, code: "internal_error" } }
})
