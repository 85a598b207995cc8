import type { Emit } from "../events/types.js";
import type { Logger } from "../log.js";
import { Lifecycle, type Component } from "../lifecycle/component.js";
import type { NodeRecord, Registry, RegistryEvent, RegistryWatch } from "./types.js";

interface Entry {
  node: NodeRecord;
  seenAt: number;
}

/** A service this view watches (scope "called"). */
interface Watched {
  /** Set once the watch is open. */
  watch: RegistryWatch | undefined;
  /** The initial listing while it is not in yet; undefined after. */
  ready: Promise<void> | undefined;
  /** When it was last used, as of the last sweep; `used` marks a use since (one store on the hot path). */
  usedAt: number;
  used: boolean;
  /** calls.services: watched from the start and never dropped for idleness. */
  pinned: boolean;
}

export interface RegistryViewOptions {
  ttl: number;
  /**
   * `called` (the default): each service is watched from its first use (a call, a lookup) until
   * it goes unused for `idleWatch`, so a sidecar receives the heartbeats of the services it calls
   * only. `all`: one watch of the whole registry (the local broker fans a message out to every
   * subscribed node of every service, so it must know them all).
   */
  scope?: "called" | "all";
  /** registry.idleWatch: a watched service unused this long is no longer watched. Default 10 minutes. */
  idleWatch?: number;
  /** calls.services: watched from the start (their first call waits for nothing) and never dropped for idleness. */
  pinned?: readonly string[];
  /** At most this many services watched at once; one more drops the least recently used. Default MAX_WATCHED. */
  maxWatched?: number;
}

/** Services a view watches at most at once (scope "called"): callers can name any service, and each watch costs a consumer on the registry. */
export const MAX_WATCHED = 1024;
export const DEFAULT_IDLE_WATCH = 10 * 60_000;

const EMPTY: readonly NodeRecord[] = Object.freeze([]);

/**
 * A service with no live node for this many TTLs is forgotten (its balancer and metric series
 * dropped; calls to it answer SERVICE_NOT_FOUND again): names that come and go must not grow
 * the sidecar without bound. 10 × the 15 s default TTL: 2.5 minutes.
 */
export const FORGET_AFTER_TTLS = 10;

/**
 * The caller side's cached view of the registry, fed by watches: calls resolve nodes here, never
 * with a registry round trip. With scope `called`, a service's first use opens a watch of that
 * service (`want`: the first call waits for its initial listing), kept while it is used. A record
 * not refreshed within the TTL is dropped (a sidecar killed with -9 leaves within TTL + one
 * sweep), whether or not the backend sent an event.
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
  /** scope "all": the one watch. */
  #watch: RegistryWatch | undefined;
  /** scope "called": the watched services. */
  #watched = new Map<string, Watched>();
  #timer: NodeJS.Timeout | undefined;
  #registryDown = false;
  #closed = false;
  private readonly ttl: number;
  readonly scope: "called" | "all";
  readonly idleWatch: number;
  readonly #pinned: ReadonlySet<string>;
  readonly #maxWatched: number;

  constructor(
    private readonly registry: Registry,
    options: RegistryViewOptions,
    private readonly log: Logger,
    private readonly emit: Emit = () => {},
  ) {
    this.ttl = options.ttl;
    this.scope = options.scope ?? "called";
    this.idleWatch = options.idleWatch ?? DEFAULT_IDLE_WATCH;
    this.#pinned = new Set(options.pinned ?? []);
    this.#maxWatched = Math.max(options.maxWatched ?? MAX_WATCHED, this.#pinned.size + 1);
  }

  /** Watch the registry (everything, or the pinned services) and sweep expired nodes. Idempotent; after close() it rejects with CLOSED. */
  start(): Promise<void> {
    return this.#lifecycle.start();
  }

  async #start(): Promise<void> {
    if (this.scope === "all") this.#watch = await this.registry.watch((e) => this.#apply(e));
    else await Promise.all([...this.#pinned].map((service) => this.#open(service, true).ready));
    // Sweep at least twice per heartbeat (TTL/3) so expiry lags the TTL by less than one heartbeat.
    const period = Math.max(50, Math.min(1_000, Math.floor(this.ttl / 6)));
    this.#timer = setInterval(() => this.#sweep(), period);
    this.#timer.unref();
  }

  /**
   * Use `service`: undefined when its nodes are in this view already (the hot path: one map
   * lookup), else a promise settling once its initial listing is in (rejecting when the registry
   * refused the watch). Callers race it with their deadline.
   */
  want(service: string): Promise<void> | undefined {
    if (this.scope === "all") return undefined;
    const w = this.#watched.get(service);
    if (w !== undefined) {
      w.used = true;
      return w.ready;
    }
    return this.#open(service, false).ready;
  }

  #open(service: string, pinned: boolean): Watched {
    if (this.#closed) {
      const ready = Promise.reject(new Error("the registry view is closed"));
      ready.catch(() => undefined);
      return { watch: undefined, ready, usedAt: 0, used: false, pinned };
    }
    if (this.#watched.size >= this.#maxWatched) this.#evict();
    const w: Watched = { watch: undefined, ready: undefined, usedAt: Date.now(), used: false, pinned };
    this.#watched.set(service, w);
    const current = () => this.#watched.get(service) === w;
    w.ready = this.registry.watch((e) => current() && this.#apply(e), { service }).then(
      (watch) => {
        if (!current()) return watch.stop(); // dropped while it opened
        w.watch = watch;
        w.ready = undefined;
        this.log.debug("watching service", { service, nodes: this.nodes(service).length, pinned });
        // A name with no node yet is forgotten (and its watch closed) like a service whose nodes all left.
        if (this.nodes(service).length === 0 && !this.#emptySince.has(service)) this.#emptySince.set(service, Date.now());
      },
      (err: Error) => {
        if (current()) this.#watched.delete(service);
        throw err;
      },
    );
    w.ready.catch(() => undefined); // whoever awaits it sees the error; nobody else must crash on it
    return w;
  }

  /**
   * Make room for one more watch: drop the least recently used service that has no node (names
   * nobody registered go first: a flood of them must not unwatch the services in use), else the
   * least recently used one; never a pinned one.
   */
  #evict(): void {
    let oldest: [string, number] | undefined;
    let oldestEmpty: [string, number] | undefined;
    for (const [service, w] of this.#watched) {
      if (w.pinned) continue;
      const at = w.used ? Infinity : w.usedAt;
      if (!oldest || at < oldest[1]) oldest = [service, at];
      if (this.nodes(service).length === 0 && (!oldestEmpty || at < oldestEmpty[1])) oldestEmpty = [service, at];
    }
    const victim = oldestEmpty ?? oldest;
    if (victim) this.#drop(victim[0], `more than ${this.#maxWatched} services watched: the least recently used one${oldestEmpty ? " without a node" : ""} is dropped`);
  }

  /** Stop watching `service` and forget it (its balancer and metric series go with it). */
  #drop(service: string, reason: string): void {
    const w = this.#watched.get(service);
    const had = this.nodes(service).length > 0 || this.known(service);
    this.#watched.delete(service);
    w?.watch?.stop();
    this.#forget(service);
    // A name nobody registered (a typo, a flood of made-up names) is not worth a line each.
    this.log[had ? "info" : "debug"]("stopped watching service", { service, reason });
  }

  #forget(service: string): void {
    this.#emptySince.delete(service);
    this.#services.delete(service);
    this.#snapshots.delete(service);
    this.#everSeen.delete(service);
    for (const l of this.#forgetListeners) l(service);
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
    this.#dropIdle(now);
  }

  /** Stop watching services unused for idleWatch (not the pinned ones, nor one still listing). */
  #dropIdle(now: number): void {
    for (const [service, w] of this.#watched) {
      if (w.used) {
        w.used = false;
        w.usedAt = now;
      } else if (!w.pinned && w.ready === undefined && now - w.usedAt > this.idleWatch) {
        this.#drop(service, `unused for ${Math.round((now - w.usedAt) / 1000)} s (registry.idleWatch)`);
      }
    }
  }

  /** Drop records not refreshed within the TTL (not those of a watch being restored: it may have missed their heartbeats). */
  #expire(now: number): void {
    if (this.#watch?.listening?.() === false) return;
    for (const [service, nodes] of this.#services) {
      if (this.#watched.get(service)?.watch?.listening?.() === false) continue;
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

  /** Forget services without a node for FORGET_AFTER_TTLS TTLs (and stop watching them, unless pinned). */
  #forgetEmpty(now: number): void {
    for (const [service, since] of this.#emptySince) {
      if (now - since <= this.ttl * FORGET_AFTER_TTLS) continue;
      this.log.info("service forgotten: no node for a while", { service, goneMs: now - since });
      const w = this.#watched.get(service);
      if (w && !w.pinned) {
        this.#watched.delete(service);
        w.watch?.stop();
      }
      this.#forget(service);
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

  /** Every service in this view with at least one live node, sorted: with scope "called", the services watched. */
  services(): string[] {
    return [...this.#snapshots].filter(([, n]) => n.length > 0).map(([s]) => s).sort();
  }

  /** The services watched (scope "called"), sorted, with how long since each was last used (as of the last sweep). */
  watched(): { service: string; pinned: boolean; idleMs: number; listing: boolean }[] {
    const now = Date.now();
    return [...this.#watched]
      .map(([service, w]) => ({ service, pinned: w.pinned, idleMs: w.used ? 0 : Math.max(0, now - w.usedAt), listing: w.ready !== undefined }))
      .sort((a, b) => (a.service < b.service ? -1 : 1));
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
    this.#closed = true;
    this.#watch?.stop();
    for (const w of this.#watched.values()) w.watch?.stop();
    this.#watched.clear();
    if (this.#timer) clearInterval(this.#timer);
  }
}
