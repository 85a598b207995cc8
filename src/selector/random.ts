import type { NodeRecord } from "../registry/types.js";
import type { PickContext, Strategy } from "./types.js";

/** Uniformly random over the nodes not excluded. `random` is injectable for tests. */
export class RandomStrategy implements Strategy {
  constructor(private readonly random: () => number = Math.random) {}

  pick(nodes: readonly NodeRecord[], ctx?: PickContext): NodeRecord | undefined {
    const exclude = ctx?.exclude;
    const candidates = exclude && exclude.size > 0 ? nodes.filter((n) => !exclude.has(n.id)) : nodes;
    if (candidates.length === 0) return undefined;
    return candidates[Math.floor(this.random() * candidates.length)]!;
  }
}
