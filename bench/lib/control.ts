/** The gateway's control API as the scenarios use it, and the marks the upstreams write (bench/upstream.mjs --marks). */
import { readFileSync } from "node:fs"
import { setTimeout as sleep } from "node:timers/promises"
import { request } from "undici"
import { HEADERS } from "./gateway.ts"
import { now } from "./processes.ts"

export const getJson = async <A>(url: string, headers: Record<string, string>, method: "GET" | "POST" = "GET") => {
  const response = await request(url, { method, headers })
  const text = await response.body.text()
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {
    // not JSON
  }
  return { status: response.statusCode, body: body as A, at: now() }
}

export interface Mark {
  readonly event: "spawned" | "listening" | "health"
  readonly pid: number
  readonly t: number
}

export const readMarks = (file: string): Array<Mark> => {
  try {
    return readFileSync(file, "utf8")
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as Mark)
  } catch {
    return []
  }
}

export const statusOf = async (gateway: string, serviceId: string) => {
  const answer = await getJson<{ state?: string }>(`${gateway}/v1/services/${serviceId}/status`, HEADERS)
  if (answer.status !== 200)
    throw new Error(`status of ${serviceId}: HTTP ${answer.status} ${JSON.stringify(answer.body)}`)
  return answer.body.state
}

export const waitForState = async (gateway: string, serviceId: string, state: string, timeoutMs = 15_000) => {
  const deadline = now() + timeoutMs
  for (;;) {
    const current = await statusOf(gateway, serviceId)
    if (current === state) return
    if (now() > deadline) throw new Error(`${serviceId} still ${current}, not ${state}, after ${timeoutMs} ms`)
    await sleep(20)
  }
}

/** Stop through the API (202) and wait for `cold`. */
export const makeCold = async (gateway: string, serviceId: string) => {
  const state = await statusOf(gateway, serviceId)
  if (state === "cold") return
  if (state === "hot" || state === "starting") {
    const answer = await getJson(`${gateway}/v1/services/${serviceId}/stop`, HEADERS, "POST")
    if (answer.status !== 202 && answer.status !== 200) throw new Error(`stop ${serviceId}: HTTP ${answer.status}`)
  }
  await waitForState(gateway, serviceId, "cold")
}
