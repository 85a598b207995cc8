import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { Logger } from "../log.js";
import type { NatsClient } from "../nats/connect.js";
import { parseNodeRecord, type NodeRecord, type Registry, type RegistryEvent, type RegistryStatus, type RegistryWatch, type WatchScope } from "./types.js";
import { closedError } from "../lifecycle/component.js";
import { consumerInfo, KvWatcher, pendingAtOpen, stallLimit, type Iter, type KvWatchDeps } from "./nats-watch.js";
import type { JetStreamManager } from "@nats-io/jetstream";
import { Canary } from "./nats-canary.js";

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
 * The production registry: a JetStream key-value bucket, one key per node (`<service>.<id>`).
 * Entries expire by the bucket's max age; since nats-server 2.9 sends watchers no event for
 * that, each event carries `seenAt` and the RegistryView drops records not refreshed within the
 * TTL. Callers watch the keys of the services they call (`greeter.*`), so a heartbeat reaches the
 * callers of its service only; a canary watch of one of our own keys tells stalled watches apart
 * from quiet services.
 *
 * nats-server 2.11 adds per-message TTLs and delete markers on expiry (`allow_msg_ttl`,
 * `subject_delete_marker_ttl`): a bucket created with them would tell watchers of a lapsed
 * record, and this class could then say `expiresRecords` as etcd does (views would stop ageing
 * records). Heartbeats would still be re-puts: KV has no keep-alive. That is the one place to
 * change (`open` and `expiresRecords`); the server here is 2.9, so it is not done.
 */
export class NatsRegistry implements Registry {
  readonly kind = "nats";
  /** Our records' keys, by node id (this sidecar's node and the apps it fronts). */
  #keys = new Map<string, string>();
  #watchers = new Set<KvWatcher>();
  #creating = new Set<Promise<unknown>>();
  #closed = false;
  /** The last heartbeat write failed while connected: everyone's heartbeats are likely failing too. */
  #writesFailing = false;
  /** Watches one of our keys; undefined while we have no record. */
  #canary: Canary | undefined;
  readonly #deps: KvWatchDeps;

  private constructor(
    private readonly client: NatsClient,
    private readonly kv: KV,
    private readonly options: NatsRegistryOptions,
    private readonly log: Logger,
  ) {
    this.#deps = { kv, log, track: (p) => this.#track(p), closed: () => this.#closed, release: (iter) => this.#release(iter) };
  }

  #jsm: Promise<JetStreamManager> | undefined;

  /**
   * Stop a watch's iterator and delete its consumer: nats.js leaves an ordered consumer on the
   * server for 5 minutes after its last subscriber, and every closed watch and listing would add
   * one. Best effort (a consumer already gone, or a server away, is left to that threshold).
   */
  #release(iter: Iter): void {
    iter.stop();
    void (async () => {
      const info = await consumerInfo(iter);
      if (!info?.name || !info.stream_name || this.client.status() !== "connected") return;
      this.#jsm ??= this.client.jetstreamManager({ timeout: listTimeout(this.options.ttl) }).catch((err: unknown) => {
        this.#jsm = undefined;
        throw err;
      });
      await (await this.#jsm).consumers.delete(info.stream_name, info.name);
    })().catch(() => undefined);
  }

  static async open(client: NatsClient, options: NatsRegistryOptions, log: Logger, signal?: AbortSignal): Promise<NatsRegistry> {
    // A write that cannot complete must fail before the next heartbeat is due (TTL/3), not after
    // the client's 5 s default, or one lost request during a reconnect costs the node its record.
    const timeout = listTimeout(options.ttl);
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
    let revision: number;
    try {
      revision = await this.kv.put(key, JSON.stringify(node));
      this.#writesFailing = false;
    } catch (err) {
      this.#writesFailing = true;
      throw err;
    }
    if (this.#closed) return;
    this.#canary ??= this.#canaryOn(key);
    this.#canary.written(key, revision);
  }

  async deregister(nodeId: string): Promise<void> {
    if (this.#closed) throw closedError("nats registry");
    const key = this.#keys.get(nodeId);
    if (!key) return;
    this.#keys.delete(nodeId);
    if (this.#canary?.key === key) {
      // Watch another of our keys, if any (it starts checking at its next heartbeat).
      this.#canary.stop();
      const next = this.#keys.values().next();
      this.#canary = next.done ? undefined : this.#canaryOn(next.value);
    }
    await this.kv.delete(key);
  }

  /** One ordered consumer over the keys (last value each), read to its end: one round trip per batch, not one per key. */
  async list(service?: string): Promise<NodeRecord[]> {
    if (this.#closed) throw closedError("nats registry");
    const now = Date.now();
    const out: NodeRecord[] = [];
    const iter = await this.#track(this.kv.watch({ key: service ? `${service}.*` : ">" }));
    const give = setTimeout(() => iter.stop(), 4 * listTimeout(this.options.ttl));
    try {
      if ((await pendingAtOpen(iter)) === 0) return out;
      for await (const e of iter) {
        if (e.operation === "PUT" && now - e.created.getTime() <= this.options.ttl) {
          const node = this.#parse(e.value, e.key);
          if (node && (service === undefined || node.service === service)) out.push(node);
        }
        if (e.isUpdate) break;
      }
    } finally {
      clearTimeout(give);
      this.#release(iter);
    }
    return out;
  }

  /** A watch of `<service>.*` (one service's nodes: node ids have no dots), or of every key. */
  async watch(onEvent: (event: RegistryEvent) => void, scope?: WatchScope): Promise<RegistryWatch> {
    if (this.#closed) throw closedError("nats registry");
    const service = scope?.service;
    const watcher = new KvWatcher(this.#deps, { key: service === undefined ? ">" : `${service}.*` }, (e, listing) => {
      const event = this.#event(e, listing);
      if (event && (service === undefined || (event.type === "put" ? event.node.service : event.service) === service)) onEvent(event);
    });
    this.#watchers.add(watcher);
    try {
      await watcher.start();
    } catch (err) {
      this.#watchers.delete(watcher);
      throw err;
    }
    this.#startWatchdog();
    return {
      stop: () => {
        watcher.stop();
        this.#watchers.delete(watcher);
      },
      listening: () => !watcher.reopening,
    };
  }

  #watchdog: NodeJS.Timeout | undefined;

  /**
   * A watch can stall on its own (its consumer lived on a cluster server that went away, while the
   * canary's lived elsewhere). A watch showing live keys hears each of them every heartbeat
   * (TTL/3): silent for a heartbeat and the stall limit (at most 2/3 of the TTL), it lists again,
   * and the view holds its nodes until it has (a relisting during a JetStream election may take a
   * while); then the records' own times decide, so a node that died still leaves on time. That
   * costs one listing of one service; a service whose nodes all died lists without them once
   * their records expire, and stops being restarted.
   */
  #startWatchdog(): void {
    if (this.#watchdog) return;
    const heartbeat = Math.max(10, Math.floor(this.options.ttl / 3));
    const silentAfter = heartbeat + stallLimit(this.options.ttl);
    this.#watchdog = setInterval(() => {
      const now = Date.now();
      for (const w of this.#watchers) {
        if (w.reopening || w.present.size === 0 || now - w.lastEntryAt <= silentAfter) continue;
        this.log.warn("registry watch silent for longer than a heartbeat (its consumer may be gone); listing again", { key: w.key, silentMs: now - w.lastEntryAt, keys: w.present.size });
        w.restart();
      }
    }, Math.max(100, Math.floor(stallLimit(this.options.ttl) / 2)));
    this.#watchdog.unref();
  }

  #event(e: KvWatchEntry, listing: boolean): RegistryEvent | undefined {
    if (e.operation !== "PUT") return { type: "delete", ...splitKey(e.key) };
    const node = this.#parse(e.value, e.key);
    // Listed entries carry their server time (never in our future), the last one too (a relisting
    // must not renew a dead node's record); live ones are fresh now, which keeps clock skew
    // between hosts out of expiry.
    const seenAt = listing ? Math.min(e.created.getTime(), Date.now()) : Date.now();
    return node ? { type: "put", node, seenAt } : undefined;
  }

  #canaryOn(key: string): Canary {
    return new Canary(this.#deps, key, this.options.ttl, () => this.#restartAll());
  }

  /** The canary found our own heartbeat unseen: the watches share its fate (a consumer's server gone), so all start again. */
  #restartAll(): void {
    for (const w of this.#watchers) w.restart();
    this.#canary?.restart();
  }

  /**
   * kv.watch, tracked until it settles: close() waits for watches being created before the
   * connection closes. (nats.js starts a consumer's heartbeat timer before subscribing; a watch
   * whose subscribe fails on a closed connection leaks that timer, which keeps the process alive.)
   */
  #track<T>(p: Promise<T>): Promise<T> {
    this.#creating.add(p);
    const done = () => this.#creating.delete(p);
    p.then(done, done);
    return p;
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

  /**
   * `unavailable` while connected but the registry refuses our writes, or our canary has not seen
   * our own last heartbeat: silence from other nodes proves nothing. (One watch being restored
   * says so itself: `listening()`.)
   */
  status(): RegistryStatus {
    if (this.#closed) return "closed";
    const s = this.client.status();
    if (s !== "connected") return s;
    return this.#writesFailing || this.#canary?.stalled ? "unavailable" : "connected";
  }

  /** Stop every watch; watches still being created settle first (and stop themselves: #closed). */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#watchdog) clearInterval(this.#watchdog);
    this.#canary?.stop();
    for (const w of [...this.#watchers]) w.stop();
    this.#watchers.clear();
    await Promise.allSettled([...this.#creating]);
  }
}

/** Registry requests fail before the next heartbeat is due (TTL/3), within 0.25-5 s. */
function listTimeout(ttl: number): number {
  return Math.max(250, Math.min(5_000, Math.floor(ttl / 3)));
}
