import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import { parse } from "../../src/config/HestiaConfig.ts"
import { createBody } from "../../src/orchestrators/Container.ts"
import { LogDemuxer, MAX_LINE_BYTES, splitImageReference } from "../../src/orchestrators/DockerEngine.ts"

/** A frame of the engine's multiplexed log stream: [stream, 0, 0, 0, size u32 BE] + payload. */
const frame = (stream: 1 | 2, text: string) => {
  const payload = Buffer.from(text)
  const header = Buffer.alloc(8)
  header[0] = stream
  header.writeUInt32BE(payload.length, 4)
  return Buffer.concat([header, payload])
}

describe("DockerEngine", () => {
  it("demultiplexes stdout and stderr frames into lines, whatever the chunking", () => {
    const bytes = Buffer.concat([frame(1, "one\ntw"), frame(2, "err 1\n"), frame(1, "o\nthree"), frame(2, "err 2")])
    // Every split point, including inside a header.
    for (let cut = 0; cut <= bytes.length; cut++) {
      const demuxer = new LogDemuxer(false)
      const lines = [...demuxer.push(bytes.subarray(0, cut)), ...demuxer.push(bytes.subarray(cut)), ...demuxer.flush()]
      assert.deepStrictEqual(lines, [
        { stream: "stdout", line: "one" },
        { stream: "stderr", line: "err 1" },
        { stream: "stdout", line: "two" },
        { stream: "stdout", line: "three" },
        { stream: "stderr", line: "err 2" }
      ])
    }
  })

  it("reads a TTY container's raw output as stdout, drops CRs, and cuts over-long lines", () => {
    const demuxer = new LogDemuxer(true)
    assert.deepStrictEqual(demuxer.push(Buffer.from("a\r\nb\n")), [
      { stream: "stdout", line: "a" },
      { stream: "stdout", line: "b" }
    ])
    const long = demuxer.push(Buffer.alloc(MAX_LINE_BYTES * 2 + 10, "x"))
    assert.deepStrictEqual(
      long.map((l) => l.line.length),
      [MAX_LINE_BYTES, MAX_LINE_BYTES]
    )
    assert.deepStrictEqual(demuxer.flush(), [{ stream: "stdout", line: "x".repeat(10) }])
  })

  it("splits image references the way the pull API wants them", () => {
    assert.deepStrictEqual(splitImageReference("ghcr.io/example/app:1.2"), {
      fromImage: "ghcr.io/example/app",
      tag: "1.2"
    })
    assert.deepStrictEqual(splitImageReference("registry:5000/app"), { fromImage: "registry:5000/app", tag: "latest" })
    assert.deepStrictEqual(splitImageReference("nginx"), { fromImage: "nginx", tag: "latest" })
    assert.deepStrictEqual(splitImageReference("app@sha256:abc"), { fromImage: "app@sha256:abc", tag: undefined })
  })

  it.effect("builds the create body from a service's container block", () =>
    Effect.gen(function* () {
      const settings = yield* parse(
        `services:
  scratch:
    base_url: http://{host}:18080
    container:
      image: app:1.2
      command: [serve, --port, "8080"]
      env: { MODE: demo }
      ports: { "8080/tcp": 18080, "53/udp": "127.0.0.1:5353", "9000": "[::1]:9000" }
      volumes: ["/srv/scratch:/data:ro"]
      network_mode: bridge
`,
        "conf.yml"
      ).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map())))
      const service = settings.services.get("scratch")!
      assert.deepStrictEqual(createBody(service, service.container!), {
        Image: "app:1.2",
        Cmd: ["serve", "--port", "8080"],
        Env: ["MODE=demo"],
        Labels: { "hestia.created_for": "scratch" },
        ExposedPorts: { "8080/tcp": {}, "53/udp": {}, "9000/tcp": {} },
        HostConfig: {
          PortBindings: {
            "8080/tcp": [{ HostIp: "", HostPort: "18080" }],
            "53/udp": [{ HostIp: "127.0.0.1", HostPort: "5353" }],
            "9000/tcp": [{ HostIp: "::1", HostPort: "9000" }]
          },
          Binds: ["/srv/scratch:/data:ro"],
          NetworkMode: "bridge"
        }
      })
    })
  )
})
