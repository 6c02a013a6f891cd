// Bundles the gateway into dist/main.mjs (plus lazily loaded chunks, e.g. the OpenTelemetry SDK that only tracing
// needs). The bundle starts in well under a second and holds about half the memory of the TypeScript sources run
// through tsx, which resolves and transpiles some 1500 modules at start. Native addons stay outside.
import { chmodSync, cpSync, rmSync } from "node:fs"
import { build } from "esbuild"

// `node scripts/build.mjs [outdir]`: tests that run the bundle build their own copy (inside the repository, so that
// the packages left outside resolve from its node_modules) and never race another test's build of dist/.
const outdir = process.argv[2] ?? "dist"
rmSync(outdir, { recursive: true, force: true })
const common = {
  outExtension: { ".js": ".mjs" },
  bundle: true,
  splitting: true,
  minify: true,
  keepNames: true,
  platform: "node",
  format: "esm",
  target: "node20",
  // esbuild bundles strategy plugins at run time (its native binary is found from its own package).
  external: ["better-sqlite3", "esbuild"],
  // Bundled CommonJS dependencies call require(); ESM has none of its own.
  banner: {
    js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);"
  },
  sourcemap: "linked",
  logLevel: "warning"
}
// The gateway and the `hestia` CLI are built apart, so the gateway's chunks hold only what it runs. The CLI is the
// package's bin: its first line is the entry's `#!/usr/bin/env node` (esbuild keeps it above the banner).
await build({ ...common, entryPoints: ["src/main.ts"], outdir })
await build({ ...common, entryPoints: ["src/cli/hestia.ts"], outdir: `${outdir}/cli` })
chmodSync(`${outdir}/cli/hestia.mjs`, 0o755)
// The dashboard's page, script and style are served as they are (no framework, no build step): they sit next to
// the chunks, where src/http/DashboardRoutes.ts looks for them (`./dashboard/` from its own module).
cpSync("src/http/dashboard", `${outdir}/dashboard`, { recursive: true })
