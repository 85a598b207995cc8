import type { Clock } from "../clock.js";
import type { Logger } from "../log.js";
import type { NodeRecord } from "../registry/types.js";
import { RetryBudget } from "./budget.js";
import { HashStrategy } from "./hash.js";
import { LeastPending } from "./least-pending.js";
import { OutlierDetector, type OutlierState } from "./outlier.js";
import { RandomStrategy } from "./random.js";
import { RoundRobin } from "./round-robin.js";
import type { Strategy } from "./types.js";

export type { PickContext, Strategy } from "./types.js";

/** Told of each ejection: the service, the node, for how long, after how many failures in a row. */
export type OnEject = (service: string, node: string, forMs: number, failures: number) => void;

export type StrategyName = "round_robin" | "random" | "least_pending" | "hash";

/** Strategy factories keyed by `selector.strategy`. */
export const STRATEGIES: Record<StrategyName, () => Strategy> = {
  round_robin: () => new RoundRobin(),
  random: () => new RandomStrategy(),
  least_pending: () => new LeastPending(),
  hash: () => new HashStrategy(),
};

export interface SelectorOptions {
  strategy: StrategyName;
  /** Header whose value is the key of the `hash` strategy. */
  hashHeader: string;
  consecutiveFailures: number;
  ejectFor: number;
  maxEjectFor: number;
  retryBudget: number;
  minRetriesPerSecond: number;
  /** Per-service overrides. */
  services: Readonly<Record<string, { strategy?: StrategyName | undefined; hashHeader?: string | undefined }>>;
}

/** How a call to a node ended, for ejection: `neutral` neither counts for nor against the node. */
export type Outcome = "success" | "failure" | "neutral";

export interface NodeState extends OutlierState {
  inFlight: number;
}

/** The balancing state of one service: its strategy, calls in flight, ejections, retry budget. */
export class ServiceBalancer {
  readonly hashHeader: string;
  readonly budget: RetryBudget;
  readonly #strategy: Strategy;
  readonly #outliers: OutlierDetector;
  readonly #inFlight = new Map<string, number>();
  readonly #pending = (id: string) => this.#inFlight.get(id) ?? 0;
  /** Each failing node's last failure, for the ejection's log line (one entry per node, at most 1024; dropped on success and at ejection). */
  readonly #lastFailure = new Map<string, string>();

  constructor(readonly service: string, o: SelectorOptions, clock: Clock, log: Logger, onEject?: OnEject) {
    const own = o.services[service];
    const name = own?.strategy ?? o.strategy;
    const factory = STRATEGIES[name];
    if (!factory) throw new Error(`unknown selector strategy '${name}' (known: ${Object.keys(STRATEGIES).join(", ")})`);
    this.#strategy = factory();
    this.hashHeader = (own?.hashHeader ?? o.hashHeader).toLowerCase();
    this.budget = new RetryBudget({ ratio: o.retryBudget, minPerSecond: o.minRetriesPerSecond, window: 10_000 }, clock);
    this.#outliers = new OutlierDetector(
      { consecutiveFailures: o.consecutiveFailures, ejectFor: o.ejectFor, maxEjectFor: o.maxEjectFor },
      clock,
      (node, forMs, failures) => {
        log.warn("node ejected", { service, node, forMs, failures, lastFailure: this.#lastFailure.get(node) });
        this.#lastFailure.delete(node);
        onEject?.(service, node, forMs, failures);
      },
    );
  }

  /** A node not tried yet in this call and not ejected (unless every node is ejected). */
  pick(nodes: readonly NodeRecord[], tried: ReadonlySet<string>, key?: string): NodeRecord | undefined {
    const ejected = this.#outliers.ejected(nodes.map((n) => n.id));
    let exclude: ReadonlySet<string> = tried;
    if (ejected.size > 0) {
      const both = new Set(tried);
      for (const id of ejected) both.add(id);
      exclude = both;
    }
    return this.#strategy.pick(nodes, { exclude, key, inFlight: this.#pending }) ?? (ejected.size > 0 ? this.#strategy.pick(nodes, { exclude: tried, key, inFlight: this.#pending }) : undefined);
  }

  start(nodeId: string): void {
    this.#inFlight.set(nodeId, this.#pending(nodeId) + 1);
  }

  /** A call to `nodeId` ended; `why` says what failed (shown when the node is ejected). */
  end(nodeId: string, outcome: Outcome, nodes: readonly NodeRecord[], why?: string): void {
    const n = this.#pending(nodeId) - 1;
    if (n > 0) this.#inFlight.set(nodeId, n);
    else this.#inFlight.delete(nodeId);
    if (outcome === "success") {
      this.#outliers.success(nodeId);
      if (this.#lastFailure.size > 0) this.#lastFailure.delete(nodeId);
    } else if (outcome === "failure") {
      if (why !== undefined) {
        // Bounded: nodes come and go (a restarted node has a new id); the oldest entry goes first.
        if (this.#lastFailure.size >= 1024 && !this.#lastFailure.has(nodeId)) this.#lastFailure.delete(this.#lastFailure.keys().next().value!);
        this.#lastFailure.set(nodeId, why);
      }
      this.#outliers.failure(nodeId, nodes.map((x) => x.id));
    }
  }

  state(nodeId: string): NodeState {
    return { inFlight: this.#pending(nodeId), ...this.#outliers.state(nodeId) };
  }

  /** Forget per-node state of nodes that left. */
  retain(nodes: readonly NodeRecord[]): void {
    this.#outliers.retain(nodes.map((n) => n.id));
  }
}

/**
 * One ServiceBalancer per service, created on the first call to a service the registry knows
 * (the caller checks), and forgotten when the registry view forgets the service: a name no
 * registry has seen never gets state here.
 */
export class Selector {
  #services = new Map<string, ServiceBalancer>();

  constructor(
    private readonly options: SelectorOptions,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly onEject?: OnEject,
  ) {
    for (const [service, o] of [["*", { strategy: options.strategy }] as const, ...Object.entries(options.services)]) {
      const name = o.strategy;
      if (name !== undefined && !STRATEGIES[name]) throw new Error(`unknown selector strategy '${name}' for ${service} (known: ${Object.keys(STRATEGIES).join(", ")})`);
    }
  }

  /** The header keying the `hash` strategy for a service, without creating its balancer. */
  hashHeader(service: string): string {
    return this.#services.get(service)?.hashHeader ?? (this.options.services[service]?.hashHeader ?? this.options.hashHeader).toLowerCase();
  }

  /** Balancers held (one per service called and not forgotten). */
  get size(): number {
    return this.#services.size;
  }

  /** Drop a service's balancer: it has been gone from the registry a while. */
  forget(service: string): void {
    this.#services.delete(service);
  }

  service(name: string): ServiceBalancer {
    let s = this.#services.get(name);
    if (!s) this.#services.set(name, (s = new ServiceBalancer(name, this.options, this.clock, this.log, this.onEject)));
    return s;
  }

  /** Forget per-node state (ejections) of nodes that left a service. */
  prune(service: string, nodes: readonly NodeRecord[]): void {
    this.#services.get(service)?.retain(nodes);
  }

  /** Per-node state for GET /registry/{service}; undefined for a service never called. */
  state(service: string, nodeId: string): NodeState | undefined {
    return this.#services.get(service)?.state(nodeId);
  }
}
