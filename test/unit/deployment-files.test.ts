import { readFileSync } from "node:fs"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Yaml from "yaml"
import { repoRoot } from "../fixtures/Gateway.ts"

const compose = Yaml.parse(readFileSync(Path.join(repoRoot, "docker-compose.yml"), "utf8")) as {
  services: Record<string, { image?: string; ports?: ReadonlyArray<string>; environment?: Record<string, string> }>
}
const dockerfile = readFileSync(Path.join(repoRoot, "Dockerfile"), "utf8")

describe("docker-compose.yml and Dockerfile: safe as shipped", () => {
  it("publishes every port on 127.0.0.1 only", () => {
    const published = Object.entries(compose.services).flatMap(([name, service]) =>
      (service.ports ?? []).map((port) => [name, port] as const)
    )
    assert.isAbove(published.length, 0)
    for (const [name, port] of published) assert.match(port, /^127\.0\.0\.1:/, `${name} publishes ${port}`)
  })

  it("pins every image it pulls to a version", () => {
    for (const [name, service] of Object.entries(compose.services)) {
      if (service.image === undefined || service.image.startsWith("hestia:")) continue
      assert.match(service.image, /:v?\d+\.\d+\.\d+/, `${name} uses ${service.image}`)
    }
  })

  it("gives Semaphore's admin password no default: it must come from the environment", () => {
    const password = compose.services.semaphore?.environment?.SEMAPHORE_ADMIN_PASSWORD
    assert.match(password ?? "", /^\$\{SEMAPHORE_ADMIN_PASSWORD:\?[^}]+\}$/)
  })

  it("runs the bundle with source maps, as npm start does", () => {
    const cmd = dockerfile.split("\n").find((line) => line.startsWith("CMD "))
    assert.deepStrictEqual(JSON.parse(cmd!.slice(4)), ["node", "--enable-source-maps", "dist/main.mjs"])
    const start = JSON.parse(readFileSync(Path.join(repoRoot, "package.json"), "utf8")).scripts.start as string
    assert.include(start, "node --enable-source-maps dist/main.mjs")
  })

  it("puts the hestia CLI on the image's PATH: the package's bin, as scripts/build.mjs builds it", () => {
    const manifest = JSON.parse(readFileSync(Path.join(repoRoot, "package.json"), "utf8"))
    assert.deepStrictEqual(manifest.bin, { hestia: "dist/cli/hestia.mjs" })
    assert.include(dockerfile, "RUN ln -s /app/dist/cli/hestia.mjs /usr/local/bin/hestia")
    const build = readFileSync(Path.join(repoRoot, "scripts/build.mjs"), "utf8")
    assert.include(build, 'entryPoints: ["src/cli/hestia.ts"]')
    assert.match(readFileSync(Path.join(repoRoot, "src/cli/hestia.ts"), "utf8"), /^#!\/usr\/bin\/env node\n/)
  })

  it("names every installed package that has an install script in allowScripts (npm 11 then installs quietly)", () => {
    const manifest = JSON.parse(readFileSync(Path.join(repoRoot, "package.json"), "utf8"))
    const lock = JSON.parse(readFileSync(Path.join(repoRoot, "package-lock.json"), "utf8")) as {
      packages: Record<string, { hasInstallScript?: boolean; optional?: boolean }>
    }
    const withScripts = Object.entries(lock.packages)
      .filter(([path, entry]) => path !== "" && entry.hasInstallScript === true)
      .map(([path]) => path.slice(path.lastIndexOf("node_modules/") + "node_modules/".length))
    assert.isAbove(withScripts.length, 0)
    for (const name of withScripts)
      assert.property(manifest.allowScripts, name, `${name} is neither approved nor denied`)
  })
})
