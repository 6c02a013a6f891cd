import { HttpApiBuilder, HttpServerResponse, OpenApi } from "@effect/platform"
import { Effect } from "effect"
import { renderDocsPage } from "./ApiDocsPage.ts"
import { ControlApi } from "./ControlApi.ts"

/** The OpenAPI document of the control API, derived from its declaration (once: it is fixed for the process). */
export const openApiDocument = () => OpenApi.fromApi(ControlApi) as unknown as Record<string, unknown>

/** `GET /openapi.json` and `GET /docs` (the same document as a page a person reads, with no script). */
export const DocsHandlers = HttpApiBuilder.group(ControlApi, "docs", (handlers) =>
  Effect.sync(() => {
    const spec = openApiDocument()
    const page = renderDocsPage(spec)
    return handlers
      .handle("openapi", () => Effect.succeed(spec))
      .handle("page", () =>
        Effect.succeed(
          HttpServerResponse.html(page.html).pipe(
            HttpServerResponse.setHeaders({
              "content-security-policy": page.contentSecurityPolicy,
              "x-content-type-options": "nosniff",
              "referrer-policy": "no-referrer",
              "cache-control": "no-cache"
            })
          )
        )
      )
  })
)
