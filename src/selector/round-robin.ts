import type { NodeRecord } from "../registry/types.js";
import type { PickContext, Strategy } from "./types.js";

/**
 * A real rotation across requests (the counter lives as long as the service is watched, unlike
 * a per-request iterator), skipping excluded nodes (already tried in this call, or ejected).
 */
export class RoundRobin implements Strategy {
  #next = 0;

  pick(nodes: readonly NodeRecord[], ctx?: PickContext): NodeRecord | undefined {
    const n = nodes.length;
    const exclude = ctx?.exclude;
    for (let i = 0; i < n; i++) {
      const node = nodes[(this.#next + i) % n]!;
      if (!exclude?.has(node.id)) {
        this.#next = (this.#next + i + 1) % n;
        return node;
      }
    }
    return undefined;
  }
}
