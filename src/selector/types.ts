import type { NodeRecord } from "../registry/types.js";

/** A load-balancing strategy over one service's live nodes. State (e.g. a rotation) lives in the instance. */
export interface Strategy {
  /** A node not in `exclude`, or undefined when every node is excluded. */
  pick(nodes: readonly NodeRecord[], exclude: ReadonlySet<string> | undefined): NodeRecord | undefined;
}
