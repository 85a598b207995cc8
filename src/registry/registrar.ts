import type { Emit } from "../events/types.js";
import type { Logger } from "../log.js";
import { Lifecycle, type Component } from "../lifecycle/component.js";
import type { NodeRecord, Registry } from "./types.js";

/**
 * Keeps this node's record in the registry while the app is healthy:
 * `up()` registers at once and heartbeats every TTL/3; `down()` stops and deregisters.
 * Operations run one after another, so a quick down/up never leaves a stale record.
 */
export class Registrar implements Component {
  readonly #lifecycle = new Lifecycle("registrar", { close: () => this.down("shutdown") });
  #registered = false;
  #wanted = false;
  #timer: NodeJS.Timeout | undefined;
  #chain: Promise<void> = Promise.resolve();
  #warned = false;
  /** A heartbeat is queued or running: the next tick is skipped, so a slow registry never builds a backlog. */
  #beating = false;

  constructor(
    private readonly registry: Registry,
    private readonly node: NodeRecord,
    private readonly ttl: number,
    private readonly log: Logger,
    private readonly emit: Emit = () => {},
  ) {}

  get registered(): boolean {
    return this.#registered;
  }

  #enqueue(op: () => Promise<void>): Promise<void> {
    this.#chain = this.#chain.then(op, op);
    return this.#chain;
  }

  /**
   * Nothing to open: up() and down() are the registration's state changes, start() and close()
   * its lifetime. close() deregisters (down("shutdown")); after it, start() rejects with CLOSED.
   */
  start(): Promise<void> {
    return this.#lifecycle.start();
  }

  close(): Promise<void> {
    return this.#lifecycle.close();
  }

  up(): Promise<void> {
    this.#wanted = true;
    if (!this.#timer) {
      this.#timer = setInterval(() => this.#beat(), Math.max(10, Math.floor(this.ttl / 3)));
      this.#timer.unref();
    }
    return this.#enqueue(() => this.#put());
  }

  /** Re-write the record now (e.g. after the registry connection came back), if registered. */
  refresh(): void {
    if (this.#wanted) this.#beat();
  }

  #beat(): void {
    if (this.#beating) return;
    this.#beating = true;
    void this.#enqueue(() => this.#put()).finally(() => (this.#beating = false));
  }

  async #put(): Promise<void> {
    if (!this.#wanted) return;
    try {
      await this.registry.register(this.node);
      if (!this.#registered) {
        this.log.info("registered", { service: this.node.service, node: this.node.id, address: this.node.address, registry: this.registry.kind });
        this.emit({ type: "registered", service: this.node.service, node: this.node.id, address: this.node.address, registry: this.registry.kind });
      }
      this.#registered = true;
      this.#warned = false;
    } catch (err) {
      // Keep heartbeating: the record returns as soon as the registry is reachable again.
      if (!this.#warned) this.log.warn("cannot write the registry record; retrying on the next heartbeat", { error: (err as Error).message });
      this.#warned = true;
    }
  }

  down(reason: string): Promise<void> {
    this.#wanted = false;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    return this.#enqueue(async () => {
      if (this.#wanted) return;
      try {
        await this.registry.deregister(this.node.id);
        if (this.#registered) {
          this.log.info("deregistered", { service: this.node.service, node: this.node.id, reason });
          this.emit({ type: "deregistered", service: this.node.service, node: this.node.id, reason });
        }
      } catch (err) {
        this.log.warn("cannot delete the registry record; it will expire after the TTL", { error: (err as Error).message, ttlMs: this.ttl });
      }
      this.#registered = false;
    });
  }
}
