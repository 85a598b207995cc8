import type { NodeRecord } from "../registry/types.js";
import type { PickContext, Strategy } from "./types.js";

/**
 * Power of two choices on calls in flight: pick two distinct nodes at random and take the one
 * with fewer calls pending (ties: the first). Nearly as good as scanning every node for the
 * least loaded, without herding every caller onto the same idle node.
 */
export class LeastPending implements Strategy {
  constructor(private readonly random: () => number = Math.random) {}

  pick(nodes: readonly NodeRecord[], ctx?: PickContext): NodeRecord | undefined {
    const exclude = ctx?.exclude;
    const candidates = exclude && exclude.size > 0 ? nodes.filter((n) => !exclude.has(n.id)) : nodes;
    const n = candidates.length;
    if (n === 0) return undefined;
    if (n === 1) return candidates[0];
    const i = Math.floor(this.random() * n);
    const j = (i + 1 + Math.floor(this.random() * (n - 1))) % n;
    const a = candidates[i]!;
    const b = candidates[j]!;
    const pending = ctx?.inFlight ?? (() => 0);
    return pending(b.id) < pending(a.id) ? b : a;
  }
}
