import type { z } from "zod";

/**
 * The key tree of the config schema, derived from the zod schema itself so that
 * environment names and "expected one of" hints never drift from the schema.
 */
export type KeyNode =
  | { kind: "object"; children: Map<string, KeyNode> }
  | { kind: "record" }
  | { kind: "leaf"; schema: z.ZodType; isArray: boolean };

/** The part of zod's internal definition this walker reads. */
interface Def {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
}

function defOf(schema: z.ZodType): Def {
  return (schema as unknown as { _zod: { def: Def } })._zod.def;
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  for (;;) {
    const def = defOf(s);
    if ((def.type === "default" || def.type === "optional" || def.type === "nullable" || def.type === "prefault") && def.innerType) {
      s = def.innerType;
    } else if (def.type === "pipe" && def.in) {
      const inner = defOf(def.in);
      if (inner.type === "object") s = def.in;
      else return s;
    } else return s;
  }
}

export function keyTree(schema: z.ZodType): KeyNode {
  const s = unwrap(schema);
  const def = defOf(s);
  if (def.type === "object" && def.shape) {
    const children = new Map<string, KeyNode>();
    for (const [key, child] of Object.entries(def.shape)) children.set(key, keyTree(child));
    return { kind: "object", children };
  }
  if (def.type === "record") return { kind: "record" };
  return { kind: "leaf", schema: s, isArray: def.type === "array" };
}

/** The node at a path; "entry" for a key inside a map (e.g. service.metadata.zone); undefined when not a key. */
export function nodeAt(tree: KeyNode, path: readonly string[]): KeyNode | "entry" | undefined {
  let node: KeyNode | undefined = tree;
  for (const seg of path) {
    if (!node) return undefined;
    if (node.kind === "record") return "entry";
    if (node.kind !== "object") return undefined;
    node = node.children.get(seg);
  }
  return node;
}

const snake = (key: string) => key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase();

/**
 * Maps environment variable names to config paths: `SIDECAR_APP_PORT` → `app.port`,
 * `SIDECAR_APP_HEALTH_FAILURE_THRESHOLD` → `app.health.failureThreshold`, and for maps
 * `SIDECAR_SERVICE_METADATA_ZONE` → `service.metadata.zone`.
 */
export function envPath(tree: KeyNode, envName: string, prefix = "SIDECAR_"): string[] | undefined {
  if (!envName.startsWith(prefix)) return undefined;
  const rest = envName.slice(prefix.length);
  const walk = (node: KeyNode, remaining: string, path: string[]): string[] | undefined => {
    if (node.kind === "leaf") return remaining === "" ? path : undefined;
    if (node.kind === "record") return remaining === "" ? undefined : [...path, remaining.toLowerCase()];
    for (const [key, child] of node.children) {
      const name = snake(key);
      if (remaining === name) {
        const found = walk(child, "", [...path, key]);
        if (found) return found;
      } else if (remaining.startsWith(name + "_")) {
        const found = walk(child, remaining.slice(name.length + 1), [...path, key]);
        if (found) return found;
      }
    }
    return undefined;
  };
  return walk(tree, rest, []);
}
