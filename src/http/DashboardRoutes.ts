import { readFileSync } from "node:fs"
import { HttpRouter, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { Auth } from "../auth/Auth.ts"
import type { Settings } from "../config/HestiaConfig.ts"
import { LiveConfig } from "../config/LiveConfig.ts"
import { targetsFor } from "../domain/Placement.ts"

export const AUTH_DISABLED_WARNING = "authentication is disabled: anyone who can reach this port can use every service"

/**
 * The dashboard's files sit next to this module: `src/http/dashboard/` from the sources, `dist/dashboard/` in the
 * bundle (scripts/build.mjs copies them; every chunk of the bundle lives in `dist/`).
 */
const ASSETS = new URL("./dashboard/", import.meta.url)

const ASSET_TYPES = {
  "dashboard.js": "text/javascript; charset=utf-8",
  "dashboard.css": "text/css; charset=utf-8"
} as const

type AssetName = keyof typeof ASSET_TYPES

const loadAssets = () => {
  const read = (name: string) => {
    try {
      return readFileSync(new URL(name, ASSETS), "utf8")
    } catch (error) {
      throw new Error(`dashboard asset ${name} not found in ${ASSETS.pathname} (rebuild with npm run build): ${error}`)
    }
  }
  return {
    html: read("index.html"),
    files: { "dashboard.js": read("dashboard.js"), "dashboard.css": read("dashboard.css") } as Record<AssetName, string>
  }
}

/** The page and its files, read once when the gateway starts: a bundle without them fails then, naming the folder. */
export class DashboardAssets extends Effect.Service<DashboardAssets>()("hestia/DashboardAssets", {
  sync: loadAssets
}) {}

/**
 * What the page needs from the config (fixed for the gateway's lifetime, label discovery included): embedded in it,
 * so it needs no route. A service's `group` is the first group that names it, as its status says.
 */
export const bootData = (config: Settings, authEnabled: boolean) => {
  const groups = [...config.groups.values()]
  return {
    authEnabled,
    services: Array.from(config.services.values(), (service) => {
      const group = groups.find((g) => g.members.includes(service.id))
      return {
        serviceId: service.id,
        kind: service.kind,
        source: service.source,
        group: group?.id ?? null,
        persistent: group?.persistent.includes(service.id) ?? false,
        idleTimeoutMs: service.idleTimeoutMs,
        attemptsPerMachine: service.retryCount + 1,
        machines: targetsFor(service, config).map((target) => target.machineId)
      }
    }),
    groups: groups.map((group) => ({
      name: group.id,
      exclusive: group.exclusive,
      members: group.members,
      persistent: group.persistent
    }))
  }
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!)

/** JSON inside `<script type="application/json">`: `<` escaped so no value can close the element. */
const scriptJson = (value: unknown) => JSON.stringify(value).replace(/</g, "\\u003c")

/** Same origin only; no inline script runs (the boot data is an inert JSON element). */
const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-cache"
}

export const renderPage = (html: string, config: Settings, authEnabled: boolean) =>
  html
    .replace("<!--auth-warning-->", () =>
      authEnabled
        ? ""
        : `<p class="warning" role="alert"><strong>Warning:</strong> ${escapeHtml(AUTH_DISABLED_WARNING)}.</p>`
    )
    .replace('"hestia:boot"', () => scriptJson(bootData(config, authEnabled)))

const asset = (name: AssetName) =>
  Effect.map(DashboardAssets, (assets) =>
    HttpServerResponse.text(assets.files[name], { contentType: ASSET_TYPES[name], headers: SECURITY_HEADERS })
  )

/** `GET /` (the page) and `GET /dashboard/{file}` (its script and style), behind the dashboard's guard (Auth). */
export const routes = HttpRouter.empty.pipe(
  HttpRouter.get(
    "/",
    Effect.gen(function* () {
      const assets = yield* DashboardAssets
      const config = (yield* LiveConfig).current()
      const auth = yield* Auth
      return HttpServerResponse.html(renderPage(assets.html, config, auth.enabled())).pipe(
        HttpServerResponse.setHeaders(SECURITY_HEADERS)
      )
    })
  ),
  HttpRouter.get("/dashboard/dashboard.js", asset("dashboard.js")),
  HttpRouter.get("/dashboard/dashboard.css", asset("dashboard.css"))
)
