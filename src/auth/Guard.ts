/**
 * Which credentials a path needs. `/healthz` is always open; `/` and its assets under `/dashboard/` are the dashboard,
 * and so is `/docs` (a page for people: a browser asks for the login). Its own module: the API's description
 * (src/http/ControlApi.ts) derives each route's credentials from it.
 */
export type Guard = "open" | "dashboard" | "apiKey"

export const guardFor = (method: string, path: string): Guard => {
  if (path === "/healthz") return "open"
  if ((path === "/" || path === "/docs" || path.startsWith("/dashboard/")) && (method === "GET" || method === "HEAD"))
    return "dashboard"
  return "apiKey"
}
