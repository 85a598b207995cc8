import net from "node:net";
import { Readable } from "node:stream";
import tls from "node:tls";
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { TransportError, type OutboundRequest, type StreamedResponse, type UpstreamResponse } from "../types.js";
import { H } from "../../http/headers.js";
import { neverSent } from "../http.js";
import { FrameWriter } from "./writer.js";
import { END_STREAM, FrameReader, FrameType, MeshProtocolError, numberFrame, PREFACE, resetFrame, splitHead, headFrame, type Frame, type ResponseHead } from "./frames.js";

/** A response arriving over a mesh stream: its body is pushed as DATA frames come, and consumed bytes are granted back. */
class MeshResponse extends Readable implements StreamedResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  /** Body bytes received but not yet granted back to the callee. */
  owed = 0;

  constructor(head: ResponseHead, private readonly grant: (bytes: number) => void) {
    super();
    this.statusCode = head.s;
    this.headers = head.h as IncomingHttpHeaders;
  }

  override _read(): void {
    if (this.owed > 0) {
      this.grant(this.owed);
      this.owed = 0;
    }
  }
}

interface Pending {
  resolve(res: UpstreamResponse): void;
  reject(err: TransportError): void;
  response?: MeshResponse;
  offCancel(): void;
}

export interface MeshConnectionOptions {
  host: string;
  port: number;
  /** tls.connect options (mesh.tls): dial over (mutual) TLS. */
  tls?: tls.ConnectionOptions | undefined;
  /** Called once the connection can take no more streams (closed, or the peer is going away). */
  onRetire: (c: MeshConnection) => void;
}

/**
 * The caller's side of one mesh connection to a peer sidecar: streams are odd ids counting up;
 * each call is one REQUEST frame; the answer streams back as RESPONSE, DATA..., END.
 *
 * What a failure means for resending (TransportError.delivered): before the connection is up,
 * nothing was sent (a refused or untrusted peer, or one that answered the preface as HTTP: it
 * does not speak mesh, code MESH_UNSUPPORTED); after GOAWAY, streams above the peer's last id
 * were never seen; any other loss of a connection with calls on it may have run them.
 */
export class MeshConnection {
  readonly #socket: net.Socket;
  readonly #streams = new Map<number, Pending>();
  readonly #reader: FrameReader;
  readonly #writer: FrameWriter;
  #next = 1;
  #connected = false;
  /** A frame arrived: the peer speaks mesh. */
  #spoken = false;
  #retired = false;

  constructor(private readonly o: MeshConnectionOptions) {
    const socket = o.tls ? tls.connect({ host: o.host, port: o.port, ...o.tls }) : net.connect({ host: o.host, port: o.port });
    this.#socket = socket;
    this.#writer = new FrameWriter(socket);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.once(o.tls ? "secureConnect" : "connect", () => {
      this.#connected = true;
    });
    this.#reader = new FrameReader((f) => this.#frame(f));
    socket.on("data", (chunk: Buffer) => {
      try {
        this.#reader.push(chunk);
      } catch (err) {
        const mismatch = !this.#spoken;
        this.#fail(mismatch ? "MESH_UNSUPPORTED" : "MESH_PROTOCOL", (err as Error).message, mismatch ? false : undefined);
        socket.destroy();
      }
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      const code = err.code ?? "EUNKNOWN";
      const never = !this.#connected || neverSent(code);
      this.#fail(code, err.message, never ? false : undefined, err);
    });
    socket.on("close", () => this.#fail("ECONNRESET", "the peer closed the mesh connection", this.#connected ? undefined : false));
    socket.write(PREFACE);
  }

  /** Takes new calls: not closed, not told to go away. */
  get usable(): boolean {
    return !this.#retired;
  }

  /** Calls in flight on this connection. */
  get streams(): number {
    return this.#streams.size;
  }

  send(r: OutboundRequest, token: string | undefined): Promise<UpstreamResponse> {
    const id = this.#next;
    this.#next += 2;
    const body = r.body as Buffer;
    const headers: OutgoingHttpHeaders = { ...r.headers, "content-length": body.length };
    if (token) headers[H.meshToken] = token;
    return new Promise<UpstreamResponse>((resolve, reject) => {
      const pending: Pending = {
        resolve,
        reject,
        offCancel: r.deadline.onCancel(() => {
          if (!this.#streams.has(id)) return;
          this.#streams.delete(id);
          this.#write(resetFrame(id, "CANCELLED"));
          if (pending.response) pending.response.destroy(new Error("call cancelled"));
          else reject(new TransportError(`${this.o.host}:${this.o.port}: call cancelled`, { delivered: true, code: "CANCELLED" }));
          this.#settle();
        }),
      };
      this.#streams.set(id, pending);
      this.#write(headFrame(FrameType.REQUEST, END_STREAM, id, { m: r.method, p: r.path, h: headers as Record<string, string> }, body));
    });
  }

  /** Close at once; calls in flight fail as a lost connection. */
  destroy(): void {
    this.#retire();
    this.#socket.destroy();
  }

  #write(frame: Buffer): void {
    this.#writer.write(frame);
  }

  #frame(f: Frame): void {
    this.#spoken = true;
    if (f.type === FrameType.GOAWAY) return this.#goaway(f.payload.readUInt32BE(0));
    const p = this.#streams.get(f.stream);
    if (!p) return; // a stream we reset meanwhile
    switch (f.type) {
      case FrameType.RESPONSE: {
        const { head, body } = splitHead<ResponseHead>(f.payload);
        if (f.flags & END_STREAM) {
          // Whole: no stream to make. A copy, so the body does not hold the socket's chunk.
          this.#streams.delete(f.stream);
          p.offCancel();
          p.resolve({ statusCode: head.s, headers: head.h as IncomingHttpHeaders, whole: Buffer.from(body) });
          this.#settle();
          return;
        }
        const res = new MeshResponse(head, (n) => this.#write(numberFrame(FrameType.CREDIT, f.stream, n)));
        if (body.length > 0) res.push(body);
        p.response = res;
        p.resolve(res);
        return;
      }
      case FrameType.DATA: {
        const res = p.response;
        if (!res) throw new MeshProtocolError("DATA before RESPONSE");
        // Grant it back at once while the reader keeps up; else when it reads again (_read).
        if (res.push(f.payload)) this.#write(numberFrame(FrameType.CREDIT, f.stream, f.payload.length));
        else res.owed += f.payload.length;
        return;
      }
      case FrameType.END:
        if (p.response) this.#end(f.stream, p, p.response);
        return;
      case FrameType.RESET: {
        const code = f.payload.toString("latin1");
        this.#streams.delete(f.stream);
        p.offCancel();
        if (p.response) p.response.destroy(new Error(`the peer broke off the response (${code})`));
        else p.reject(new TransportError(`${this.o.host}:${this.o.port}: the peer reset the call (${code})`, { delivered: true, code }));
        this.#settle();
        return;
      }
      default:
        throw new MeshProtocolError(`an unknown frame type ${f.type}`);
    }
  }

  #end(id: number, p: Pending, res: MeshResponse): void {
    res.push(null);
    this.#streams.delete(id);
    p.offCancel();
    this.#settle();
  }

  /** The peer is going away: streams above `last` it never saw (safe to send elsewhere); the rest finish. */
  #goaway(last: number): void {
    this.#retire();
    for (const [id, p] of this.#streams) {
      if (id <= last) continue;
      this.#streams.delete(id);
      p.offCancel();
      p.reject(new TransportError(`${this.o.host}:${this.o.port}: the peer is shutting down (GOAWAY)`, { delivered: false, code: "GOAWAY" }));
    }
    this.#settle();
  }

  /** A retired connection closes once its last call is answered. */
  #settle(): void {
    if (this.#retired && this.#streams.size === 0) this.#socket.end();
  }

  #retire(): void {
    if (this.#retired) return;
    this.#retired = true;
    this.o.onRetire(this);
  }

  /** The connection is lost: every call on it fails; `delivered` false when nothing can have been sent. */
  #fail(code: string, message: string, delivered: false | undefined, cause?: Error): void {
    this.#retire();
    for (const [id, p] of this.#streams) {
      this.#streams.delete(id);
      p.offCancel();
      if (p.response) p.response.destroy(new Error(`${message} (${code})`));
      else p.reject(new TransportError(`${this.o.host}:${this.o.port}: ${message}`, { delivered: delivered ?? true, code, cause }));
    }
  }
}
