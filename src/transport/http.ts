import type { Agent, IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";
import { H } from "../http/headers.js";
import { requestWithDeadline } from "../http/request.js";
import type { NodeRecord } from "../registry/types.js";
import { peerClient, type MeshTls, type RequestFn } from "../tls/mesh.js";
import { TransportError, type OutboundRequest, type Transport } from "./types.js";

/**
 * Errors raised before a request could be sent: no connection, or a TLS handshake that failed
 * (a peer whose certificate is not trusted never sees the request).
 */
const NOT_CONNECTED = new Set([
  "ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "EADDRNOTAVAIL",
  "ERR_TLS_CERT_ALTNAME_INVALID", "DEPTH_ZERO_SELF_SIGNED_CERT", "SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID", "EPROTO",
]);

/** A connection error that proves the request was never sent (refused, unreachable, a TLS handshake or alert that failed). */
export function neverSent(code: string): boolean {
  return NOT_CONNECTED.has(code) || code.startsWith("ERR_SSL_");
}

export interface HttpTransportOptions {
  /** Upper bound of pooled connections per peer. Default 256. */
  maxSockets?: number;
  /** mesh.token, sent to every peer. */
  meshToken?: string | undefined;
  /** mesh.tls: dial peers over (mutual) TLS. */
  tls?: MeshTls | undefined;
}

/** Joins host and port as "host:port" (IPv6 as "[::1]:8082"); parseAddress splits it again. */
export function formatAddress(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** Splits "host:port" (IPv6 as "[::1]:8082"). */
export function parseAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  return { host, port: Number(address.slice(colon + 1)) };
}

/**
 * The default transport: HTTP/1.1 to the peer sidecar's inbound listener over
 * pooled keep-alive connections.
 */
export class HttpTransport implements Transport {
  readonly kind = "http";
  readonly #agent: Agent;
  readonly #request: RequestFn;
  readonly #meshToken: string | undefined;

  constructor(options: HttpTransportOptions = {}) {
    this.#meshToken = options.meshToken;
    const client = peerClient(options.tls, { keepAlive: true, maxSockets: options.maxSockets ?? 256, scheduling: "lifo" });
    this.#agent = client.agent;
    this.#request = client.request;
  }

  send(node: NodeRecord, r: OutboundRequest): Promise<IncomingMessage> {
    const { host, port } = parseAddress(node.address);
    const body = r.body;
    const headers = Buffer.isBuffer(body) ? { ...r.headers, "content-length": body.length } : { ...r.headers };
    if (this.#meshToken) headers[H.meshToken] = this.#meshToken;
    const { req, response } = requestWithDeadline({ host, port, method: r.method, path: r.path, headers, agent: this.#agent }, r.deadline, this.#request);
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
        // Over TLS, "connected" means the handshake is done (a verified peer).
        const tls = (socket as Partial<TLSSocket>).encrypted === true;
        const ready = tls ? (socket as TLSSocket).authorized : !socket.connecting;
        if (ready) go();
        else socket.once(tls ? "secureConnect" : "connect", go);
      });
    }
    return response.catch((err: NodeJS.ErrnoException) => {
      const code = err.code ?? "EUNKNOWN";
      // A reset on a reused keep-alive connection is NOT taken as "never delivered": it cannot be
      // told from a peer dying mid-request, and resending could run a call twice. Draining peers
      // refuse politely (and close) instead, so graceful shutdowns still fail over cleanly.
      // A TLS alert from the peer (ERR_SSL_*: e.g. it refused our certificate) means its HTTP layer never saw the request.
      const delivered = !neverSent(code);
      throw new TransportError(`${node.address}: ${err.message}`, { delivered, code, cause: err });
    });
  }

  async close(): Promise<void> {
    this.#agent.destroy();
  }
}
