import type { Deadline } from "../deadline.js";
import type { UpstreamResponse } from "../response.js";
import { H1Connection, type H1Request } from "./connection.js";

export interface H1PoolOptions {
  host: string;
  port: number;
  /** Connections open at once; further requests wait for one. Default 256. */
  maxSockets?: number;
  /** How long an idle connection is kept, in ms; shorter when the app's `Keep-Alive: timeout=` hint says so. Default 4000 (under node's 5 s keepAliveTimeout). */
  idleTimeout?: number;
}

interface Waiter {
  r: H1Request;
  deadline: Deadline;
  resolve(res: UpstreamResponse): void;
  reject(err: Error): void;
  off(): void;
}

/**
 * Keep-alive HTTP/1.1 connections to one host:port, reused last-in first-out (as node's Agent
 * with `scheduling: "lifo"`), so a burst's extra connections go idle and are closed. A request
 * beyond `maxSockets` waits for a free connection, within its deadline.
 */
export class H1Pool {
  readonly #o: Required<H1PoolOptions>;
  readonly #authority: string;
  readonly #idle: H1Connection[] = [];
  readonly #waiting: Waiter[] = [];
  readonly #all = new Set<H1Connection>();
  #sweep: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: H1PoolOptions) {
    this.#o = { maxSockets: 256, idleTimeout: 4000, ...options };
    this.#authority = `${options.host.includes(":") ? `[${options.host}]` : options.host}:${options.port}`;
  }

  /** Connections open now (idle or busy). */
  get open(): number {
    return this.#all.size;
  }

  /** Resolves with the response head; rejects with the socket's error (code ECONNREFUSED, ECONNRESET, HPE_*…). The deadline aborts it. */
  request(r: H1Request, deadline: Deadline): Promise<UpstreamResponse> {
    if (this.#closed) return Promise.reject(Object.assign(new Error("the connection pool is closed"), { code: "ERR_POOL_CLOSED" }));
    if (deadline.cancelled) return Promise.reject(new Error("call cancelled"));
    const conn = this.#take() ?? (this.#all.size < this.#o.maxSockets ? this.#connect() : undefined);
    if (conn) return this.#on(conn, r, deadline);
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        r,
        deadline,
        resolve,
        reject,
        off: deadline.onCancel(() => {
          const i = this.#waiting.indexOf(w);
          if (i !== -1) this.#waiting.splice(i, 1);
          reject(new Error("call cancelled"));
        }),
      };
      this.#waiting.push(w);
    });
  }

  #on(conn: H1Connection, r: H1Request, deadline: Deadline): Promise<UpstreamResponse> {
    const off = deadline.onCancel(() => conn.abort(new Error("call cancelled")));
    return conn.exchange(r, this.#authority).then(
      (res) => {
        off();
        // Once the head is out, cancelling ends the body (and with it the connection).
        if (res.whole === undefined) {
          const stop = deadline.onCancel(() => res.destroy());
          res.once("close", stop);
        }
        return res;
      },
      (err: Error) => {
        off();
        throw err;
      },
    );
  }

  #take(): H1Connection | undefined {
    for (let c = this.#idle.pop(); c; c = this.#idle.pop()) if (!c.closed) return c;
    return undefined;
  }

  #connect(): H1Connection {
    const c = new H1Connection(this.#o.host, this.#o.port, { free: (x) => this.#free(x), gone: (x) => this.#gone(x) });
    this.#all.add(c);
    return c;
  }

  #free(c: H1Connection): void {
    if (this.#closed) return c.destroy(null);
    const w = this.#waiting.shift();
    if (w) {
      w.off();
      this.#on(c, w.r, w.deadline).then(w.resolve, w.reject);
      return;
    }
    c.idleSince = performance.now();
    this.#idle.push(c);
    this.#sweep ??= setInterval(() => this.#closeIdle(), Math.min(1000, this.#o.idleTimeout)).unref();
  }

  #gone(c: H1Connection): void {
    this.#all.delete(c);
    const i = this.#idle.indexOf(c);
    if (i !== -1) this.#idle.splice(i, 1);
    // A waiter gets the room the closed connection left.
    const w = this.#closed ? undefined : this.#waiting.shift();
    if (w) {
      w.off();
      this.#on(this.#connect(), w.r, w.deadline).then(w.resolve, w.reject);
    }
  }

  #closeIdle(): void {
    const now = performance.now();
    for (const c of [...this.#idle]) if (now - c.idleSince >= Math.min(c.keepAliveMs ?? Infinity, this.#o.idleTimeout)) c.destroy(null);
    if (this.#idle.length === 0 && this.#sweep) {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
  }

  /** Close every connection (a request in flight fails) and refuse new requests. Idempotent. */
  close(): void {
    this.#closed = true;
    if (this.#sweep) clearInterval(this.#sweep);
    this.#sweep = undefined;
    for (const w of this.#waiting.splice(0)) {
      w.off();
      w.reject(Object.assign(new Error("the connection pool is closed"), { code: "ERR_POOL_CLOSED" }));
    }
    for (const c of [...this.#all]) c.destroy(null);
  }
}
