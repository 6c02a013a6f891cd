/** Formatting of the results: one markdown table of figures, one of bars. */

export const fmt = (value: number | undefined, digits = 1) =>
  value === undefined || Number.isNaN(value) ? "—" : value.toFixed(digits)

export const fmtInt = (value: number | undefined) =>
  value === undefined || Number.isNaN(value) ? "—" : Math.round(value).toLocaleString("en-US")

export const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || Number.isNaN(a) || Number.isNaN(b) || b === 0 ? "—" : `${(a / b).toFixed(2)}×`

export interface Row {
  readonly measure: string
  readonly direct?: string
  readonly reference?: string
  readonly nginx?: string
  readonly gateway: string
  readonly vsReference?: string
  readonly vsDirect?: string
}

export interface Bar {
  readonly line: string
  readonly bar: string
  readonly figure: string
  readonly met: boolean
}

export const table = (rows: ReadonlyArray<Row>, withNginx: boolean) => {
  const head = [
    "measure",
    "direct",
    "reference proxy",
    ...(withNginx ? ["nginx"] : []),
    "gateway",
    "gw / ref",
    "gw / direct"
  ]
  const lines = [`| ${head.join(" | ")} |`, `|${head.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`]
  for (const row of rows) {
    const cells = [
      row.measure,
      row.direct ?? "",
      row.reference ?? "",
      ...(withNginx ? [row.nginx ?? ""] : []),
      row.gateway,
      row.vsReference ?? "",
      row.vsDirect ?? ""
    ]
    lines.push(`| ${cells.join(" | ")} |`)
  }
  return lines.join("\n")
}

export const barTable = (bars: ReadonlyArray<Bar>) => {
  const lines = ["| # | bar | figure | |", "|---|---|---:|---|"]
  for (const bar of bars) lines.push(`| ${bar.line} | ${bar.bar} | ${bar.figure} | ${bar.met ? "met" : "**missed**"} |`)
  return lines.join("\n")
}
