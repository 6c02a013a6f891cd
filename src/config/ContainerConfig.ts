import { Schema } from "effect"
import { Flag } from "./Fields.ts"

/** Docker's container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`. */
const ContainerName = Schema.String.pipe(
  Schema.pattern(/^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/, {
    message: () => "container names use letters, digits, '_', '.' and '-' (at least two characters)"
  })
)
/** `8080/tcp`, `53/udp`, or a bare `8080` (tcp). */
const ContainerPort = Schema.String.pipe(
  Schema.pattern(/^\d{1,5}(\/(tcp|udp|sctp))?$/, { message: () => "expected a container port such as 8080/tcp" })
)
/** The host side of a port binding: `18080`, or `127.0.0.1:18080` to bind one address. */
const HostPort = Schema.Union(
  Schema.Int.pipe(Schema.between(1, 65535)),
  Schema.String.pipe(Schema.pattern(/^(([0-9.]+|\[[0-9a-fA-F:]+\]):)?\d{1,5}$/))
).annotations({ message: () => 'expected a host port such as 18080 or "127.0.0.1:18080"' })

/** `8080` → `8080/tcp`: the engine wants the protocol spelled out. */
const withProtocol = (port: string) => (port.includes("/") ? port : `${port}/tcp`)

const Ports = Schema.transform(
  Schema.Record({ key: ContainerPort, value: HostPort }),
  Schema.Record({ key: Schema.String, value: Schema.String }),
  {
    strict: true,
    decode: (ports) =>
      Object.fromEntries(Object.entries(ports).map(([port, host]) => [withProtocol(port), String(host)] as const)),
    encode: (ports) => ports
  }
)

/** `container:` as written: every key optional, so the rules below can tell a key given from a default. */
const RawBlock = Schema.Struct({
  name: Schema.optional(ContainerName),
  image: Schema.optional(Schema.NonEmptyString),
  pull: Schema.optional(Flag),
  command: Schema.optional(Schema.NonEmptyArray(Schema.String)),
  env: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  ports: Schema.optional(Ports),
  network_mode: Schema.optional(Schema.NonEmptyString),
  volumes: Schema.optional(Schema.Array(Schema.NonEmptyString)),
  remove_on_stop: Schema.optional(Flag),
  pause_on_idle: Schema.optional(Flag)
})

/** The keys that only make sense for a container Hestia creates (from `image`). */
const creationKeys = ["pull", "command", "env", "ports", "network_mode", "volumes", "remove_on_stop"] as const

const CheckedBlock = RawBlock.pipe(
  Schema.filter((block) => {
    if (block.image === undefined) {
      const given = creationKeys.find((key) => block[key] !== undefined)
      if (given !== undefined)
        return { path: [given], message: "only for a container Hestia creates: give container.image" }
    }
    if (block.remove_on_stop === true && block.pause_on_idle === true) {
      return { path: ["remove_on_stop"], message: "not with pause_on_idle: a paused container is kept" }
    }
    return true
  })
)

/** A service run as a container through a Docker Engine API: an existing one by name, or one created from `image`. */
export const ContainerSettings = Schema.Struct({
  /** The container's name on the engine: an existing container, or the name given to the one created. */
  name: Schema.String,
  /** Create the container from this image when none of that name exists. */
  image: Schema.UndefinedOr(Schema.String),
  /** Pull `image` when the engine does not have it. */
  pull: Schema.Boolean,
  /** argv replacing the image's CMD (created containers only). */
  command: Schema.UndefinedOr(Schema.Array(Schema.String)),
  env: Schema.Record({ key: Schema.String, value: Schema.String }),
  /** Container port (`8080/tcp`) → host port (`18080` or `127.0.0.1:18080`). */
  ports: Schema.Record({ key: Schema.String, value: Schema.String }),
  networkMode: Schema.UndefinedOr(Schema.String),
  /** Bind mounts, `host:container[:ro]`. */
  volumes: Schema.Array(Schema.String),
  /** Remove a container Hestia created once it is stopped. */
  removeOnStop: Schema.Boolean,
  /** Idle and API stops pause the container instead (unpaused on the next start). */
  pauseOnIdle: Schema.Boolean
})
export type ContainerSettings = typeof ContainerSettings.Type

/** `container:` of a service, decoded; an empty `name` is filled with `hestia-<service id>` once the id is known. */
export const ContainerBlock = Schema.transform(CheckedBlock, Schema.typeSchema(ContainerSettings), {
  strict: true,
  decode: (block) => ({
    name: block.name ?? "",
    image: block.image,
    pull: block.pull ?? false,
    command: block.command,
    env: block.env ?? {},
    ports: block.ports ?? {},
    networkMode: block.network_mode,
    volumes: block.volumes ?? [],
    removeOnStop: block.remove_on_stop ?? false,
    pauseOnIdle: block.pause_on_idle ?? false
  }),
  encode: ({ networkMode, removeOnStop, pauseOnIdle, ...rest }) => ({
    ...rest,
    command: rest.command as readonly [string, ...Array<string>] | undefined,
    network_mode: networkMode,
    remove_on_stop: removeOnStop,
    pause_on_idle: pauseOnIdle
  })
})

/** Where a Docker Engine API answers, spelled as DOCKER_HOST is: `unix:///path`, `tcp://host:port` or `http://...`. */
export const isEngineUrl = (value: string) => /^(unix:\/\/\/.+|(tcp|http):\/\/[^/\s]+\/?)$/.test(value)

export const EngineUrl = Schema.String.pipe(
  Schema.filter(isEngineUrl, {
    message: () => "expected unix:///path/to/docker.sock, tcp://host:port or http://host:port"
  })
)
