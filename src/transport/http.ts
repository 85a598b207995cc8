import http, { type IncomingMessage } from "node:http";
import { H } from "../http/headers.js";
import { requestWithDeadline } from "../http/request.js";
import type { NodeRecord } from "../registry/types.js";
import { TransportError, type OutboundRequest, type Transport } from "./types.js";

/** Errors raised before a connection exists: the request was never sent. */
const NOT_CONNECTED = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "EADDRNOTAVAIL"]);

export interface HttpTransportOptions {
  /** Upper bound of pooled connections per peer. Default 256. */
  maxSockets?: number;
  /** mesh.token, sent to every peer. */
  meshToken?: string | undefined;
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
  readonly #meshToken: string | undefined;

  constructor(options: HttpTransportOptions = {}) {
    this.#meshToken = options.meshToken;
    this.#agent = new http.Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 256, scheduling: "lifo" });
  }

  send(node: NodeRecord, r: OutboundRequest): Promise<IncomingMessage> {
    const { host, port } = parseAddress(node.address);
    const body = r.body;
    const headers = Buffer.isBuffer(body) ? { ...r.headers, "content-length": body.length } : { ...r.headers };
    if (this.#meshToken) headers[H.meshToken] = this.#meshToken;
    const { req, response } = requestWithDeadline({ host, port, method: r.method, path: r.path, headers, agent: this.#agent }, r.deadline);
    if (Buffer.isBuffer(body)) req.end(body);
    else {
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
    }
    return response.catch((err: NodeJS.ErrnoException) => {
      const code = err.code ?? "EUNKNOWN";
      // A reset on a reused keep-alive connection is NOT taken as "never delivered": it cannot be
      // told from a peer dying mid-request, and resending could run a call twice. Draining peers
      // refuse politely (and close) instead, so graceful shutdowns still fail over cleanly.
      const delivered = !NOT_CONNECTED.has(code);
      throw new TransportError(`${node.address}: ${err.message}`, { delivered, code, cause: err });
    });
  }

  async close(): Promise<void> {
    this.#agent.destroy();
  }
}
