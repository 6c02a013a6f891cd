import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import { parse } from "../../src/config/HestiaConfig.ts"
import { bootData, renderPage } from "../../src/http/DashboardRoutes.ts"

// What the dashboard knows of the config without a route: embedded in the page as an inert JSON element.

const settings = (text: string) =>
  parse(text, "conf.yml", ":memory:").pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map())))

const CONFIG = `
services:
  solo: { base_url: "http://127.0.0.1:1" }
  llama: { base_url: "http://127.0.0.1:2", command: [node, x.mjs] }
  whisper: { base_url: "http://127.0.0.1:3", command: [node, y.mjs], retry_count: 0 }
groups:
  gpu: { exclusive: true, members: [llama, whisper], persistent: [whisper] }
  all: { members: [solo, llama] }
`

describe("the dashboard's boot data", () => {
  it.effect("carries each service's kind, source and first group (persistent or not), and every group", () =>
    Effect.gen(function* () {
      const boot = bootData(yield* settings(CONFIG), true)
      assert.deepStrictEqual(
        boot.services.map(({ serviceId, kind, source, group, persistent, attemptsPerMachine }) => ({
          serviceId,
          kind,
          source,
          group,
          persistent,
          attemptsPerMachine
        })),
        [
          // In a non-exclusive group only.
          {
            serviceId: "solo",
            kind: "external",
            source: "config",
            group: "all",
            persistent: false,
            attemptsPerMachine: 3
          },
          // The first group that names it, as status says.
          {
            serviceId: "llama",
            kind: "process",
            source: "config",
            group: "gpu",
            persistent: false,
            attemptsPerMachine: 3
          },
          {
            serviceId: "whisper",
            kind: "process",
            source: "config",
            group: "gpu",
            persistent: true,
            attemptsPerMachine: 1
          }
        ]
      )
      assert.deepStrictEqual(boot.groups, [
        { name: "gpu", exclusive: true, members: ["llama", "whisper"], persistent: ["whisper"] },
        { name: "all", exclusive: false, members: ["solo", "llama"], persistent: [] }
      ])
    })
  )

  it.effect("no value can close the JSON element it is embedded in", () =>
    Effect.gen(function* () {
      const page = renderPage(
        '<script type="application/json" id="boot">"hestia:boot"</script>',
        yield* settings(
          `groups:\n  "</script><b>": { members: [s] }\nservices:\n  s: { base_url: "http://127.0.0.1:1" }\n`
        ),
        true
      )
      assert.notInclude(page, "</script><b>")
      const json = page.slice(page.indexOf(">") + 1, page.lastIndexOf("</script>"))
      assert.strictEqual(JSON.parse(json).groups[0].name, "</script><b>")
    })
  )
})
