import type { NodeRecord } from "../registry/types.js";
import type { Strategy } from "./types.js";

/**
 * A real rotation across requests (the counter lives as long as the service is watched, unlike
 * a per-request iterator), skipping excluded nodes (already tried in this call).
 */
export class RoundRobin implements Strategy {
  #next = 0;

  pick(nodes: readonly NodeRecord[], exclude?: ReadonlySet<string>): NodeRecord | undefined {
    const n = nodes.length;
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
