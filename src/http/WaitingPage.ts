import { hash } from "node:crypto"
import { readFileSync } from "node:fs"
import type { IncomingHttpHeaders } from "node:http"
import { Effect } from "effect"
import { HestiaConfig } from "../config/HestiaConfig.ts"

// ---------------------------------------------------------------------------
// Who gets it: a browser's navigation, never a program.
// ---------------------------------------------------------------------------

/** The q-value `accept` gives `type/subtype`, from its most specific matching range (RFC 9110 §12.5.1). */
export const qualityOf = (accept: string, type: string, subtype: string): number => {
  let best = -1
  let quality = 0
  for (const range of accept.split(",")) {
    const [media = "", ...params] = range.split(";").map((part) => part.trim().toLowerCase())
    const [t, s] = media.split("/")
    const specificity = t === type && s === subtype ? 2 : t === type && s === "*" ? 1 : t === "*" && s === "*" ? 0 : -1
    if (specificity <= best) continue
    best = specificity
    const q = params.find((param) => param.startsWith("q="))
    const parsed = q === undefined ? 1 : Number(q.slice(2))
    quality = Number.isFinite(parsed) ? Math.min(Math.max(parsed, 0), 1) : 0
  }
  return quality
}

/** `Accept` asks for HTML before JSON (a browser's `text/html,...,*\/*;q=0.8`; not curl's `*\/*`). */
export const prefersHtml = (accept: string | undefined) => {
  if (accept === undefined) return false
  const html = qualityOf(accept, "text", "html")
  return html > 0 && html > qualityOf(accept, "application", "json")
}

/**
 * A browser navigation: a GET whose `Accept` prefers HTML to JSON, that is a navigation (`Sec-Fetch-Mode: navigate`)
 * or comes from a browser that sends no `Sec-Fetch-*`. Never an XHR or fetch (another mode, `X-Requested-With`).
 */
export const isBrowserNavigation = (method: string | undefined, headers: IncomingHttpHeaders) => {
  if (method !== "GET") return false
  const mode = headers["sec-fetch-mode"]
  if (mode !== undefined && mode !== "navigate") return false
  if (headers["x-requested-with"] !== undefined) return false
  return prefersHtml(headers.accept)
}

// ---------------------------------------------------------------------------
// The page: one file with its style and script inline (it must work whatever the service's own assets need).
// ---------------------------------------------------------------------------

/** Next to this module: `src/http/dashboard/` from the sources, `dist/dashboard/` in the bundle. */
const TEMPLATE = new URL("./dashboard/waiting.html", import.meta.url)

const inline = (html: string, tag: "script" | "style") => {
  const match = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(html)
  if (match === null) throw new Error(`${TEMPLATE.pathname} has no inline <${tag}>`)
  return match[1]!
}

/** CSP source for an inline element: the SHA-256 of its exact text. */
const sourceHash = (text: string) => `'sha256-${hash("sha256", text, "base64")}'`

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!)

/** JSON inside `<script type="application/json">`: `<` escaped so no value can close the element. */
const scriptJson = (value: unknown) => JSON.stringify(value).replace(/</g, "\\u003c")

export const renderWaitingPage = (template: string, serviceId: string) =>
  template
    .replaceAll("<!--service-->", () => escapeHtml(serviceId))
    .replace('"hestia:boot"', () =>
      scriptJson({
        serviceId,
        statusUrl: `/v1/services/${encodeURIComponent(serviceId)}/status`,
        eventsUrl: "/v1/events"
      })
    )

/**
 * "Starting {service}…" for a browser that navigates to a cold or starting service with `waiting_page: true`: served
 * at once (the start is under way), live from the event stream, the error and a retry button if the start fails, and
 * a reload into the service as soon as it is hot. Read once when the gateway starts: a bundle without the file fails
 * then, naming it.
 */
export class WaitingPage extends Effect.Service<WaitingPage>()("hestia/WaitingPage", {
  effect: Effect.gen(function* () {
    const config = yield* HestiaConfig
    const pages = new Map<string, Buffer>()
    let headers: Record<string, string> = {}
    const services = [...config.services.values()].filter((service) => service.waitingPage)
    if (services.length > 0) {
      let template: string
      try {
        template = readFileSync(TEMPLATE, "utf8")
      } catch (error) {
        throw new Error(`waiting page ${TEMPLATE.pathname} not found (rebuild with npm run build): ${error}`)
      }
      // Its own calls (status, events) are same-origin; nothing else is loaded or run.
      headers = {
        "content-type": "text/html; charset=utf-8",
        "cache-control": "no-store",
        "content-security-policy":
          `default-src 'none'; script-src ${sourceHash(inline(template, "script"))}; ` +
          `style-src ${sourceHash(inline(template, "style"))}; connect-src 'self'; base-uri 'none'; ` +
          "form-action 'none'; frame-ancestors 'self'",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer"
      }
      for (const service of services) pages.set(service.id, Buffer.from(renderWaitingPage(template, service.id)))
    }
    return {
      /** The page of a service with `waiting_page: true`; undefined for the others. */
      page: (serviceId: string) => pages.get(serviceId),
      headers: () => headers
    }
  })
}) {}
