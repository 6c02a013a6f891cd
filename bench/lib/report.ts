/** Formatting of the results: one markdown table of figures, one of bars. */

export const fmt = (value: number | undefined, digits = 1) =>
  value === undefined || Number.isNaN(value) ? "—" : value.toFixed(digits)

export const fmtInt = (value: number | undefined) =>
  value === undefined || Number.isNaN(value) ? "—" : Math.round(value).toLocaleString("en-US")

export const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || Number.isNaN(a) || Number.isNaN(b) || b === 0 ? "—" : `${(a / b).toFixed(2)}×`

/** A ratio already taken (e.g. a median of per-round ratios). */
export const ratioText = (value: number | undefined) => (value === undefined ? "—" : `${value.toFixed(2)}×`)

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

/** The target columns of the table, from a record keyed by target name. */
export interface Columns<A> {
  readonly direct: A | undefined
  readonly reference: A | undefined
  readonly nginx: A | undefined
  readonly gateway: A
}

export const columns = <A>(values: Record<string, A>): Columns<A> => ({
  direct: values.direct,
  reference: values.reference,
  nginx: values.nginx,
  gateway: values.gateway!
})

/** The same columns, each mapped. */
export const mapPer = <A>(v: Columns<A>, pick: (value: A) => number): Columns<number> => ({
  direct: v.direct === undefined ? undefined : pick(v.direct),
  reference: v.reference === undefined ? undefined : pick(v.reference),
  nginx: v.nginx === undefined ? undefined : pick(v.nginx),
  gateway: pick(v.gateway)
})

/** The columns of a record keyed by target name, each mapped. */
export const per = <A>(values: Record<string, A>, pick: (value: A) => number) => mapPer(columns(values), pick)

/** A row with one figure per target and (unless `ratios` is false) the gateway's ratios to reference and direct. */
export const rowOf = (
  measure: string,
  v: Columns<number>,
  show: (n: number | undefined) => string,
  ratios = true
): Row => ({
  measure,
  direct: show(v.direct),
  reference: show(v.reference),
  nginx: show(v.nginx),
  gateway: show(v.gateway),
  ...(ratios ? { vsReference: ratio(v.gateway, v.reference), vsDirect: ratio(v.gateway, v.direct) } : {})
})

export const ms1 = (n: number | undefined) => (n === undefined ? "—" : `${fmt(n, 1)} ms`)
export const ms3 = (n: number | undefined) => (n === undefined ? "—" : `${fmt(n, 3)} ms`)
