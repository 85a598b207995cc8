import type { Emit } from "../events/types.js";
import type { Logger } from "../log.js";
import { Lifecycle, type Component } from "../lifecycle/component.js";
import type { NodeRecord, Registry, RegistryEvent, RegistryWatch } from "./types.js";

interface Entry {
  node: NodeRecord;
  seenAt: number;
}

const EMPTY: readonly NodeRecord[] = Object.freeze([]);

/**
 * A service with no live node for this many TTLs is forgotten (its balancer and metric series
 * dropped; calls to it answer SERVICE_NOT_FOUND again): names that come and go must not grow
 * the sidecar without bound. 10 × the 15 s default TTL: 2.5 minutes.
 */
export const FORGET_AFTER_TTLS = 10;

/**
 * The caller side's cached view of the registry, fed by one watch: calls resolve nodes here,
 * never with a registry round trip. A record not refreshed within the TTL is dropped (a sidecar
 * killed with -9 leaves within TTL + one sweep), whether or not the backend sent an event.
 */
export class RegistryView implements Component {
  readonly #lifecycle = new Lifecycle("registry view", { start: () => this.#start(), close: () => this.#close() });
  #services = new Map<string, Map<string, Entry>>();
  /** Immutable per-service snapshots, sorted by id, rebuilt only on change: the hot path reads these. */
  #snapshots = new Map<string, readonly NodeRecord[]>();
  #everSeen = new Set<string>();
  /** Since when each known service has had no live node; forgotten FORGET_AFTER_TTLS TTLs later. */
  #emptySince = new Map<string, number>();
  #listeners = new Set<(service: string) => void>();
  #forgetListeners = new Set<(service: string) => void>();
  #watch: RegistryWatch | undefined;
  #timer: NodeJS.Timeout | undefined;
  #registryDown = false;

  constructor(
    private readonly registry: Registry,
    private readonly ttl: number,
    private readonly log: Logger,
    private readonly emit: Emit = () => {},
  ) {}

  /** Watch the registry and sweep expired nodes. Idempotent; after close() it rejects with CLOSED. */
  start(): Promise<void> {
    return this.#lifecycle.start();
  }

  async #start(): Promise<void> {
    this.#watch = await this.registry.watch((e) => this.#apply(e));
    // Sweep at least twice per heartbeat (TTL/3) so expiry lags the TTL by less than one heartbeat.
    const period = Math.max(50, Math.min(1_000, Math.floor(this.ttl / 6)));
    this.#timer = setInterval(() => this.#sweep(), period);
    this.#timer.unref();
  }

  #apply(event: RegistryEvent): void {
    if (event.type === "put") {
      const { node, seenAt } = event;
      if (Date.now() - seenAt > this.ttl) return;
      let nodes = this.#services.get(node.service);
      if (!nodes) this.#services.set(node.service, (nodes = new Map()));
      const had = nodes.get(node.id);
      // Never move a node's last sighting back: a restarted watch replays records with the time
      // they were written, which may be older than what this view already knew (or granted
      // when the registry came back).
      nodes.set(node.id, { node, seenAt: Math.max(seenAt, had?.seenAt ?? 0) });
      this.#everSeen.add(node.service);
      // A heartbeat re-put of the same record changes nothing the selector cares about.
      if (!had || JSON.stringify(had.node) !== JSON.stringify(node)) {
        if (!had) {
          this.log.info("node joined", { service: node.service, node: node.id, address: node.address });
          this.emit({ type: "node-joined", service: node.service, node: node.id, address: node.address });
        }
        this.#changed(node.service);
      }
    } else {
      const nodes = this.#services.get(event.service);
      if (nodes?.delete(event.id)) {
        this.log.info("node left", { service: event.service, node: event.id });
        this.emit({ type: "node-left", service: event.service, node: event.id, reason: "deleted" });
        this.#changed(event.service);
      }
    }
  }

  #sweep(): void {
    const now = Date.now();
    // While we cannot reach the registry, or it refuses our own writes (so probably everyone's),
    // silence proves nothing about the nodes: keep serving from this view. Once
    // back, every node gets a full TTL to heartbeat again.
    if (this.registry.status() !== "connected") {
      if (!this.#registryDown) {
        this.log.warn("registry unreachable: keeping the last known nodes until it is back");
        this.emit({ type: "backend", backend: "registry", status: "unavailable" });
      }
      this.#registryDown = true;
      return;
    }
    if (this.#registryDown) {
      this.#registryDown = false;
      this.log.info("registry reachable again: nodes that do not heartbeat within the TTL will be dropped", { ttlMs: this.ttl });
      this.emit({ type: "backend", backend: "registry", status: "connected" });
      for (const nodes of this.#services.values()) for (const e of nodes.values()) e.seenAt = Math.max(e.seenAt, now);
      for (const service of this.#emptySince.keys()) this.#emptySince.set(service, now);
      return;
    }
    // A backend that deletes lapsed records itself (etcd's leases) tells us; age proves nothing there.
    if (!this.registry.expiresRecords) this.#expire(now);
    this.#forgetEmpty(now);
  }

  /** Drop records not refreshed within the TTL. */
  #expire(now: number): void {
    for (const [service, nodes] of this.#services) {
      let changed = false;
      for (const [id, e] of nodes) {
        if (now - e.seenAt > this.ttl) {
          nodes.delete(id);
          changed = true;
          this.log.warn("node expired: no heartbeat within the TTL", { service, node: id, ttlMs: this.ttl });
          this.emit({ type: "node-left", service, node: id, reason: "expired" });
        }
      }
      if (changed) this.#changed(service);
    }
  }

  /** Forget services without a node for FORGET_AFTER_TTLS TTLs. */
  #forgetEmpty(now: number): void {
    for (const [service, since] of this.#emptySince) {
      if (now - since <= this.ttl * FORGET_AFTER_TTLS) continue;
      this.#emptySince.delete(service);
      this.#services.delete(service);
      this.#snapshots.delete(service);
      this.#everSeen.delete(service);
      this.log.info("service forgotten: no node for a while", { service, goneMs: now - since });
      for (const l of this.#forgetListeners) l(service);
    }
  }

  #changed(service: string): void {
    const nodes = this.#services.get(service);
    const list = nodes ? [...nodes.values()].map((e) => e.node).sort((a, b) => (a.id < b.id ? -1 : 1)) : [];
    this.#snapshots.set(service, Object.freeze(list));
    if (list.length > 0) this.#emptySince.delete(service);
    else if (!this.#emptySince.has(service)) this.#emptySince.set(service, Date.now());
    for (const l of this.#listeners) l(service);
  }

  /** Live nodes of a service (a shared, frozen array). */
  nodes(service: string): readonly NodeRecord[] {
    return this.#snapshots.get(service) ?? EMPTY;
  }

  /** True when the service has had a node since this view started, and has not been forgotten since. */
  known(service: string): boolean {
    return this.#everSeen.has(service);
  }

  /** Every service with at least one live node, sorted. */
  services(): string[] {
    return [...this.#snapshots].filter(([, n]) => n.length > 0).map(([s]) => s).sort();
  }

  /** Called with the service name whenever its node set changes. */
  onChange(listener: (service: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Called with the service name when a service gone for FORGET_AFTER_TTLS TTLs is forgotten. */
  onForget(listener: (service: string) => void): () => void {
    this.#forgetListeners.add(listener);
    return () => this.#forgetListeners.delete(listener);
  }

  /** Stop watching (synchronously). Idempotent. */
  close(): Promise<void> {
    return this.#lifecycle.close();
  }

  #close(): void {
    this.#watch?.stop();
    if (this.#timer) clearInterval(this.#timer);
  }
}
