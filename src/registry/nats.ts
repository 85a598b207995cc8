import type { KV } from "@nats-io/kv";
import type { Logger } from "../log.js";
import type { NatsClient } from "../nats/connect.js";
import { parseNodeRecord, type NodeRecord, type Registry, type RegistryEvent, type RegistryStatus, type RegistryWatch } from "./types.js";
import { closedError } from "../lifecycle/component.js";

export interface NatsRegistryOptions {
  /** JetStream KV bucket. */
  bucket: string;
  /** Record lifetime; also the bucket's max age. */
  ttl: number;
  /** Bucket replicas on a cluster (1, 3 or 5). */
  replicas: number;
}

const keyOf = (node: Pick<NodeRecord, "service" | "id">) => `${node.service}.${node.id}`;

/** Node ids never contain a dot, so the last token of a key is the id and the rest the service. */
function splitKey(key: string): { service: string; id: string } {
  const dot = key.lastIndexOf(".");
  return { service: key.slice(0, dot), id: key.slice(dot + 1) };
}

/**
 * The production registry: a JetStream key-value bucket. Entries expire by the
 * bucket's max age; since nats-server 2.9 sends watchers no event for that, each event carries
 * `seenAt` and the RegistryView drops records not refreshed within the TTL.
 */
export class NatsRegistry implements Registry {
  readonly kind = "nats";
  #keys = new Map<string, string>();
  #watches = new Set<RegistryWatch>();
  #creating = new Set<Promise<unknown>>();
  #closed = false;
  /** The last heartbeat write failed while connected: everyone's heartbeats are likely failing too. */
  #writesFailing = false;
  /**
   * When the oldest of our record writes that the watch has not shown yet succeeded (undefined:
   * the watch has shown them all). The watch must show a write soon after it succeeds.
   */
  #unseenSince: number | undefined;
  /**
   * Our watch stalled or failed and has not shown one of our own writes since: this sidecar is
   * blind to heartbeats, so silence proves nothing about other nodes (the view must not expire them).
   */
  #watchBlind = false;

  private constructor(
    private readonly client: NatsClient,
    private readonly kv: KV,
    private readonly options: NatsRegistryOptions,
    private readonly log: Logger,
  ) {}

  static async open(client: NatsClient, options: NatsRegistryOptions, log: Logger, signal?: AbortSignal): Promise<NatsRegistry> {
    // A write that cannot complete must fail before the next heartbeat is due (TTL/3), not after
    // the client's 5 s default, or one lost request during a reconnect costs the node its record.
    const timeout = Math.max(250, Math.min(5_000, Math.floor(options.ttl / 3)));
    const kvm = client.kvm({ timeout });
    // A cluster that is still electing its JetStream leader (or a server without JetStream yet)
    // refuses the bucket for a while: wait for it, saying so, rather than fail the start.
    for (let attempt = 0; ; attempt++) {
      try {
        const kv = await kvm.create(options.bucket, { ttl: options.ttl, history: 1, replicas: options.replicas });
        return new NatsRegistry(client, kv, options, log);
      } catch (err) {
        if (signal?.aborted) throw new Error("stopped while waiting for JetStream", { cause: err });
        if (attempt % 10 === 0) log.warn("waiting for JetStream to create or open the registry bucket", { bucket: options.bucket, replicas: options.replicas, error: (err as Error).message });
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  async register(node: NodeRecord): Promise<void> {
    if (this.#closed) throw closedError("nats registry");
    const key = keyOf(node);
    this.#keys.set(node.id, key);
    try {
      await this.kv.put(key, JSON.stringify(node));
      this.#writesFailing = false;
      this.#unseenSince ??= Date.now();
    } catch (err) {
      this.#writesFailing = true;
      throw err;
    }
  }

  async deregister(nodeId: string): Promise<void> {
    if (this.#closed) throw closedError("nats registry");
    const key = this.#keys.get(nodeId);
    if (!key) return;
    this.#keys.delete(nodeId);
    await this.kv.delete(key);
  }

  async list(service?: string): Promise<NodeRecord[]> {
    const now = Date.now();
    const out: NodeRecord[] = [];
    const keys = await this.kv.keys(service ? `${service}.*` : ">");
    for await (const key of keys) {
      const entry = await this.kv.get(key);
      if (!entry || entry.operation !== "PUT" || now - entry.created.getTime() > this.options.ttl) continue;
      const node = this.#parse(entry.value, key);
      if (node) out.push(node);
    }
    return out;
  }

  async watch(onEvent: (event: RegistryEvent) => void): Promise<RegistryWatch> {
    if (this.#closed) throw closedError("nats registry");
    let stopped = false;
    const first = await this.#openWatch("open", () => this.#closed);
    if (!first) throw new Error("the registry was closed while its watch was opening");
    let iter = first;
    const run = async (): Promise<void> => {
      while (!stopped) {
        try {
          for await (const e of iter) {
            if (this.#unseenSince !== undefined && this.#isOurs(e.key)) {
              this.#unseenSince = undefined;
              if (this.#watchBlind) this.log.info("registry watch sees our heartbeats again");
              this.#watchBlind = false;
            }
            if (e.operation === "PUT") {
              const node = this.#parse(e.value, e.key);
              // Historical entries carry their server time (never in our future); live ones are fresh now,
              // which keeps clock skew between hosts out of expiry.
              const seenAt = e.isUpdate ? Date.now() : Math.min(e.created.getTime(), Date.now());
              if (node) onEvent({ type: "put", node, seenAt });
            } else {
              onEvent({ type: "delete", ...splitKey(e.key) });
            }
          }
        } catch (err) {
          this.log.warn("registry watch failed; restarting it", { error: (err as Error).message });
        }
        if (!stopped && !this.#closed) this.#watchBlind = true;
        // Re-create the watch until it works; never iterate the finished one again.
        const fresh = await this.#openWatch("restart", () => stopped || this.#closed);
        if (!fresh) return;
        iter = fresh;
      }
    };
    void run();
    // A watch can stall silently (its consumer lived on a cluster server that went away). Our own
    // heartbeats are events we must see: one written but not seen within the limit restarts it.
    // (Measured from the oldest unseen write: heartbeats come every TTL/3, so the newest one is
    // never older than that, stalled or not.)
    const stallAfter = Math.max(500, Math.min(2_000, Math.floor(this.options.ttl / 3)));
    const watchdog = setInterval(() => {
      const since = this.#unseenSince;
      if (since !== undefined && Date.now() - since > stallAfter) {
        this.log.warn("registry watch stalled (our own heartbeat never arrived); restarting it", { stalledMs: Date.now() - since });
        this.#unseenSince = Date.now(); // the new watch gets its own stallAfter
        this.#watchBlind = true;
        iter.stop();
      }
    }, Math.max(100, Math.floor(stallAfter / 2)));
    watchdog.unref();
    const watch: RegistryWatch = {
      stop: () => {
        stopped = true;
        clearInterval(watchdog);
        iter.stop();
        this.#watches.delete(watch);
      },
    };
    this.#watches.add(watch);
    return watch;
  }

  /**
   * kv.watch, tracked until it settles: close() waits for watches being created before the
   * connection closes. (nats.js starts a consumer's heartbeat timer before subscribing; a watch
   * whose subscribe fails on a closed connection leaks that timer, which keeps the process alive.)
   */
  #createWatch(): Promise<Awaited<ReturnType<KV["watch"]>>> {
    const p = this.kv.watch({ key: ">" });
    this.#creating.add(p);
    const done = () => this.#creating.delete(p);
    p.then(done, done);
    return p;
  }

  /**
   * Open a watch of the whole bucket, retrying every 250 ms (saying so): a cluster electing a
   * leader refuses or times out for a while. A restart waits 250 ms first. Undefined once
   * `stopped()`; a watch created after that is stopped at once (nobody else would stop it, and
   * its heartbeat timer would keep the process alive).
   */
  async #openWatch(what: "open" | "restart", stopped: () => boolean): Promise<Awaited<ReturnType<KV["watch"]>> | undefined> {
    for (let attempt = 0; ; attempt++) {
      if (stopped()) return undefined;
      if (what === "restart" || attempt > 0) await new Promise((r) => setTimeout(r, 250));
      if (stopped()) return undefined;
      try {
        const iter = await this.#createWatch();
        if (!stopped()) return iter;
        iter.stop();
        return undefined;
      } catch (err) {
        if (attempt % 10 === 0) this.log.warn(`cannot ${what} the registry watch yet; retrying`, { error: (err as Error).message });
      }
    }
  }

  /** Is `key` one of the records this sidecar writes? */
  #isOurs(key: string): boolean {
    for (const k of this.#keys.values()) if (k === key) return true;
    return false;
  }

  #parse(value: Uint8Array, key: string): NodeRecord | undefined {
    try {
      const node = parseNodeRecord(JSON.parse(new TextDecoder().decode(value)));
      if (node) return node;
    } catch {
      /* reported below */
    }
    this.log.warn("ignoring a registry entry that is not a node record", { key });
    return undefined;
  }

  status(): RegistryStatus {
    if (this.#closed) return "closed";
    const s = this.client.status();
    return s === "connected" && (this.#writesFailing || this.#watchBlind) ? "unavailable" : s;
  }

  /** Stop every watch; watches still being created settle first (and stop themselves: #closed). */
  async close(): Promise<void> {
    this.#closed = true;
    for (const w of [...this.#watches]) w.stop();
    await Promise.allSettled([...this.#creating]);
  }
}
