import type { NodeRecord } from "../registry/types.js";
import { RoundRobin } from "./round-robin.js";
import type { PickContext, Strategy } from "./types.js";

/** Points per node on the ring: enough for an even spread over a handful of nodes. */
const VNODES = 160;

/** FNV-1a over UTF-16 code units, then murmur3's finaliser so that similar keys spread apart. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

interface Ring {
  points: Uint32Array;
  owners: NodeRecord[];
}

function buildRing(nodes: readonly NodeRecord[]): Ring {
  const entries: { p: number; node: NodeRecord }[] = [];
  for (const node of nodes) for (let v = 0; v < VNODES; v++) entries.push({ p: hash32(`${node.id}#${v}`), node });
  entries.sort((a, b) => a.p - b.p);
  return { points: Uint32Array.from(entries.map((e) => e.p)), owners: entries.map((e) => e.node) };
}

/**
 * Consistent hashing on a request key (sticky calls): the same key goes to the same node while
 * it lives, and a node joining or leaving moves only about 1/n of the keys. Points are keyed by
 * node id, so the ring does not depend on the order of the list. A call without a key falls back
 * to a rotation.
 */
export class HashStrategy implements Strategy {
  /** Rings per node list: the registry view hands out the same frozen array until the set changes. */
  #rings = new WeakMap<readonly NodeRecord[], Ring>();
  #fallback = new RoundRobin();

  pick(nodes: readonly NodeRecord[], ctx?: PickContext): NodeRecord | undefined {
    if (ctx?.key === undefined) return this.#fallback.pick(nodes, ctx);
    if (nodes.length === 0) return undefined;
    let ring = this.#rings.get(nodes);
    if (!ring) this.#rings.set(nodes, (ring = buildRing(nodes)));
    const h = hash32(ctx.key);
    // First point at or after h (binary search), then clockwise past excluded nodes.
    let lo = 0;
    let hi = ring.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ring.points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    const total = ring.points.length;
    for (let i = 0; i < total; i++) {
      const node = ring.owners[(lo + i) % total]!;
      if (!ctx.exclude?.has(node.id)) return node;
    }
    return undefined;
  }
}
