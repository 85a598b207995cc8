import http, { type RequestListener } from "node:http";
import type { AddressInfo } from "node:net";

/** Server-side limits against slow or abusive clients; generous for real callers. */
export const SERVER_LIMITS = {
  headersTimeout: 10_000,
  requestTimeout: 60_000,
  keepAliveTimeout: 65_000,
  maxHeaderSize: 16 * 1024,
} as const;

/**
 * A node:http listener with the lifecycle every component shares: `start()` binds (port 0
 * works; `address` is the port actually bound), `close()` stops accepting, waits for requests
 * in flight up to a deadline, then cuts what is left. Both are safe to call twice.
 */
export class Listener {
  readonly server: http.Server;
  #inFlight = 0;
  #idle: (() => void) | undefined;
  #closing: Promise<void> | undefined;

  constructor(private readonly name: string, handler: RequestListener) {
    this.server = http.createServer({ maxHeaderSize: SERVER_LIMITS.maxHeaderSize }, (req, res) => {
      this.#inFlight += 1;
      res.once("close", () => {
        this.#inFlight -= 1;
        if (this.#inFlight === 0) this.#idle?.();
      });
      handler(req, res);
    });
    this.server.headersTimeout = SERVER_LIMITS.headersTimeout;
    this.server.requestTimeout = SERVER_LIMITS.requestTimeout;
    this.server.keepAliveTimeout = SERVER_LIMITS.keepAliveTimeout;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  async start(host: string, port: number): Promise<AddressInfo> {
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
      if (this.#inFlight > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          new Promise<void>((r) => (this.#idle = r)),
          new Promise<void>((r) => (timer = setTimeout(r, timeout))),
        ]);
        clearTimeout(timer);
      }
      this.server.closeAllConnections();
      await closed;
    })();
    return this.#closing;
  }
}
