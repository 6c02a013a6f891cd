import { createHash } from "node:crypto"

// `GET /docs`: the OpenAPI document rendered on the server as one plain HTML page (no script, no CDN, one inline
// style allowed by its hash): every operation with its parameters, body and answers, then every named schema, each
// schema written as a TypeScript-like type whose references link to their definitions.

type Json = Record<string, any>

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!)

/** The document's descriptions use backticks for code; nothing else is interpreted. */
const prose = (text: string | undefined) =>
  text === undefined ? "" : escapeHtml(text).replace(/`([^`]+)`/g, (_, code: string) => `<code>${code}</code>`)

const refName = (ref: string) => ref.slice(ref.lastIndexOf("/") + 1)
const anchor = (name: string) => `schema-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`

const INDENT = "  "

/** A JSON Schema as a type, in HTML (escaped; references are links). */
export const typeHtml = (schema: Json | undefined, depth = 0): string => {
  if (schema === undefined || Object.keys(schema).length === 0) return "unknown"
  if (typeof schema.$ref === "string") {
    const name = refName(schema.$ref)
    return `<a href="#${anchor(name)}">${escapeHtml(name)}</a>`
  }
  const alternatives = schema.anyOf ?? schema.oneOf
  if (Array.isArray(alternatives)) return alternatives.map((s: Json) => typeHtml(s, depth)).join(" | ")
  if (Array.isArray(schema.enum)) return schema.enum.map((v: unknown) => escapeHtml(JSON.stringify(v))).join(" | ")
  if ("const" in schema) return escapeHtml(JSON.stringify(schema.const))
  if (Array.isArray(schema.type))
    return schema.type.map((type: string) => typeHtml({ ...schema, type }, depth)).join(" | ")
  switch (schema.type) {
    case "array": {
      if (Array.isArray(schema.prefixItems)) {
        return `[${schema.prefixItems.map((s: Json) => typeHtml(s, depth)).join(", ")}]`
      }
      const items = typeHtml(schema.items, depth)
      return /[ |]/.test(items) && !items.startsWith("{") ? `Array&lt;${items}&gt;` : `${items}[]`
    }
    case "object":
      return objectHtml(schema, depth)
    case "integer":
    case "number": {
      const bounds = [
        schema.minimum === undefined ? undefined : `≥ ${schema.minimum}`,
        schema.maximum === undefined ? undefined : `≤ ${schema.maximum}`
      ].filter((b) => b !== undefined)
      return bounds.length === 0 ? schema.type : `${schema.type} (${bounds.join(", ")})`
    }
    case "string":
      return schema.minLength === 1 ? "string (not empty)" : "string"
    default:
      return escapeHtml(String(schema.type ?? "unknown"))
  }
}

const objectHtml = (schema: Json, depth: number): string => {
  const properties: Json = schema.properties ?? {}
  const names = Object.keys(properties)
  const extra = schema.additionalProperties
  if (names.length === 0) {
    if (extra !== undefined && extra !== false && extra !== true)
      return `Record&lt;string, ${typeHtml(extra, depth)}&gt;`
    return extra === false ? "{}" : "Record&lt;string, unknown&gt;"
  }
  const required = new Set<string>(schema.required ?? [])
  const pad = INDENT.repeat(depth + 1)
  const lines = names.map((name) => {
    const property: Json = properties[name]
    const note =
      property.description === undefined ? "" : ` <span class="note">// ${prose(property.description)}</span>`
    return `${pad}${escapeHtml(name)}${required.has(name) ? "" : "?"}: ${typeHtml(property, depth + 1)}${note}`
  })
  return `{\n${lines.join("\n")}\n${INDENT.repeat(depth)}}`
}

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch"] as const

interface Operation {
  readonly method: string
  readonly path: string
  readonly op: Json
}

const operations = (spec: Json): Array<Operation> =>
  Object.entries<Json>(spec.paths ?? {}).flatMap(([path, item]) =>
    METHODS.filter((method) => item[method] !== undefined).map((method) => ({ method, path, op: item[method] }))
  )

const opId = (operation: Operation) =>
  `op-${String(operation.op.operationId ?? `${operation.method}${operation.path}`)}`

const contentHtml = (content: Json | undefined) =>
  content === undefined
    ? '<span class="note">no body</span>'
    : Object.entries<Json>(content)
        .map(([type, media]) => `<div><code>${escapeHtml(type)}</code><pre>${typeHtml(media.schema)}</pre></div>`)
        .join("")

const operationHtml = (spec: Json, operation: Operation) => {
  const { op } = operation
  const security: Array<Json> = op.security ?? spec.security ?? []
  const parameters: Array<Json> = op.parameters ?? []
  const parts = [
    `<section class="op" id="${escapeHtml(opId(operation))}">`,
    `<h3><span class="method ${operation.method}">${operation.method.toUpperCase()}</span> <code>${escapeHtml(operation.path)}</code></h3>`,
    op.summary === undefined ? "" : `<p class="summary">${prose(op.summary)}</p>`,
    op.description === undefined ? "" : `<p>${prose(op.description)}</p>`,
    `<p class="auth">${
      security.length === 0
        ? "Open: no credentials needed."
        : `Credentials (when auth is on): ${security.map((s) => Object.keys(s).map(escape).join(" + ")).join(" or ")}.`
    }</p>`
  ]
  if (parameters.length > 0) {
    parts.push(
      "<h4>Parameters</h4><table><thead><tr><th>name</th><th>in</th><th>type</th><th>meaning</th></tr></thead><tbody>",
      ...parameters.map(
        (p) =>
          `<tr><td><code>${escapeHtml(p.name)}</code>${p.required ? "" : "?"}</td><td>${escapeHtml(p.in)}</td>` +
          `<td><code>${typeHtml(p.schema)}</code></td><td>${prose(p.description ?? p.schema?.description)}</td></tr>`
      ),
      "</tbody></table>"
    )
  }
  if (op.requestBody !== undefined) parts.push("<h4>Request body</h4>", contentHtml(op.requestBody.content))
  parts.push(
    "<h4>Answers</h4><table><thead><tr><th>status</th><th>meaning</th><th>body</th></tr></thead><tbody>",
    ...Object.entries<Json>(op.responses ?? {}).map(
      ([status, response]) =>
        `<tr><td class="status s${status[0]}">${escapeHtml(status)}</td><td>${prose(response.description)}</td>` +
        `<td>${contentHtml(response.content)}</td></tr>`
    ),
    "</tbody></table></section>"
  )
  return parts.join("\n")
}

const STYLE = `
:root { color-scheme: light dark; --fg: #1d2430; --muted: #5b6576; --line: #d6dbe3; --code: #f3f5f8; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ef; --muted: #9aa4b5; --line: #39414f; --code: #1e232c; } }
body { font: 15px/1.5 system-ui, sans-serif; color: var(--fg); margin: 0 auto; max-width: 62rem; padding: 1rem; }
h1 { margin-bottom: 0; } h2 { border-bottom: 1px solid var(--line); padding-bottom: .2rem; margin-top: 2.5rem; }
a { color: #2563eb; } code, pre { font: 13px/1.45 ui-monospace, monospace; }
pre { background: var(--code); padding: .5rem .7rem; overflow-x: auto; margin: .2rem 0; border-radius: 4px; }
.op { border: 1px solid var(--line); border-radius: 6px; padding: .2rem 1rem .8rem; margin: 1rem 0; }
.op h3 { font-size: 1.05rem; } .summary { font-weight: 600; } .note, .auth { color: var(--muted); }
.method { display: inline-block; min-width: 4.2em; text-align: center; border-radius: 3px; color: #fff;
  font: 700 12px/1.8 ui-monospace, monospace; background: #4b5563; }
.method.get { background: #2563eb; } .method.post { background: #15803d; } .method.delete { background: #b91c1c; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; vertical-align: top; padding: .3rem .5rem;
  border-top: 1px solid var(--line); } th { color: var(--muted); font-weight: 500; }
.status { font-weight: 700; } .s2 { color: #15803d; } .s4 { color: #b45309; } .s5 { color: #b91c1c; }
nav ul { columns: 2; padding-left: 1.2rem; } @media (max-width: 40rem) { nav ul { columns: 1; } }
`

/** The page, and the Content-Security-Policy that lets only its own style run (no script at all). */
export const renderDocsPage = (spec: Json) => {
  const all = operations(spec)
  const tags: Array<Json> = spec.tags ?? []
  const byTag = tags.map((tag) => ({ tag, ops: all.filter((o) => (o.op.tags ?? []).includes(tag.name)) }))
  const schemas = Object.entries<Json>(spec.components?.schemas ?? {})
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(spec.info?.title ?? "API")}</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>${escapeHtml(spec.info?.title ?? "API")}</h1>
<p class="note">version ${escapeHtml(String(spec.info?.version ?? ""))} · OpenAPI ${escapeHtml(String(spec.openapi))} · the document itself: <a href="/openapi.json">/openapi.json</a></p>
<p>${prose(spec.info?.description)}</p>
</header>
<nav aria-label="operations"><ul>
${all.map((o) => `<li><a href="#${escapeHtml(opId(o))}"><code>${o.method.toUpperCase()} ${escapeHtml(o.path)}</code></a> ${prose(o.op.summary)}</li>`).join("\n")}
</ul></nav>
<main>
${byTag
  .filter(({ ops }) => ops.length > 0)
  .map(
    ({ tag, ops }) =>
      `<h2 id="tag-${escapeHtml(tag.name)}">${escapeHtml(tag.name)}</h2>${tag.description === undefined ? "" : `<p>${prose(tag.description)}</p>`}\n${ops.map((o) => operationHtml(spec, o)).join("\n")}`
  )
  .join("\n")}
<h2 id="schemas">Schemas</h2>
${schemas.map(([name, schema]) => `<section id="${anchor(name)}"><h3><code>${escapeHtml(name)}</code></h3>${schema.description === undefined ? "" : `<p>${prose(schema.description)}</p>`}<pre>${typeHtml(schema)}</pre></section>`).join("\n")}
<h2 id="credentials">Credentials</h2>
<table><tbody>
${Object.entries<Json>(spec.components?.securitySchemes ?? {})
  .map(
    ([name, scheme]) =>
      `<tr><td><code>${escapeHtml(name)}</code></td><td>${escapeHtml(scheme.type === "apiKey" ? `header ${scheme.name}` : `HTTP ${scheme.scheme}`)}</td><td>${prose(scheme.description)}</td></tr>`
  )
  .join("\n")}
</tbody></table>
</main>
</body>
</html>
`
  const styleHash = createHash("sha256").update(STYLE).digest("base64")
  return {
    html,
    contentSecurityPolicy: `default-src 'none'; style-src 'sha256-${styleHash}'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`
  }
}
