import type { Clock } from "../clock.js";

export interface OutlierOptions {
  /** Connection errors or 5xx in a row that eject a node. Default 3. */
  consecutiveFailures: number;
  /** First ejection's length (ms); each repeat ejection doubles it. Default 10 s. */
  ejectFor: number;
  /** Longest ejection (ms). Default 5 min. */
  maxEjectFor: number;
}

interface NodeHealth {
  failures: number;
  /** Ejections so far; reset after a success that follows a served ejection. */
  ejections: number;
  ejectedUntil: number;
}

export interface OutlierState {
  consecutiveFailures: number;
  ejected: boolean;
  ejectedUntil?: string;
  ejections: number;
}

/**
 * Outlier ejection for one service's nodes: after `consecutiveFailures` failures in a row a node
 * is taken out of the rotation for `ejectFor`, doubling on each repeat, capped at `maxEjectFor`.
 * The last node standing is never ejected: an ejection that would leave no node is skipped.
 */
export class OutlierDetector {
  #nodes = new Map<string, NodeHealth>();

  constructor(
    private readonly options: OutlierOptions,
    private readonly clock: Clock,
    private readonly onEject?: (nodeId: string, forMs: number, failures: number) => void,
  ) {}

  #get(id: string): NodeHealth {
    let h = this.#nodes.get(id);
    if (!h) this.#nodes.set(id, (h = { failures: 0, ejections: 0, ejectedUntil: 0 }));
    return h;
  }

  isEjected(id: string): boolean {
    const h = this.#nodes.get(id);
    return h !== undefined && h.ejectedUntil > this.clock.now();
  }

  success(id: string): void {
    const h = this.#nodes.get(id);
    if (!h) return;
    h.failures = 0;
    if (h.ejectedUntil <= this.clock.now()) h.ejections = 0;
  }

  /** Record a failure; `liveIds` are the service's current nodes (to never eject the last one). */
  failure(id: string, liveIds: readonly string[]): void {
    const h = this.#get(id);
    h.failures += 1;
    if (h.failures < this.options.consecutiveFailures || this.isEjected(id)) return;
    const others = liveIds.filter((n) => n !== id && !this.isEjected(n));
    if (others.length === 0) return;
    const forMs = Math.min(this.options.maxEjectFor, this.options.ejectFor * 2 ** h.ejections);
    h.ejections += 1;
    h.ejectedUntil = this.clock.now() + forMs;
    h.failures = 0;
    this.onEject?.(id, forMs, this.options.consecutiveFailures);
  }

  /** Ejected node ids among `liveIds`, or an empty set when that would be all of them. */
  ejected(liveIds: readonly string[]): ReadonlySet<string> {
    const out = new Set<string>();
    for (const id of liveIds) if (this.isEjected(id)) out.add(id);
    return out.size === liveIds.length ? new Set() : out;
  }

  state(id: string): OutlierState {
    const h = this.#nodes.get(id);
    if (!h) return { consecutiveFailures: 0, ejected: false, ejections: 0 };
    const ejected = this.isEjected(id);
    return {
      consecutiveFailures: h.failures,
      ejected,
      ...(ejected ? { ejectedUntil: new Date(h.ejectedUntil).toISOString() } : {}),
      ejections: h.ejections,
    };
  }

  /** Forget nodes that left the registry. */
  retain(liveIds: readonly string[]): void {
    const keep = new Set(liveIds);
    for (const id of this.#nodes.keys()) if (!keep.has(id)) this.#nodes.delete(id);
  }
}
