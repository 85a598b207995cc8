import http, { type IncomingMessage } from "node:http";
import type { NodeRecord } from "../registry/types.js";
import { TransportError, type OutboundRequest, type Transport } from "./types.js";

/** Errors raised before a connection exists: the request was never sent. */
const NOT_CONNECTED = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "EADDRNOTAVAIL"]);

export interface HttpTransportOptions {
  /** Upper bound of pooled connections per peer. Default 256. */
  maxSockets?: number;
}

/** Splits "host:port" (IPv6 as "[::1]:8082"). */
export function parseAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  return { host, port: Number(address.slice(colon + 1)) };
}

/**
 * The default transport (DESIGN §4): HTTP/1.1 to the peer sidecar's inbound listener over
 * pooled keep-alive connections.
 */
export class HttpTransport implements Transport {
  readonly kind = "http";
  readonly #agent: http.Agent;

  constructor(options: HttpTransportOptions = {}) {
    this.#agent = new http.Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 256, scheduling: "lifo" });
  }

  send(node: NodeRecord, r: OutboundRequest): Promise<IncomingMessage> {
    const { host, port } = parseAddress(node.address);
    return new Promise((resolve, reject) => {
      const req = http.request({
        host,
        port,
        method: r.method,
        path: r.path,
        headers: Buffer.isBuffer(r.body) ? { ...r.headers, "content-length": r.body.length } : r.headers,
        agent: this.#agent,
      });
      const off = r.deadline.onCancel(() => req.destroy(new Error("call cancelled")));
      req.once("response", (res) => {
        // From here the caller owns the response; cancelling destroys it (and with it the socket).
        off();
        r.deadline.onCancel(() => res.destroy());
        resolve(res);
      });
      req.once("error", (err: NodeJS.ErrnoException) => {
        off();
        const code = err.code ?? "EUNKNOWN";
        // A pooled connection the peer closed while idle fails on reuse before the peer read
        // anything (the keep-alive race): safe to send elsewhere, like a refused connection.
        const delivered = !(NOT_CONNECTED.has(code) || (req.reusedSocket && (code === "ECONNRESET" || code === "EPIPE")));
        reject(new TransportError(`${node.address}: ${err.message}`, { delivered, code, cause: err }));
      });
      const body = r.body;
      if (Buffer.isBuffer(body)) {
        req.end(body);
        return;
      }
      // Start streaming only once connected: a refused connection leaves the body untouched,
      // so the call can still go to another node.
      req.once("socket", (socket) => {
        const go = () => {
          body.started = true;
          body.stream.once("error", (err) => req.destroy(err));
          body.stream.pipe(req);
        };
        if (socket.connecting) socket.once("connect", go);
        else go();
      });
    });
  }

  async close(): Promise<void> {
    this.#agent.destroy();
  }
}
