import { defineConfig } from "vitest/config"
import { unavailable } from "./test/fixtures/PrivateEngine.ts"

// The container suite (test/containers/) runs on private engines the tests start themselves, which needs root and
// dockerd (Podman too where installed). Without them it is left out, and test/fixtures/EngineNotice.ts says so in one
// line at the end; HESTIA_REQUIRE_ENGINES=docker,podman (CI) makes a missing engine a failure instead.
const missing = (["docker", "podman"] as const).flatMap((kind) => unavailable(kind) ?? [])
const required = (process.env.HESTIA_REQUIRE_ENGINES ?? "").split(",").filter((kind) => kind !== "")
const missingRequired = required.flatMap((kind) =>
  kind === "docker" || kind === "podman" ? (unavailable(kind) ?? []) : [`${kind}: not an engine the suite knows`]
)
if (missingRequired.length > 0) {
  throw new Error(`HESTIA_REQUIRE_ENGINES=${required.join(",")}, but ${missingRequired.join("; ")}`)
}
const noEngine = unavailable("docker") !== undefined && unavailable("podman") !== undefined

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: noEngine ? ["test/containers/**", "**/node_modules/**"] : ["**/node_modules/**"],
    // The embedded default config discovers labelled containers on the local engine (DOCKER_HOST, else
    // /var/run/docker.sock). Tests never ask the machine's shared daemon: their gateways find no engine there, and
    // the container tests name their private engines' sockets.
    env: { DOCKER_HOST: "unix:///nonexistent/hestia-tests-use-private-engines-only.sock" },
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests spawn processes and bind ports; two workers suit a 2-core machine.
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ["default", ["./test/fixtures/EngineNotice.ts", { missing }]]
  }
})
