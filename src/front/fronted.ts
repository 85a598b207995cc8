import { SidecarError } from "../errors.js";
import { checkOnce, HealthChecker } from "../health/checker.js";
import { AppClient } from "../inbound/app-client.js";
import { InboundGate } from "../inbound/gate.js";
import type { FrontedTargets, InboundTarget } from "../inbound/server.js";
import type { Logger } from "../log.js";
import { Lifecycle, type Component } from "../lifecycle/component.js";
import type { NodeRecord, Registry } from "../registry/types.js";
import { Registrar } from "../registry/registrar.js";
import { MAX_FRONTED_NODES, type FrontedSpec } from "./spec.js";

/** How long a fronted app may fail its health check (or not answer at all) before it is forgotten, without `?ttl=`. */
export const DEFAULT_FORGET_MS = 60_000;

export interface FrontedOptions {
  registry: Registry;
  /** registry.ttl: heartbeats every TTL/3, like the own node's. */
  ttl: number;
  /** This sidecar's advertised inbound address: every fronted node's record points here. */
  address: () => string;
  /** The mesh protocol version this sidecar's inbound listener speaks (fronted records say so too); undefined: HTTP/1.1 only. */
  mesh?: number | undefined;
  /** The own node's id, which no app may take. */
  ownNode: () => string | undefined;
  /** app.health's interval, timeout and thresholds; the check itself is a TCP connect. */
  health: { interval: number; timeout: number; failureThreshold: number; successThreshold: number };
  maxConcurrency?: number | undefined;
  log: Logger;
}

interface Fronted extends InboundTarget {
  spec: FrontedSpec;
  record: NodeRecord;
  checker: HealthChecker;
  registrar: Registrar;
  forgetAfter: number;
  forgetTimer: NodeJS.Timeout | undefined;
  transitions: Promise<void>;
}

/**
 * Apps registered through POST /registry (micro's way: one sidecar, several apps). Each node is
 * written to the registry with this sidecar's inbound address, so peers call this sidecar as
 * usual and it forwards to the app's own host:port, which stays here. Each has its own TCP health
 * check, heartbeat and gate, like the own app; it is deregistered while failing and forgotten
 * after failing for its `?ttl=` (DEFAULT_FORGET_MS), on DELETE, and at shutdown.
 */
export class FrontedApps implements FrontedTargets, Component {
  readonly #lifecycle = new Lifecycle("fronted apps", {
    close: async () => {
      await this.stop();
      for (const f of this.#nodes.values()) void f.app.close();
      this.#nodes.clear();
    },
  });
  readonly #nodes = new Map<string, Fronted>();
  #stopped = false;
  #stopping: Promise<void> | undefined;

  constructor(private readonly o: FrontedOptions) {}

  get size(): number {
    return this.#nodes.size;
  }

  find(service: string, node: string | undefined): InboundTarget | undefined {
    if (this.#nodes.size === 0) return undefined;
    if (node !== undefined) {
      const f = this.#nodes.get(node);
      return f && f.service === service ? f : undefined;
    }
    for (const f of this.#nodes.values()) if (f.service === service && f.checker.state === "passing") return f;
    return undefined;
  }

  /** What GET /status shows: each fronted node with its app's address and health. */
  list(): Record<string, unknown>[] {
    return [...this.#nodes.values()].map((f) => ({ id: f.spec.id, service: f.service, app: `${f.spec.host}:${f.spec.port}`, protocol: f.protocol, health: f.checker.state, registered: f.registrar.registered }));
  }

  /** Front these nodes (a node already fronted is updated); resolves once each passed a first check and is registered, or is waiting for its app. */
  async add(specs: FrontedSpec[], forgetAfter = DEFAULT_FORGET_MS): Promise<{ id: string; state: "registered" | "waiting" }[]> {
    if (this.#stopped) throw new SidecarError("SHUTTING_DOWN", "the sidecar is shutting down");
    const added = specs.filter((s) => !this.#nodes.has(s.id)).length;
    if (this.#nodes.size + added > MAX_FRONTED_NODES) {
      throw new SidecarError("INVALID_REQUEST", `this sidecar fronts ${this.#nodes.size} nodes and takes at most ${MAX_FRONTED_NODES}; ${added} more would be too many`);
    }
    for (const s of specs) this.#checkId(s);
    await this.#checkTaken(specs.filter((s) => !this.#nodes.has(s.id)));
    return Promise.all(specs.map((s) => this.#add(s, forgetAfter)));
  }

  /**
   * A new node's id may not be one another sidecar registered, in any service: one listing of the
   * registry per request that adds nodes (this sidecar watches only what it calls; micro apps
   * re-registering a node they have do not pay it).
   */
  async #checkTaken(specs: FrontedSpec[]): Promise<void> {
    if (specs.length === 0) return;
    let nodes: NodeRecord[];
    try {
      nodes = await this.o.registry.list();
    } catch (err) {
      throw new SidecarError("REGISTRY_UNAVAILABLE", `cannot list the registry to check the node ids: ${(err as Error).message}`, { cause: err });
    }
    const taken = new Map(nodes.map((n) => [n.id, n]));
    for (const s of specs) {
      const other = taken.get(s.id);
      if (other) throw new SidecarError("INVALID_REQUEST", `node id '${s.id}' is already registered (service '${other.service}' at ${other.address}); pick another id`);
    }
  }

  /** A node id may not be the own node's, or a node of another service here. */
  #checkId(s: FrontedSpec): void {
    const mine = this.#nodes.get(s.id);
    if (s.id === this.o.ownNode()) throw new SidecarError("INVALID_REQUEST", `node id '${s.id}' is this sidecar's own node`);
    if (mine && mine.service !== s.service) throw new SidecarError("INVALID_REQUEST", `node id '${s.id}' is already fronted here for service '${mine.service}'`);
  }

  async #add(spec: FrontedSpec, forgetAfter: number): Promise<{ id: string; state: "registered" | "waiting" }> {
    const old = this.#nodes.get(spec.id);
    if (old && old.spec.host === spec.host && old.spec.port === spec.port) {
      // micro apps may register again (a re-POST): keep the node, take the new metadata, version, protocol and ttl.
      Object.assign(old.record, { version: spec.version, metadata: spec.metadata });
      if (spec.protocol === "jsonrpc") old.record.protocol = "jsonrpc";
      else delete old.record.protocol;
      old.spec = spec;
      old.protocol = spec.protocol;
      old.forgetAfter = forgetAfter;
      if (old.checker.state === "passing") {
        old.registrar.refresh();
        return { id: spec.id, state: "registered" };
      }
      return { id: spec.id, state: "waiting" };
    }
    if (old) await this.#forget(old, "registered again with another address");
    const log = this.o.log.child({ fronted: spec.id });
    const checker = new HealthChecker({ host: spec.host, port: spec.port, ...this.o.health }, log);
    const record: NodeRecord = {
      id: spec.id,
      service: spec.service,
      version: spec.version,
      address: this.o.address(),
      transport: "http",
      metadata: spec.metadata,
      endpoints: [],
      subscriptions: [],
      registeredAt: new Date().toISOString(),
      fronted: true,
      ...(this.o.mesh ? { mesh: this.o.mesh } : {}),
      ...(spec.protocol === "jsonrpc" ? { protocol: "jsonrpc" as const } : {}),
    };
    const f: Fronted = {
      service: spec.service,
      protocol: spec.protocol,
      app: new AppClient({ service: spec.service, host: spec.host, port: spec.port }),
      gate: new InboundGate({ service: spec.service, accepting: () => checker.state === "passing", maxConcurrency: this.o.maxConcurrency }),
      spec,
      record,
      checker,
      registrar: new Registrar(this.o.registry, record, this.o.ttl, log),
      forgetAfter,
      forgetTimer: undefined,
      transitions: Promise.resolve(),
    };
    this.#nodes.set(spec.id, f);
    checker.on("change", (state, reason) => {
      f.transitions = f.transitions.then(() => this.#onHealth(f, state === "passing", reason)).catch((err: unknown) => {
        log.error("fronted app state change failed", { error: (err as Error).message });
      });
    });
    // One check before answering, so an app that already listens is callable when POST returns.
    const up = await checkOnce({ host: spec.host, port: spec.port, timeout: this.o.health.timeout }).then(
      () => true,
      () => false,
    );
    if (this.#nodes.get(spec.id) !== f) return { id: spec.id, state: "waiting" };
    void checker.start();
    if (!up) {
      // micro's example servers register before they listen: wait for the app, up to its ttl.
      this.#scheduleForget(f, "its app never passed a health check");
      return { id: spec.id, state: "waiting" };
    }
    await f.registrar.up();
    return { id: spec.id, state: f.registrar.registered ? "registered" : "waiting" };
  }

  async #onHealth(f: Fronted, passing: boolean, reason: string | undefined): Promise<void> {
    if (this.#stopped || this.#nodes.get(f.spec.id) !== f) return;
    if (passing) {
      clearTimeout(f.forgetTimer);
      f.forgetTimer = undefined;
      await f.registrar.up();
    } else {
      await f.registrar.down(`fronted app health check failing: ${reason ?? "unknown"}`);
      this.#scheduleForget(f, `its app failed its health check for ${f.forgetAfter}ms`);
    }
  }

  #scheduleForget(f: Fronted, why: string): void {
    clearTimeout(f.forgetTimer);
    f.forgetTimer = setTimeout(() => void this.#forget(f, why), f.forgetAfter);
    f.forgetTimer.unref();
  }

  /** Stop fronting a node: out of the registry at once, then its check and connections go. */
  async #forget(f: Fronted, why: string): Promise<void> {
    if (this.#nodes.get(f.spec.id) !== f) return;
    this.#nodes.delete(f.spec.id);
    clearTimeout(f.forgetTimer);
    void f.checker.close();
    await f.registrar.down(why);
    f.gate.drain();
    this.o.log.info("fronted node removed", { service: f.service, node: f.spec.id, reason: why });
    void f.gate.idle(10_000).then(() => f.app.close());
  }

  /** DELETE /registry: these nodes of the service (all of them when `ids` is undefined); the ids removed. */
  async remove(service: string, ids: string[] | undefined): Promise<string[]> {
    const gone = [...this.#nodes.values()].filter((f) => f.service === service && (ids === undefined || ids.includes(f.spec.id)));
    await Promise.all(gone.map((f) => this.#forget(f, "deregistered by its app (DELETE /registry)")));
    return gone.map((f) => f.spec.id);
  }

  /** Re-write every registered record now (after a NATS reconnection). */
  refresh(): void {
    for (const f of this.#nodes.values()) f.registrar.refresh();
  }

  /** Shutdown, first step: deregister every fronted node and refuse new calls to them. Idempotent. */
  stop(): Promise<void> {
    this.#stopped = true;
    this.#stopping ??= Promise.all(
      [...this.#nodes.values()].map(async (f) => {
        clearTimeout(f.forgetTimer);
        void f.checker.close();
        await f.registrar.down("shutdown");
        f.gate.drain();
      }),
    ).then(() => undefined);
    return this.#stopping;
  }

  /** Nodes are fronted through add(); after close() start rejects with CLOSED. */
  start(): Promise<void> {
    return this.#lifecycle.start();
  }

  /** Shutdown, last step (calls in flight are done): stop() if not yet, then close the connections to the apps. Idempotent. */
  close(): Promise<void> {
    return this.#lifecycle.close();
  }
}
