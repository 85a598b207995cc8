import { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleWhen, retry } from "cockatiel";
import { Etcd3, EtcdAuthenticationFailedError, EtcdLeaseInvalidError, EtcdPermissionDeniedError, isRecoverableError, type IKeyValue, type IOptions, type Lease, type Watcher } from "etcd3";
import { closedError } from "../lifecycle/component.js";
import { sleep } from "../lifecycle/wait-idle.js";
import type { Logger } from "../log.js";
import { parseNodeRecord, type NodeRecord, type Registry, type RegistryEvent, type RegistryStatus, type RegistryWatch, type WatchScope } from "./types.js";

export interface EtcdRegistryOptions {
  endpoints: readonly string[];
  /** Every key lives under it: `<prefix><service>/<nodeId>`. Ends with '/'. */
  prefix: string;
  /** registry.ttl (ms): the lease TTL, in whole seconds (etcd's unit), rounded up. */
  ttl: number;
  username?: string | undefined;
  password?: string | undefined;
  /** PEM contents (read by the caller): ca to verify the servers, cert and key when they want a client certificate. */
  tls?: { ca: Buffer; cert?: Buffer | undefined; key?: Buffer | undefined } | undefined;
}

/** etcd's leases count whole seconds; at least 1 (the server raises it to its own minimum, about 1.5 s by default). */
export const leaseSeconds = (ttl: number): number => Math.max(1, Math.ceil(ttl / 1000));

/**
 * The etcd registry (etcd v3 API, through the `etcd3` client). Each node's record is a key
 * attached to a lease of `registry.ttl`, kept alive by the client: a node killed with -9 stops
 * its keep-alives and etcd deletes the key when the lease expires, telling every watcher. So
 * heartbeats write nothing while the record is unchanged, and views need not expire records by
 * age (`expiresRecords`): every departure arrives as a delete event.
 */
export class EtcdRegistry implements Registry {
  readonly kind = "etcd";
  readonly expiresRecords = true;
  /** Per node: its lease and the record last written under it. */
  readonly #leases = new Map<string, { lease: Lease; written: string; lost: boolean }>();
  readonly #watches = new Set<EtcdWatch>();
  #closed = false;
  /** A call or a watch stream failed to reach etcd, and nothing has reached it since. */
  #unreachable = false;
  /** A lease's keep-alive failed (etcd reachable or not): our record, and likely others', may lapse. */
  #keepaliveFailing = false;

  private constructor(private readonly client: Etcd3, private readonly options: EtcdRegistryOptions, private readonly log: Logger) {}

  /** Connect, waiting for etcd (saying so every 10 attempts) until it answers or `signal` aborts. */
  static async open(options: EtcdRegistryOptions, log: Logger, signal?: AbortSignal): Promise<EtcdRegistry> {
    const client = new Etcd3(clientOptions(options));
    for (let attempt = 0; ; attempt++) {
      try {
        await client.get(`${options.prefix}.probe`).string();
        log.info("connected to etcd", { endpoints: options.endpoints, prefix: options.prefix });
        return new EtcdRegistry(client, options, log);
      } catch (err) {
        if (signal?.aborted) {
          client.close();
          throw new Error("stopped while waiting for etcd", { cause: err });
        }
        if (attempt % 10 === 0) {
          if (err instanceof EtcdAuthenticationFailedError || err instanceof EtcdPermissionDeniedError) log.error("etcd refused this sidecar's credentials (etcd.username/password); retrying every second", { endpoints: options.endpoints, error: err.message });
          else log.warn("waiting for etcd: cannot connect yet, retrying every second", { endpoints: options.endpoints, error: (err as Error).message });
        }
        await sleep(1_000, signal);
      }
    }
  }

  #key(service: string, id: string): string {
    return `${this.options.prefix}${service}/${id}`;
  }

  /**
   * Put the record under the node's lease, granting one first if it has none (or lost it). A
   * heartbeat of an unchanged record on a live lease costs nothing: the lease's keep-alives are
   * the heartbeat.
   */
  async register(node: NodeRecord): Promise<void> {
    if (this.#closed) throw closedError("etcd registry");
    const value = JSON.stringify(node);
    let held = this.#leases.get(node.id);
    if (held && !held.lost && held.written === value) return;
    try {
      if (!held || held.lost) {
        held = { lease: this.#grant(node.id), written: "", lost: false };
        this.#leases.set(node.id, held);
      }
      await held.lease.put(this.#key(node.service, node.id)).value(value);
      held.written = value;
      this.#reached();
    } catch (err) {
      this.#failed(err);
      throw err;
    }
  }

  #grant(nodeId: string): Lease {
    const lease = this.client.lease(leaseSeconds(this.options.ttl), { autoKeepAlive: true });
    lease.on("lost", (err) => {
      const held = this.#leases.get(nodeId);
      if (held?.lease === lease) held.lost = true; // the next heartbeat grants a new lease and writes the record again
      if (!this.#closed) this.log.warn("etcd lease lost; the record is written again on the next heartbeat", { node: nodeId, error: err.message });
    });
    lease.on("keepaliveFailed", () => (this.#keepaliveFailing = true));
    lease.on("keepaliveSucceeded", () => {
      this.#keepaliveFailing = false;
      this.#reached();
    });
    return lease;
  }

  /** Revoke the node's lease: etcd deletes its key at once and every watcher hears of it. */
  async deregister(nodeId: string): Promise<void> {
    if (this.#closed) throw closedError("etcd registry");
    const held = this.#leases.get(nodeId);
    if (!held) return;
    this.#leases.delete(nodeId);
    try {
      await held.lease.revoke();
      this.#reached();
    } catch (err) {
      held.lease.release(); // no more keep-alives: the key goes when the lease expires
      if (!(err instanceof EtcdLeaseInvalidError)) {
        this.#failed(err);
        throw err;
      }
    }
  }

  async list(service?: string): Promise<NodeRecord[]> {
    const res = await this.client.getAll().prefix(service ? `${this.options.prefix}${service}/` : this.options.prefix).exec();
    return res.kvs.map((kv) => this.#parse(kv)).filter((n): n is NodeRecord => n !== undefined);
  }

  /** A prefix watch of `<prefix><service>/` (one service), or of `<prefix>` (all); the client carries every watch on one gRPC stream. */
  async watch(onEvent: (event: RegistryEvent) => void, scope?: WatchScope): Promise<RegistryWatch> {
    if (this.#closed) throw closedError("etcd registry");
    const prefix = scope ? `${this.options.prefix}${scope.service}/` : this.options.prefix;
    const w = new EtcdWatch(this.client, prefix, onEvent, {
      parse: (kv) => this.#parse(kv),
      split: (key) => this.#split(key),
      reached: () => this.#reached(),
      failed: (err) => this.#failed(err),
      log: this.log,
      stopped: () => this.#watches.delete(w),
    });
    await w.start();
    this.#watches.add(w);
    return w;
  }

  status(): RegistryStatus {
    if (this.#closed) return "closed";
    if (this.#unreachable || [...this.#watches].some((w) => w.down)) return "disconnected";
    return this.#keepaliveFailing ? "unavailable" : "connected";
  }

  /** Stop the watches and keep-alives (the records stay until deregistered or their leases expire) and close the client. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of [...this.#watches]) w.stop();
    for (const held of this.#leases.values()) held.lease.release();
    this.#leases.clear();
    this.client.close();
  }

  #reached(): void {
    this.#unreachable = false;
  }

  #failed(err: unknown): void {
    if (err instanceof Error && isRecoverableError(err)) this.#unreachable = true;
  }

  /** `<prefix><service>/<id>` → service and id (a node id never contains '/'). */
  #split(key: string): { service: string; id: string } | undefined {
    const rest = key.startsWith(this.options.prefix) ? key.slice(this.options.prefix.length) : undefined;
    const slash = rest?.lastIndexOf("/") ?? -1;
    if (!rest || slash <= 0 || slash === rest.length - 1) return undefined;
    return { service: rest.slice(0, slash), id: rest.slice(slash + 1) };
  }

  #parse(kv: IKeyValue): NodeRecord | undefined {
    const key = kv.key.toString();
    try {
      const node = parseNodeRecord(JSON.parse(kv.value.toString()));
      const at = this.#split(key);
      if (node && at && at.service === node.service && at.id === node.id) return node;
    } catch {
      /* reported below */
    }
    this.log.warn("ignoring a registry entry that is not a node record", { key });
    return undefined;
  }
}

interface WatchDeps {
  parse(kv: IKeyValue): NodeRecord | undefined;
  split(key: string): { service: string; id: string } | undefined;
  reached(): void;
  failed(err: unknown): void;
  log: Logger;
  stopped(): void;
}

/**
 * One prefix watch: list the prefix at a revision, then watch from the next one, so no change
 * between the two is missed. The client resumes a broken stream from the last revision it saw;
 * if etcd refuses that (the revision was compacted) or the watch fails, it lists again and
 * reconciles: records that vanished meanwhile are reported as deleted.
 */
class EtcdWatch implements RegistryWatch {
  /** The keys this watch has reported present. */
  readonly #present = new Set<string>();
  #watcher: Watcher | undefined;
  #stopped = false;
  #syncing: Promise<void> | undefined;
  down = false;

  constructor(
    private readonly client: Etcd3,
    private readonly prefix: string,
    private readonly onEvent: (event: RegistryEvent) => void,
    private readonly d: WatchDeps,
  ) {}

  async start(): Promise<void> {
    await this.#sync();
  }

  #put(kv: IKeyValue): void {
    const node = this.d.parse(kv);
    if (!node) return;
    this.#present.add(kv.key.toString());
    this.onEvent({ type: "put", node, seenAt: Date.now() });
  }

  #delete(key: string): void {
    this.#present.delete(key);
    const at = this.d.split(key);
    if (at) this.onEvent({ type: "delete", ...at });
  }

  /** List, reconcile, and (re)start the watch from the revision after the listing. */
  async #sync(): Promise<void> {
    const res = await this.client.getAll().prefix(this.prefix).exec();
    if (this.#stopped) return;
    const listed = new Set<string>();
    for (const kv of res.kvs) {
      listed.add(kv.key.toString());
      this.#put(kv);
    }
    for (const key of [...this.#present]) if (!listed.has(key)) this.#delete(key);
    const next = (BigInt(res.header.revision) + 1n).toString();
    const old = this.#watcher;
    this.#watcher = undefined;
    await old?.cancel().catch(() => undefined);
    const watcher = await this.client.watch().prefix(this.prefix).startRevision(next).create();
    if (this.#stopped) {
      await watcher.cancel().catch(() => undefined);
      return;
    }
    this.#watcher = watcher;
    this.down = false;
    this.d.reached();
    watcher.on("put", (kv) => this.#put(kv));
    watcher.on("delete", (kv) => this.#delete(kv.key.toString()));
    watcher.on("connected", () => {
      this.down = false;
      this.d.reached();
    });
    watcher.on("disconnected", (err) => {
      if (!this.down && !this.#stopped) this.d.log.warn("etcd watch disconnected; the client reconnects and resumes from the last revision", { error: err.message });
      this.down = true;
    });
    watcher.on("error", (err) => {
      if (this.#stopped || this.#watcher !== watcher) return;
      this.d.log.warn("etcd watch failed (its revision may have been compacted); listing again", { error: err.message });
      this.down = true;
      this.#resync();
    });
  }

  /** Sync again until it works (every 250 ms), one attempt at a time. */
  #resync(): void {
    this.#syncing ??= (async () => {
      for (let attempt = 0; !this.#stopped; attempt++) {
        try {
          await this.#sync();
          return;
        } catch (err) {
          this.d.failed(err);
          if (attempt % 10 === 0) this.d.log.warn("cannot list the etcd registry yet; retrying", { error: (err as Error).message });
          await sleep(250);
        }
      }
    })().finally(() => (this.#syncing = undefined));
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    void this.#watcher?.cancel().catch(() => undefined);
    this.d.stopped();
  }
}

/** The etcd3 client's options: hosts, credentials, and fault handling tuned for a registry. */
function clientOptions(o: EtcdRegistryOptions): IOptions {
  // A call must fail before the next heartbeat is due (TTL/3), as with NATS, and the client's
  // circuit breaker must let calls through again within a second of etcd coming back (its
  // default waits 5 s, and a watch's backoff grows to 30 s).
  const timeout = Math.max(250, Math.min(5_000, Math.floor(o.ttl / 3)));
  return {
    hosts: [...o.endpoints],
    dialTimeout: timeout,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    faultHandling: {
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1_000, breaker: new ConsecutiveBreaker(3) }),
      global: retry(handleWhen(isRecoverableError), { maxAttempts: 1 }),
      // etcd3 calls next() on this to get its first backoff (what cockatiel 3's factory is), though its types ask for a backoff.
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1_000 }) as unknown as NonNullable<NonNullable<IOptions["faultHandling"]>["watchBackoff"]>,
    },
    ...(o.username !== undefined ? { auth: { username: o.username, password: o.password ?? "" } } : {}),
    ...(o.tls ? { credentials: { rootCertificate: o.tls.ca, ...(o.tls.key ? { privateKey: o.tls.key } : {}), ...(o.tls.cert ? { certChain: o.tls.cert } : {}) } } : {}),
  };
}
