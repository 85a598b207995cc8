import type { NodeRecord } from "../registry/types.js";

/** What a strategy may look at besides the node list. */
export interface PickContext {
  /** Node ids not to pick (already tried in this call, or ejected). */
  exclude?: ReadonlySet<string> | undefined;
  /** The request's key for sticky strategies (`hash`); absent: the strategy falls back to a rotation. */
  key?: string | undefined;
  /** Calls in flight to a node, for `least_pending`. */
  inFlight?: (nodeId: string) => number;
}

/** A load-balancing strategy over one service's live nodes. State (e.g. a rotation) lives in the instance. */
export interface Strategy {
  /** A node not in `ctx.exclude`, or undefined when every node is excluded. */
  pick(nodes: readonly NodeRecord[], ctx?: PickContext): NodeRecord | undefined;
}
