import http, { type RequestListener } from "node:http";
import https from "node:https";
import { ERRORS, type ErrorCode } from "../errors.js";
import { endSocketWithError } from "./reply.js";
import type { Logger } from "../log.js";
import { waitIdle } from "../lifecycle/wait-idle.js";
import { closedError } from "../lifecycle/component.js";
import { requestFields, tagRequest } from "./headers.js";
import type { AddressInfo, Socket } from "node:net";

/** What serves the connections that speak the mesh protocol (inbound/mesh.ts), beside node:http. */
export interface MeshListener {
  /** A connection whose first bytes (`first`) start with 0. */
  take(socket: Socket, first: Buffer): void;
  /** Tell every connection to go away, let their calls finish within `timeout` ms, close them. */
  close(timeout: number): Promise<void>;
}

/** Server-side limits against slow or abusive clients; generous for real callers. */
export const SERVER_LIMITS = {
  headersTimeout: 10_000,
  requestTimeout: 60_000,
  keepAliveTimeout: 65_000,
  maxHeaderSize: 16 * 1024,
} as const;

/** The answer to a request node:http could not parse: status (from the catalogue), stable code, message. */
function clientErrorOf(err: NodeJS.ErrnoException): [number, ErrorCode, string] {
  const [code, message]: [ErrorCode, string] =
    err.code === "HPE_HEADER_OVERFLOW" ? ["HEADERS_TOO_LARGE", `the request headers are larger than ${SERVER_LIMITS.maxHeaderSize} bytes`]
    : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? ["REQUEST_TIMEOUT", "the request was not received in time (headers or body too slow)"]
    : ["BAD_REQUEST", `the request is not valid HTTP/1.1 (${err.code ?? "parse error"})`];
  return [ERRORS[code].status, code, message];
}

/**
 * A node:http listener with the lifecycle every component shares: `start()` binds (port 0
 * works; `address` is the port actually bound), `close()` stops accepting, waits for requests
 * in flight up to a deadline, then cuts what is left. Both are safe to call twice. With `mesh`,
 * connections that start with the mesh protocol's preface go to it instead of node:http.
 */
export class Listener {
  readonly server: http.Server | https.Server;
  #inFlight = 0;
  #idle: (() => void) | undefined;
  #closing: Promise<void> | undefined;
  #mesh: MeshListener | undefined;
  /** Connections whose first byte has not come yet. */
  readonly #sniffing = new Set<Socket>();

  /**
   * With `tls` (https.createServer options), the listener serves HTTPS. With `accessLog`, one
   * line per request (log.requests). Every request is tagged with its request id and traceparent.
   */
  constructor(
    private readonly name: string,
    handler: RequestListener,
    options: { tls?: https.ServerOptions | undefined; accessLog?: Logger | undefined; headersTimeout?: number; requestTimeout?: number; mesh?: MeshListener | undefined } = {},
  ) {
    const { tls, accessLog } = options;
    const headersTimeout = options.headersTimeout ?? SERVER_LIMITS.headersTimeout;
    const requestTimeout = options.requestTimeout ?? SERVER_LIMITS.requestTimeout;
    const counted: RequestListener = (req, res) => {
      this.#inFlight += 1;
      tagRequest(req);
      const started = accessLog ? performance.now() : 0;
      res.once("close", () => {
        this.#inFlight -= 1;
        if (this.#inFlight === 0) this.#idle?.();
        if (accessLog) {
          accessLog.info("request", {
            listener: name,
            method: req.method,
            path: req.url,
            status: res.headersSent ? res.statusCode : 0,
            ...(res.writableFinished ? {} : { aborted: true }),
            durationMs: Math.round((performance.now() - started) * 1000) / 1000,
            ...requestFields(req),
          });
        }
      });
      handler(req, res);
    };
    // Node checks the two timeouts every connectionsCheckingInterval (30 s by default): check often
    // enough that a slow client is cut close to its deadline.
    const limits = { maxHeaderSize: SERVER_LIMITS.maxHeaderSize, connectionsCheckingInterval: Math.min(1_000, headersTimeout) };
    this.server = tls ? https.createServer({ ...tls, ...limits }, counted) : http.createServer(limits, counted);
    // Requests too broken to reach a handler still get the JSON error body, then the connection closes.
    this.server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
      if (!socket.writable || err.code === "ECONNRESET") return socket.destroy();
      const [status, code, message] = clientErrorOf(err);
      endSocketWithError(socket, status, code, message);
    });
    if (options.mesh) this.#sniff(options.mesh, tls !== undefined, headersTimeout);
    this.server.headersTimeout = headersTimeout;
    this.server.requestTimeout = requestTimeout;
    this.server.keepAliveTimeout = SERVER_LIMITS.keepAliveTimeout;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Look at each connection's first byte: 0 (never the start of an HTTP request) hands the
   * connection to the mesh protocol, anything else to node:http as if it had come straight
   * there (the byte put back first). Over TLS, after the handshake. A connection that sends
   * nothing is closed after `timeout` ms, as node:http closes one that sends no headers.
   */
  #sniff(mesh: MeshListener, tls: boolean, timeout: number): void {
    const event = tls ? "secureConnection" : "connection";
    const http = this.server.listeners(event) as ((socket: Socket) => void)[];
    this.server.removeAllListeners(event);
    this.server.on(event, (socket: Socket) => {
      this.#sniffing.add(socket);
      const timer = setTimeout(() => socket.destroy(), timeout);
      const done = () => {
        clearTimeout(timer);
        this.#sniffing.delete(socket);
      };
      socket.once("close", done);
      socket.once("data", (first: Buffer) => {
        done();
        socket.off("close", done);
        if (first[0] === 0) return mesh.take(socket, first);
        socket.pause();
        socket.unshift(first);
        for (const l of http) l.call(this.server, socket);
        socket.resume();
      });
    });
    this.#mesh = mesh;
  }

  /** Listen on host:port. After close() it rejects with CLOSED: a closed listener is not reopened. */
  async start(host: string, port: number): Promise<AddressInfo> {
    if (this.#closing) throw closedError(`${this.name} listener`);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        reject(new Error(`cannot listen on ${host}:${port} for the ${this.name} listener: ${err.message}`, { cause: err }));
      };
      this.server.once("error", onError);
      this.server.listen(port, host, () => {
        this.server.off("error", onError);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  get address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Stop accepting, let in-flight requests finish within `timeout` ms, then close every connection. */
  close(timeout: number): Promise<void> {
    this.#closing ??= (async () => {
      if (!this.server.listening) return;
      const closed = new Promise<void>((r) => this.server.close(() => r()));
      this.server.closeIdleConnections();
      for (const s of this.#sniffing) s.destroy();
      await Promise.all([waitIdle(() => this.#inFlight === 0, (wake) => (this.#idle = wake), timeout), this.#mesh?.close(timeout)]);
      this.server.closeAllConnections();
      await closed;
    })();
    return this.#closing;
  }
}
