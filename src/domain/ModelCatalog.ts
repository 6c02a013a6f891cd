import { Either } from "effect"

// Which service serves a model: the `models:` and `model_aliases:` of every service, resolved once at start.
//
// Precedence, decided so that no name is ever ambiguous:
//   1. an exact name or an alias: at most one service claims it (two claims are a config error naming both);
//   2. otherwise the `*` glob with the most literal characters (`qwen2.5-coder:*` before `qwen*` before `*`);
//      between globs of equal length, the service first in the file, then the glob first in its list.
// The same glob in two services is a config error, as an exact name is.

/** What a service claims, as the config declares it. */
export interface ModelClaims {
  readonly id: string
  readonly models: ReadonlyArray<string>
  readonly modelAliases: Readonly<Record<string, string>>
}

/** Where a request for one model goes. */
export interface ModelRoute {
  readonly serviceId: string
  /** The name the upstream knows: an alias's target, otherwise the name asked for. */
  readonly upstreamModel: string
  readonly via: "exact" | "alias" | "glob"
}

/** A model as the lists show it: exact names and aliases (globs are not models). */
export interface ListedModel {
  readonly name: string
  readonly serviceId: string
  /** For an alias: the service's own name it is rewritten to. */
  readonly aliasOf: string | undefined
}

export interface ModelPattern {
  readonly pattern: string
  readonly serviceId: string
}

export interface ModelCatalog {
  readonly resolve: (name: string) => ModelRoute | undefined
  /** Exact names and aliases in config order (service by service): what the model lists show. */
  readonly listed: ReadonlyArray<ListedModel>
  /** The globs, in the order they are tried. */
  readonly patterns: ReadonlyArray<ModelPattern>
  /** Whether any service serves a model. */
  readonly isEmpty: boolean
}

/** A claim the catalog refuses: `path` is the key that makes it, `problem` says why (naming the other claim). */
export interface ModelClaimConflict {
  readonly path: string
  readonly problem: string
}

/** Longer names are never looked up (a glob's match is then bounded too): no model is called that. */
export const MAX_MODEL_NAME = 256

const literalLength = (pattern: string) => pattern.replaceAll("*", "").length

const globRegExp = (pattern: string) =>
  new RegExp(
    `^${pattern
      .split("*")
      .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
      .join(".*")}$`,
    "s"
  )

interface Claim {
  readonly serviceId: string
  readonly path: string
  readonly route: ModelRoute
}

interface Glob extends ModelPattern {
  readonly path: string
  readonly regexp: RegExp
  readonly literal: number
  readonly order: number
}

/** The catalog of `services`, or the first conflicting claim. */
export const makeCatalog = (services: Iterable<ModelClaims>): Either.Either<ModelCatalog, ModelClaimConflict> => {
  const exact = new Map<string, Claim>()
  const globs = new Map<string, Glob>()
  const listed: Array<ListedModel> = []
  const claimedTwice = (name: string, serviceId: string, path: string, other: Claim | Glob): ModelClaimConflict => ({
    path,
    problem:
      other.serviceId === serviceId
        ? `"${name}" is claimed twice by this service (${other.path} too)`
        : `"${name}" is claimed by service "${other.serviceId}" too (${other.path}): a model belongs to one ` +
          "service (only a glob and an exact name may overlap, and the exact name wins)"
  })
  for (const service of services) {
    const at = `services.${service.id}`
    for (const [i, name] of service.models.entries()) {
      const path = `${at}.models.${i}`
      if (name.includes("*")) {
        const other = globs.get(name)
        if (other !== undefined) {
          if (other.serviceId === service.id) continue
          return Either.left(claimedTwice(name, service.id, path, other))
        }
        globs.set(name, {
          pattern: name,
          serviceId: service.id,
          path,
          regexp: globRegExp(name),
          literal: literalLength(name),
          order: globs.size
        })
        continue
      }
      const other = exact.get(name)
      if (other !== undefined) {
        // The same name twice in one list says nothing new.
        if (other.serviceId === service.id && other.route.via === "exact") continue
        return Either.left(claimedTwice(name, service.id, path, other))
      }
      exact.set(name, {
        serviceId: service.id,
        path,
        route: { serviceId: service.id, upstreamModel: name, via: "exact" }
      })
      listed.push({ name, serviceId: service.id, aliasOf: undefined })
    }
    for (const [alias, target] of Object.entries(service.modelAliases)) {
      const path = `${at}.model_aliases.${alias}`
      if (alias.includes("*")) {
        return Either.left({ path, problem: "an alias is one name clients ask for, not a `*` glob" })
      }
      const other = exact.get(alias)
      if (other !== undefined) return Either.left(claimedTwice(alias, service.id, path, other))
      exact.set(alias, {
        serviceId: service.id,
        path,
        route: { serviceId: service.id, upstreamModel: target, via: "alias" }
      })
      listed.push({ name: alias, serviceId: service.id, aliasOf: target })
    }
  }
  const patterns = [...globs.values()].sort((a, b) => b.literal - a.literal || a.order - b.order)
  const resolve = (name: string): ModelRoute | undefined => {
    if (name === "" || name.length > MAX_MODEL_NAME) return undefined
    const claim = exact.get(name)
    if (claim !== undefined) return claim.route
    for (const glob of patterns) {
      if (glob.regexp.test(name)) return { serviceId: glob.serviceId, upstreamModel: name, via: "glob" }
    }
    return undefined
  }
  return Either.right({
    resolve,
    listed,
    patterns: patterns.map(({ pattern, serviceId }) => ({ pattern, serviceId })),
    isEmpty: exact.size === 0 && globs.size === 0
  })
}

/** What an error lists as the known models: at most `limit` names, then how many more; the globs after them. */
export const knownModels = (catalog: ModelCatalog, limit = 50) => {
  const names = catalog.listed.slice(0, limit).map((model) => model.name)
  const more = catalog.listed.length - names.length
  const patterns = catalog.patterns.slice(0, limit).map((glob) => glob.pattern)
  return { names, more, patterns }
}
