import type { Config } from "../config/index.js";
import type { NodeRecord } from "../registry/types.js";
import { RoundRobin } from "./round-robin.js";
import type { Strategy } from "./types.js";

export type { Strategy } from "./types.js";

/** Strategy factories keyed by `selector.strategy`. */
export const STRATEGIES: Record<Config["selector"]["strategy"], () => Strategy> = {
  round_robin: () => new RoundRobin(),
};

/** One strategy instance per service, so each service keeps its own rotation. */
export class Selector {
  #perService = new Map<string, Strategy>();

  constructor(private readonly strategy: Config["selector"]["strategy"]) {
    if (!STRATEGIES[strategy]) throw new Error(`unknown selector strategy '${strategy}' (known: ${Object.keys(STRATEGIES).join(", ")})`);
  }

  pick(service: string, nodes: readonly NodeRecord[], exclude?: ReadonlySet<string>): NodeRecord | undefined {
    let s = this.#perService.get(service);
    if (!s) this.#perService.set(service, (s = STRATEGIES[this.strategy]()));
    return s.pick(nodes, exclude);
  }
}
