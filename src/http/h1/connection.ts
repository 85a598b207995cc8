import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { createRequire } from "node:module";
import { connect, type Socket } from "node:net";
import type { Readable } from "node:stream";
import type { UpstreamResponse } from "../response.js";
import { H1Body } from "./body.js";
import { incomingHeaders, requestHead, type Framing } from "./headers.js";

/** node's own HTTP/1.1 parser (llhttp), the one node:http reads every response with. */
interface Parser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): number | Error | undefined;
  close(): void;
  [callback: number]: unknown;
}
const { HTTPParser } = createRequire(import.meta.url)("_http_common") as {
  HTTPParser: { new (): Parser; RESPONSE: number; kOnHeaders: number; kOnHeadersComplete: number; kOnBody: number; kOnMessageComplete: number; kLenientNone: number };
};

export interface H1Request {
  method: string;
  path: string;
  headers: OutgoingHttpHeaders;
  /** A buffer (sent with its length), or a stream: sent as declared by `length`, else chunked. */
  body: Buffer | Readable;
  /** The stream's declared content-length, when it has one. */
  length?: number | undefined;
}

/** Methods whose empty request body goes without a content-length (RFC 9110 §8.6). */
const NO_CONTENT = new Set(["GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"]);
const EMPTY = Buffer.alloc(0);

/** An error with a node-style code, as node:http raises them (ECONNRESET "socket hang up"). */
function coded(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/** One request and its response on a connection. */
class Exchange {
  status = 0;
  headers: IncomingHttpHeaders | undefined;
  parts: Buffer[] = [];
  body: H1Body | undefined;
  /** A 1xx head was read: its message-complete is not the answer's. */
  informational = false;
  complete = false;
  keepAlive = false;
  /** The whole request left (a streamed body: its end was written). */
  sent = false;
  answered = false;
  detach: (() => void) | undefined;

  constructor(
    readonly headOnly: boolean,
    readonly resolve: (r: UpstreamResponse) => void,
    readonly reject: (err: Error) => void,
  ) {}
}

export interface ConnectionHooks {
  /** The exchange finished and the connection may carry another. */
  free(c: H1Connection): void;
  /** The connection is closed for good. */
  gone(c: H1Connection): void;
}

/**
 * One keep-alive HTTP/1.1 connection to the app, one exchange at a time, read with node's llhttp
 * parser. What node:http's ClientRequest, IncomingMessage and Agent do per request (an
 * EventEmitter and a stream each, a socket handed around by events) is done here with one object
 * per exchange, and a body stream only when the answer does not arrive in one read.
 */
export class H1Connection {
  readonly socket: Socket;
  readonly #parser: Parser;
  readonly #hooks: ConnectionHooks;
  #ex: Exchange | undefined;
  #extra: string[] = [];
  #broken: Error | undefined;
  closed = false;
  /** When it last became idle (performance.now()); the pool closes it after its idle limit. */
  idleSince = 0;
  /** The app's `Keep-Alive: timeout=` hint, in ms, less a second (as node's Agent takes it). */
  keepAliveMs: number | undefined;

  constructor(host: string, port: number, hooks: ConnectionHooks) {
    this.#hooks = hooks;
    this.socket = connect({ host, port, noDelay: true });
    const p = new HTTPParser();
    p.initialize(HTTPParser.RESPONSE, {}, 0, HTTPParser.kLenientNone);
    p[HTTPParser.kOnHeaders] = (raw: string[]) => {
      this.#extra = this.#extra.concat(raw);
    };
    p[HTTPParser.kOnHeadersComplete] = this.#onHead;
    p[HTTPParser.kOnBody] = this.#onBody;
    p[HTTPParser.kOnMessageComplete] = this.#onComplete;
    this.#parser = p;
    this.socket.on("data", this.#onData);
    this.socket.once("end", this.#onEnd);
    this.socket.once("error", (err) => this.destroy(err));
    this.socket.once("close", () => this.destroy(coded("socket hang up", "ECONNRESET")));
  }

  /** Send a request; resolves with the response head (whole when the body came in the same read). */
  exchange(r: H1Request, authority: string): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(coded("socket hang up", "ECONNRESET"));
      const buffered = Buffer.isBuffer(r.body);
      let framing: Framing;
      if (Buffer.isBuffer(r.body)) framing = r.body.length > 0 || !NO_CONTENT.has(r.method) ? { length: r.body.length } : "none";
      else framing = r.length !== undefined ? { length: r.length } : "chunked";
      let head: string;
      try {
        head = requestHead(r.method, r.path, authority, r.headers, framing);
      } catch (err) {
        // Nothing was written: the connection is still good.
        this.#hooks.free(this);
        reject(err as Error);
        return;
      }
      const ex = new Exchange(r.method === "HEAD", resolve, reject);
      this.#ex = ex;
      const s = this.socket;
      if (buffered) {
        s.cork();
        s.write(head, "latin1");
        if ((r.body as Buffer).length > 0) s.write(r.body as Buffer);
        s.uncork();
        ex.sent = true;
      } else {
        s.write(head, "latin1");
        this.#stream(ex, r.body as Readable, framing === "chunked");
      }
    });
  }

  /** A streamed request body, with backpressure; a chunked one framed here. */
  #stream(ex: Exchange, body: Readable, chunked: boolean): void {
    const s = this.socket;
    const onDrain = () => body.resume();
    const onData = (c: Buffer) => {
      if (c.length === 0) return; // a zero-length chunk would end a chunked body
      let ok: boolean;
      if (chunked) {
        s.cork();
        s.write(`${c.length.toString(16)}\r\n`, "latin1");
        s.write(c);
        ok = s.write("\r\n", "latin1");
        s.uncork();
      } else ok = s.write(c);
      if (!ok) body.pause();
    };
    const onEnd = () => {
      if (chunked) s.write("0\r\n\r\n", "latin1");
      ex.detach?.();
      ex.sent = true;
    };
    const onError = (err: Error) => this.destroy(err);
    s.on("drain", onDrain);
    body.on("data", onData);
    body.once("end", onEnd);
    body.once("error", onError);
    ex.detach = () => {
      ex.detach = undefined;
      s.off("drain", onDrain);
      body.off("data", onData);
      body.off("end", onEnd);
      body.off("error", onError);
    };
  }

  #onHead = (_major: number, _minor: number, raw: string[], _m: unknown, _u: unknown, status: number, _text: unknown, upgrade: boolean, keepAlive: boolean): number => {
    const ex = this.#ex;
    const all = this.#extra.length > 0 ? this.#extra.concat(raw) : raw;
    this.#extra = [];
    if (!ex || ex.headers) {
      this.#broken ??= new Error("the app sent a response no request asked for");
      return 0;
    }
    if (upgrade || status === 101) {
      this.#broken ??= new Error("the app answered with a protocol upgrade, which the sidecar does not forward");
      return 0;
    }
    if (status < 200) {
      ex.informational = true;
      return 0;
    }
    ex.status = status;
    ex.headers = incomingHeaders(all);
    ex.keepAlive = keepAlive;
    const hint = ex.headers["keep-alive"];
    if (typeof hint === "string") {
      const s = /timeout=(\d+)/i.exec(hint);
      if (s) this.keepAliveMs = Math.max(Number(s[1]) * 1000 - 1000, 0);
    }
    // A HEAD answer's content-length describes a body that is not sent.
    return ex.headOnly ? 1 : 0;
  };

  #onBody = (chunk: Buffer): void => {
    const ex = this.#ex;
    if (!ex) return;
    if (ex.body) {
      if (!ex.body.push(chunk)) this.socket.pause();
    } else ex.parts.push(chunk);
  };

  #onComplete = (): void => {
    const ex = this.#ex;
    if (!ex) return;
    if (ex.informational) {
      ex.informational = false;
      return;
    }
    ex.complete = true;
    ex.body?.push(null);
  };

  #onData = (chunk: Buffer): void => {
    const r = this.#parser.execute(chunk);
    if (r instanceof Error) return this.destroy(r);
    this.#settle();
  };

  #onEnd = (): void => {
    // A body delimited by the connection's close ends here.
    const r = this.#parser.finish();
    if (r instanceof Error) return this.destroy(r);
    this.#settle();
  };

  /** After each read: hand out the head, and release the connection once the answer is complete. */
  #settle(): void {
    const ex = this.#ex;
    if (ex?.headers && !ex.answered) {
      ex.answered = true;
      if (ex.complete) {
        const whole = ex.parts.length === 0 ? EMPTY : ex.parts.length === 1 ? ex.parts[0]! : Buffer.concat(ex.parts);
        ex.resolve({ statusCode: ex.status, headers: ex.headers, whole });
      } else {
        const body = new H1Body(ex.status, ex.headers, this);
        ex.body = body;
        for (const p of ex.parts) body.push(p);
        ex.resolve(body);
      }
      ex.parts = [];
    }
    // Bytes no request asked for (after a complete answer, or on an idle connection): that connection is done.
    if (this.#broken) return this.destroy(this.#broken);
    if (!ex?.complete) return;
    this.#ex = undefined;
    // An answer that came before the request was all sent leaves the connection mid-request.
    if (ex.keepAlive && ex.sent && !this.closed) {
      // A body read with backpressure may have left the socket paused.
      this.socket.resume();
      this.#hooks.free(this);
    }
    else {
      ex.detach?.();
      this.destroy(null);
    }
  }

  /** BodySource: the reader wants more. */
  resume(): void {
    if (!this.closed) this.socket.resume();
  }

  /** BodySource: a body stream was destroyed. Before its end, its connection goes too; a body already read has left the connection to others. */
  abandon(body: H1Body, err: Error | null): void {
    if (this.#ex?.body === body && !this.#ex.complete) this.destroy(err ?? coded("the response body was abandoned", "ECONNRESET"));
  }

  /** Cancel whatever is in flight (a deadline, the caller gone): the connection goes with it. */
  abort(err: Error): void {
    this.destroy(err);
  }

  /** Close for good; an exchange in flight fails with `err` (its head not yet out), or its body does. */
  destroy(err: Error | null): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    this.#parser.close();
    const ex = this.#ex;
    this.#ex = undefined;
    this.#hooks.gone(this);
    if (!ex) return;
    ex.detach?.();
    const e = err ?? coded("socket hang up", "ECONNRESET");
    if (!ex.answered) ex.reject(e);
    else if (ex.body && !ex.complete) ex.body.destroy(e);
  }

  /** Is an exchange in flight? */
  get busy(): boolean {
    return this.#ex !== undefined;
  }
}
