import type { NodeRecord } from "../../registry/types.js";
import type { MeshTls } from "../../tls/mesh.js";
import { HttpTransport, parseAddress } from "../http.js";
import { TransportError, type OutboundRequest, type Transport, type UpstreamResponse } from "../types.js";
import { MAX_MESH_BODY, MESH_VERSION } from "./frames.js";
import { MeshConnection } from "./connection.js";

/** How long a peer that answered the mesh preface as plain HTTP is called over HTTP/1.1 only. */
const UNSUPPORTED_FOR_MS = 60_000;

export interface MeshTransportOptions {
  meshToken?: string | undefined;
  tls?: MeshTls | undefined;
}

/**
 * The http transport with the mesh protocol (frames.ts) in front: a call to a node whose record
 * says its inbound speaks mesh (`mesh: 1`), with a body of at most 1 MiB in hand, goes over one
 * persistent multiplexed connection to that peer; every other call (older peers, streamed or
 * larger bodies) goes over HTTP/1.1 exactly as before. Same statuses, headers, refusals and
 * deadlines either way: the callee serves both through one inbound handler.
 */
export class MeshTransport implements Transport {
  readonly kind = "http";
  readonly #http: HttpTransport;
  readonly #connections = new Map<string, MeshConnection>();
  /** Peers whose record claims mesh but whose listener answered as HTTP: until when to skip mesh. */
  readonly #unsupported = new Map<string, number>();
  #closed = false;

  constructor(private readonly o: MeshTransportOptions = {}) {
    this.#http = new HttpTransport({ meshToken: o.meshToken, tls: o.tls });
  }

  async send(node: NodeRecord, r: OutboundRequest): Promise<UpstreamResponse> {
    if (!this.#eligible(node, r)) return this.#http.send(node, r);
    try {
      return await this.#connection(node.address).send(r, this.o.meshToken);
    } catch (err) {
      if (!(err instanceof TransportError)) throw err;
      if (err.code === "MESH_UNSUPPORTED") {
        this.#unsupported.set(node.address, Date.now() + UNSUPPORTED_FOR_MS);
        return this.#http.send(node, r);
      }
      // The peer closed an idle connection as the call went out: it never saw the call, so it
      // goes once more on a new connection (a draining peer refuses it there, or is gone).
      if (err.code === "GOAWAY" && !r.deadline.cancelled) return this.#connection(node.address).send(r, this.o.meshToken);
      throw err;
    }
  }

  #eligible(node: NodeRecord, r: OutboundRequest): boolean {
    if (this.#closed || (node.mesh ?? 0) < MESH_VERSION || !Buffer.isBuffer(r.body) || r.body.length > MAX_MESH_BODY) return false;
    const until = this.#unsupported.get(node.address);
    if (until === undefined) return true;
    if (Date.now() < until) return false;
    this.#unsupported.delete(node.address);
    return true;
  }

  #connection(address: string): MeshConnection {
    const open = this.#connections.get(address);
    if (open?.usable) return open;
    const { host, port } = parseAddress(address);
    const c = new MeshConnection({
      host,
      port,
      tls: this.o.tls?.connectOptions(),
      onRetire: (gone) => {
        if (this.#connections.get(address) === gone) this.#connections.delete(address);
      },
    });
    this.#connections.set(address, c);
    return c;
  }

  /** Open mesh connections (one per peer called). */
  get connections(): number {
    return this.#connections.size;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const c of [...this.#connections.values()]) c.destroy();
    this.#connections.clear();
    await this.#http.close();
  }
}
