/** A node record as stored in the registry. */
export interface NodeRecord {
  id: string;
  service: string;
  version: string;
  /** host:port of the node's inbound listener. */
  address: string;
  transport: string;
  metadata: Record<string, string>;
  endpoints: string[];
  subscriptions: string[];
  registeredAt: string;
  /**
   * How the node's sidecar hands an RPC-style call to the app: absent for plain HTTP (the
   * default), `jsonrpc` for go-micro's JSON-RPC. Callers mark RPC-style calls (x-sidecar-rpc) for
   * such nodes only: the common call carries no header it does not need.
   */
  protocol?: "jsonrpc";
  /**
   * The version of the sidecar-to-sidecar mesh protocol (transport/mesh/frames.ts) the node's
   * inbound listener speaks besides HTTP/1.1; absent: HTTP/1.1 only (an older sidecar, or
   * transport.mesh: false). Callers that speak it too use it for the calls it can carry.
   */
  mesh?: number;
  /** An app fronted through POST /registry: its sidecar serves other nodes too, so calls name the node (x-sidecar-node). */
  fronted?: true;
}

/**
 * A change seen by a registry watch. `seenAt` is when the record was last refreshed, in this
 * process's clock (epoch ms): watchers drop a record not refreshed within the TTL, because a
 * NATS KV entry expiring by max-age produces no event on nats-server 2.9.
 */
export type RegistryEvent =
  | { type: "put"; node: NodeRecord; seenAt: number }
  | { type: "delete"; service: string; id: string };

/** `unavailable`: connected, but the registry refuses writes (e.g. a JetStream cluster electing a leader), or its watch cannot see our own heartbeats (it is being restored): either way, silence from other nodes proves nothing. */
export type RegistryStatus = "connected" | "unavailable" | "disconnected" | "closed";

export interface RegistryWatch {
  stop(): void;
  /**
   * False while the watch is being restored (it failed, or went silent and is listing again): it
   * may have missed heartbeats, so the view holds its nodes until it lists again (then the
   * records' own times decide). Absent: always listening.
   */
  listening?(): boolean;
}

/** What a watch covers: one service's records (what callers watch), or every record when absent. */
export interface WatchScope {
  service: string;
}

/** A registry backend. Implementations: LocalRegistry (local.ts), NatsRegistry (nats.ts), EtcdRegistry (etcd.ts). */
export interface Registry {
  readonly kind: string;
  /**
   * The backend itself removes a record whose node stopped heartbeating, and its watch reports
   * that as a delete (etcd's leases). Views then never expire records by age. Absent (local, NATS
   * KV on nats-server 2.9, whose max-age expiry sends watchers nothing): views drop records not
   * refreshed within the TTL.
   */
  readonly expiresRecords?: boolean;
  /** Write (or refresh) a node's record. Called again on every heartbeat. */
  register(node: NodeRecord): Promise<void>;
  /** Remove a node's record at once. */
  deregister(nodeId: string): Promise<void>;
  /** Live records (not older than the TTL), of one service or all. A listing, not a watch: not for the hot path. */
  list(service?: string): Promise<NodeRecord[]>;
  /**
   * Current records first, then every change, until stopped: of one service (`scope`), or of
   * the whole registry. Resolves once the records present when it opened have been delivered,
   * so a caller that awaits it sees every live node of the service.
   */
  watch(onEvent: (event: RegistryEvent) => void, scope?: WatchScope): Promise<RegistryWatch>;
  status(): RegistryStatus;
  /**
   * Idempotent; concurrent callers share one close. After it, register, deregister and watch
   * reject with CLOSED and status() is "closed". (A backend's factory is its start: what
   * REGISTRIES returns is ready to use, never half open.)
   */
  close(): Promise<void>;
}

/** Parse and check a record read from a backend; undefined when it is not a node record. */
export function parseNodeRecord(value: unknown): NodeRecord | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const r = value as Partial<NodeRecord>;
  if (typeof r.id !== "string" || typeof r.service !== "string" || typeof r.address !== "string") return undefined;
  return {
    id: r.id,
    service: r.service,
    version: typeof r.version === "string" ? r.version : "",
    address: r.address,
    transport: typeof r.transport === "string" ? r.transport : "http",
    metadata: typeof r.metadata === "object" && r.metadata !== null ? r.metadata : {},
    endpoints: Array.isArray(r.endpoints) ? r.endpoints : [],
    subscriptions: Array.isArray(r.subscriptions) ? r.subscriptions : [],
    registeredAt: typeof r.registeredAt === "string" ? r.registeredAt : "",
    ...(r.protocol === "jsonrpc" ? { protocol: "jsonrpc" as const } : {}),
    ...(r.fronted === true ? { fronted: true as const } : {}),
    ...(typeof r.mesh === "number" && Number.isInteger(r.mesh) && r.mesh > 0 ? { mesh: r.mesh } : {}),
  };
}
