import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import type { StreamedResponse } from "../http/response.js";
import type { Socket } from "node:net";
import { errorBody, SidecarError } from "../errors.js";
import { H, tagHeaders } from "../http/headers.js";
import { logError } from "../http/reply.js";
import type { Logger } from "../log.js";
import { waitIdle } from "../lifecycle/wait-idle.js";
import { certifiedCaller } from "../tls/mesh.js";
import { dataFrame, END_STREAM, FrameReader, FrameType, headFrame, MeshProtocolError, numberFrame, PREFACE, resetFrame, splitHead, STREAM_WINDOW, type Frame, type RequestHead } from "../transport/mesh/frames.js";
import { FrameWriter } from "../transport/mesh/writer.js";
import type { PeerCall, PeerReply } from "./server.js";

/** Calls in flight on one connection; more are refused (503 OVERLOADED, x-sidecar-refused: the caller goes elsewhere). */
export const MAX_STREAMS = 1024;
/** Largest request head (method, path, headers as JSON): like the HTTP listener's 16 KiB of headers, with JSON's quoting. */
const MAX_HEAD = 32 * 1024;
/** A response body of known length up to this is sent whole, in one frame with its head. */
const WHOLE_BODY = 64 * 1024;
/** A connection with no call for this long is closed (the caller dials again when it needs to). */
const IDLE_MS = 5 * 60_000;
/** RFC 9110 token characters, lower case (the caller sends header names as node:http gives them). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

export interface MeshInboundOptions {
  /** Serves each call: the inbound handler the HTTP listener uses too. */
  serve: (call: PeerCall, reply: PeerReply) => void;
  /** Under mutual TLS, the caller is the CN of the connection's client certificate. */
  mutualTls: boolean;
  log: Logger;
  /** log.requests: one line per call, as the HTTP listener writes. */
  accessLog?: Logger | undefined;
}

/**
 * The callee's side of the mesh protocol (transport/mesh/frames.ts): the connections the inbound
 * listener hands over when their first byte says mesh. Each REQUEST frame becomes a PeerCall
 * for the same handler as HTTP/1.1 requests, so checks, refusals and answers are the same.
 */
export class MeshInbound {
  readonly #sessions = new Set<MeshSession>();
  #closing = false;
  #idle: (() => void) | undefined;

  constructor(private readonly o: MeshInboundOptions) {}

  /** Calls in flight over mesh connections. */
  get inFlight(): number {
    let n = 0;
    for (const s of this.#sessions) n += s.streams;
    return n;
  }

  get connections(): number {
    return this.#sessions.size;
  }

  /** A connection whose first bytes (`first`) begin with the mesh preface's 0. */
  take(socket: Socket, first: Buffer): void {
    if (this.#closing) return void socket.destroy();
    const session = new MeshSession(socket, this.o, () => {
      this.#sessions.delete(session);
      this.#wake();
    }, () => this.#wake());
    this.#sessions.add(session);
    session.push(first);
  }

  #wake(): void {
    if (this.inFlight === 0) this.#idle?.();
  }

  /** GOAWAY to every connection, wait up to `timeout` ms for their calls, then close them. */
  async close(timeout: number): Promise<void> {
    this.#closing = true;
    for (const s of this.#sessions) s.goaway();
    await waitIdle(() => this.inFlight === 0, (wake) => (this.#idle = wake), timeout);
    for (const s of [...this.#sessions]) s.destroy();
  }
}

/** One peer's connection. */
class MeshSession {
  readonly #streams = new Map<number, CalleeStream>();
  readonly #reader: FrameReader;
  readonly #writer: FrameWriter;
  #preface: Buffer | undefined = Buffer.alloc(0);
  #last = 0;
  #goaway = false;
  /** Streams paused because the socket's buffer is full, resumed on its drain. */
  readonly #blocked = new Set<CalleeStream>();
  readonly certified: string | undefined;

  constructor(readonly socket: Socket, readonly o: MeshInboundOptions, private readonly onClose: () => void, readonly onStreamDone: () => void) {
    this.certified = o.mutualTls ? certifiedCaller(socket) : undefined;
    this.#reader = new FrameReader((f) => this.#frame(f));
    this.#writer = new FrameWriter(socket);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.setTimeout(IDLE_MS, () => {
      if (this.#streams.size === 0) {
        this.goaway();
        socket.end();
      }
    });
    socket.on("data", (chunk: Buffer) => this.push(chunk));
    socket.on("drain", () => {
      for (const s of this.#blocked) s.unblock();
      this.#blocked.clear();
    });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      for (const s of this.#streams.values()) s.abort();
      this.#streams.clear();
      this.onClose();
    });
  }

  get streams(): number {
    return this.#streams.size;
  }

  push(chunk: Buffer): void {
    if (this.socket.destroyed) return;
    try {
      if (this.#preface) {
        const got = Buffer.concat([this.#preface, chunk]);
        if (got.length < PREFACE.length) {
          if (!PREFACE.subarray(0, got.length).equals(got)) throw new MeshProtocolError("not the mesh preface");
          this.#preface = got;
          return;
        }
        if (!got.subarray(0, PREFACE.length).equals(PREFACE)) throw new MeshProtocolError("not the mesh preface");
        this.#preface = undefined;
        chunk = got.subarray(PREFACE.length);
        if (chunk.length === 0) return;
      }
      this.#reader.push(chunk);
    } catch (err) {
      if (!(err instanceof MeshProtocolError)) throw err;
      this.o.log.warn("mesh connection closed: protocol error", { remote: this.socket.remoteAddress, error: err.message });
      this.destroy();
    }
  }

  write(frame: Buffer, stream?: CalleeStream): void {
    if (!this.#writer.write(frame) && stream) {
      stream.block();
      this.#blocked.add(stream);
    }
  }

  #frame(f: Frame): void {
    switch (f.type) {
      case FrameType.REQUEST:
        return this.#request(f);
      case FrameType.RESET:
        return this.#streams.get(f.stream)?.abort();
      case FrameType.CREDIT:
        return this.#streams.get(f.stream)?.credit(f.payload.length >= 4 ? f.payload.readUInt32BE(0) : 0);
      default:
        throw new MeshProtocolError(`frame type ${f.type} from a caller`);
    }
  }

  #request(f: Frame): void {
    // A call sent after our GOAWAY was never seen: the caller knows (its id is above the one we named).
    if (this.#goaway) return;
    if (f.stream % 2 !== 1 || f.stream <= this.#last) throw new MeshProtocolError(`stream id ${f.stream} after ${this.#last}`);
    this.#last = f.stream;
    const stream = new CalleeStream(this, f.stream);
    const payloadHead = f.payload.length >= 4 ? f.payload.readUInt32BE(0) : 0;
    if (payloadHead > MAX_HEAD) {
      return stream.error(new SidecarError("HEADERS_TOO_LARGE", `the request head is larger than ${MAX_HEAD} bytes`));
    }
    const { head, body } = splitHead<RequestHead>(f.payload);
    if (typeof head.m !== "string" || typeof head.p !== "string") throw new MeshProtocolError("a request head without method or path");
    if (this.#streams.size >= MAX_STREAMS) {
      return stream.error(new SidecarError("OVERLOADED", `more than ${MAX_STREAMS} calls at once on one mesh connection`), { [H.refused]: "OVERLOADED" });
    }
    const headers = checkedHeaders(head.h);
    if (typeof headers === "string") return stream.error(new SidecarError("BAD_REQUEST", headers));
    // The body is the frame's: its length is what the app is told, whatever the peer claimed.
    headers["content-length"] = String(body.length);
    delete headers["transfer-encoding"];
    const requestId = tagHeaders(headers);
    stream.requestId = requestId;
    this.#streams.set(f.stream, stream);
    if (this.o.accessLog) stream.logAs(head.m, head.p, headers);
    this.o.serve({ method: head.m, path: head.p, headers, body, certified: this.certified, requestId }, stream);
  }

  done(stream: CalleeStream): void {
    this.#streams.delete(stream.id);
    this.#blocked.delete(stream);
    this.onStreamDone();
    if (this.#goaway && this.#streams.size === 0) this.socket.end();
  }

  /** No new calls: those in flight finish, then the connection ends. */
  goaway(): void {
    if (this.#goaway) return;
    this.#goaway = true;
    this.write(numberFrame(FrameType.GOAWAY, 0, this.#last));
    if (this.#streams.size === 0) this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Headers as a peer sent them, checked as node:http would (names, values); a message saying what is wrong otherwise. */
function checkedHeaders(h: Record<string, unknown>): IncomingHttpHeaders | string {
  const out: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    if (!HEADER_NAME.test(k)) return `header name ${JSON.stringify(k.slice(0, 64))} is not a lower-case HTTP token`;
    if (typeof v === "string" && HEADER_VALUE.test(v)) out[k] = v;
    else if (typeof v === "number" && Number.isFinite(v)) out[k] = String(v);
    else if (Array.isArray(v) && v.every((x) => typeof x === "string" && HEADER_VALUE.test(x))) (out as Record<string, string[]>)[k] = v as string[];
    else return `header ${k} has a value that is not valid in HTTP`;
  }
  return out;
}

/** One call on a mesh connection, and its PeerReply. */
class CalleeStream implements PeerReply {
  requestId = "";
  #window = STREAM_WINDOW;
  #upstream: StreamedResponse | undefined;
  #blocked = false;
  #headSent = false;
  #finished = false;
  #onAbort: (() => void) | undefined;
  /** Settles the promise stream() returned, whichever way the stream ends. */
  #settled: (() => void) | undefined;
  #log: ((status: number) => void) | undefined;

  constructor(private readonly session: MeshSession, readonly id: number) {}

  onAbort(fn: () => void): () => void {
    this.#onAbort = fn;
    return () => {
      if (this.#onAbort === fn) this.#onAbort = undefined;
    };
  }

  whole(status: number, headers: OutgoingHttpHeaders, body: Buffer): void {
    if (this.#finished) return;
    this.#headSent = true;
    this.session.write(headFrame(FrameType.RESPONSE, END_STREAM, this.id, { s: status, h: headers as Record<string, string> }, body));
    this.#finish(status);
  }

  stream(status: number, headers: OutgoingHttpHeaders, upstream: StreamedResponse): Promise<void> {
    const length = Number(headers["content-length"]);
    return Number.isFinite(length) && length <= WHOLE_BODY ? this.#collect(status, headers, upstream) : this.#pipe(status, headers, upstream);
  }

  /** A small body of known length: read it all, then one frame with the head. */
  #collect(status: number, headers: OutgoingHttpHeaders, upstream: StreamedResponse): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#settled = resolve;
      const chunks: Buffer[] = [];
      this.#upstream = upstream;
      upstream.on("data", (c: Buffer) => chunks.push(c));
      upstream.once("end", () => {
        this.whole(status, headers, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
        resolve();
      });
      upstream.once("error", (err) => {
        this.error(err);
        reject(err);
      });
    });
  }

  /** Head now, then DATA frames within the window the caller grants, then END. */
  #pipe(status: number, headers: OutgoingHttpHeaders, upstream: StreamedResponse): Promise<void> {
    this.#headSent = true;
    this.session.write(headFrame(FrameType.RESPONSE, 0, this.id, { s: status, h: headers as Record<string, string> }));
    this.#upstream = upstream;
    return new Promise((resolve, reject) => {
      this.#settled = resolve;
      upstream.on("data", (c: Buffer) => {
        if (this.#finished) return;
        this.#window -= c.length;
        this.session.write(dataFrame(FrameType.DATA, this.id, c), this);
        if (this.#window <= 0) upstream.pause();
      });
      upstream.once("end", () => {
        if (this.#finished) return resolve();
        this.session.write(dataFrame(FrameType.END, this.id));
        this.#finish(status);
        resolve();
      });
      upstream.once("error", (err) => {
        this.error(err);
        reject(err);
      });
    });
  }

  error(err: unknown, extraHeaders?: Record<string, string>): void {
    if (this.#finished) return;
    const e = logError(err, this.requestId, this.session.o.log, { requestId: this.requestId });
    if (this.#headSent) {
      this.session.write(resetFrame(this.id, e.code));
      this.#finish(0);
      return;
    }
    const { connection: _connection, ...extra } = extraHeaders ?? {};
    const body = Buffer.from(errorBody(e.code, e.message, this.requestId || undefined));
    this.whole(e.status, { "content-type": "application/json", "content-length": body.length, [H.requestId]: this.requestId, ...e.headers, ...extra }, body);
  }

  credit(bytes: number): void {
    this.#window += bytes;
    if (this.#window > 0 && !this.#blocked) this.#upstream?.resume();
  }

  block(): void {
    this.#blocked = true;
    this.#upstream?.pause();
  }

  unblock(): void {
    this.#blocked = false;
    if (this.#window > 0) this.#upstream?.resume();
  }

  /** The caller reset the stream, or the connection is gone. */
  abort(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#upstream?.destroy();
    const fn = this.#onAbort;
    this.#onAbort = undefined;
    fn?.();
    this.#log?.(0);
    this.#settled?.();
    this.session.done(this);
  }

  logAs(method: string, path: string, headers: IncomingHttpHeaders): void {
    const started = performance.now();
    this.#log = (status) =>
      this.session.o.accessLog!.info("request", {
        listener: "inbound",
        mesh: true,
        method,
        path,
        status,
        ...(status === 0 ? { aborted: true } : {}),
        durationMs: Math.round((performance.now() - started) * 1000) / 1000,
        requestId: this.requestId,
        traceparent: headers.traceparent,
      });
  }

  #finish(status: number): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#onAbort = undefined;
    this.#log?.(status);
    this.session.done(this);
  }
}
