/**
 * The sidecar-to-sidecar mesh protocol, version 1: many calls multiplexed over one persistent
 * connection to a peer's inbound port, in length-prefixed frames. It saves, per call, the
 * caller's HTTP client request and the callee's HTTP server request (parsing, header objects,
 * two streams each way), which profiling showed is most of what one sidecar hop costs.
 *
 * A connection starts with PREFACE from the caller. Its first byte, 0, can never begin an HTTP
 * request, so the same inbound port serves both (the listener looks at the first byte).
 * Every frame: u32 length (of what follows it), u8 type, u8 flags, u32 stream id, payload.
 */

export const MESH_VERSION = 1;
/** The caller's first bytes on a mesh connection. */
export const PREFACE = Buffer.from("\0SIDECAR-MESH/1\n", "latin1");

export const FrameType = {
  /** caller → callee: head {m, p, h} and the whole body (always END in version 1). */
  REQUEST: 1,
  /** callee → caller: head {s, h} and the first (with END: the whole) body. */
  RESPONSE: 2,
  /** callee → caller: more of a response body. */
  DATA: 3,
  /** callee → caller: the response body is complete. */
  END: 4,
  /** either way: the stream is abandoned (payload: a reason code). Caller: cancelled; callee: the body broke off. */
  RESET: 5,
  /** caller → callee: u32 bytes of response body consumed; the callee may send that much more. */
  CREDIT: 6,
  /** callee → caller: u32 last stream id it will answer; later ones were never seen, and no new ones are taken. */
  GOAWAY: 7,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** The frame completes its stream (REQUEST, RESPONSE). */
export const END_STREAM = 1;

/** Bytes before a frame's payload. */
export const FRAME_HEADER = 10;
/** Largest body a mesh REQUEST carries; a larger (or streamed) body goes over HTTP/1.1. */
export const MAX_MESH_BODY = 1024 * 1024;
/** Largest frame either side accepts: a body plus room for its head. A larger one ends the connection. */
export const MAX_FRAME = MAX_MESH_BODY + 64 * 1024;
/** Response body bytes a callee may send on one stream before the caller grants more (CREDIT). */
export const STREAM_WINDOW = 256 * 1024;

export interface RequestHead {
  /** method */
  m: string;
  /** path and query on the callee app */
  p: string;
  /** headers, lower-case names */
  h: Record<string, string | string[]>;
}

export interface ResponseHead {
  /** status */
  s: number;
  h: Record<string, string | string[] | number>;
}

/** A frame that breaks the protocol (too large, malformed head): the connection is closed. */
export class MeshProtocolError extends Error {
  override readonly name = "MeshProtocolError";
}

function header(buf: Buffer, length: number, type: FrameType, flags: number, stream: number): void {
  buf.writeUInt32BE(length - 4, 0);
  buf[4] = type;
  buf[5] = flags;
  buf.writeUInt32BE(stream, 6);
}

/** A frame with a JSON head and an optional body: u32 head length, head, body. One buffer, one write. */
export function headFrame(type: FrameType, flags: number, stream: number, head: RequestHead | ResponseHead, body?: Buffer | Uint8Array): Buffer {
  const json = JSON.stringify(head);
  const headLength = Buffer.byteLength(json);
  const bodyLength = body?.length ?? 0;
  const buf = Buffer.allocUnsafe(FRAME_HEADER + 4 + headLength + bodyLength);
  header(buf, buf.length, type, flags, stream);
  buf.writeUInt32BE(headLength, FRAME_HEADER);
  buf.write(json, FRAME_HEADER + 4, headLength, "utf8");
  if (body && bodyLength > 0) buf.set(body, FRAME_HEADER + 4 + headLength);
  return buf;
}

/** A frame whose payload is raw bytes (DATA) or nothing (END). */
export function dataFrame(type: FrameType, stream: number, payload?: Buffer | Uint8Array): Buffer {
  const length = payload?.length ?? 0;
  const buf = Buffer.allocUnsafe(FRAME_HEADER + length);
  header(buf, buf.length, type, 0, stream);
  if (payload && length > 0) buf.set(payload, FRAME_HEADER);
  return buf;
}

/** A frame whose payload is one u32 (CREDIT, GOAWAY). */
export function numberFrame(type: FrameType, stream: number, value: number): Buffer {
  const buf = Buffer.allocUnsafe(FRAME_HEADER + 4);
  header(buf, buf.length, type, 0, stream);
  buf.writeUInt32BE(value, FRAME_HEADER);
  return buf;
}

/** A RESET frame with its reason code (ASCII). */
export function resetFrame(stream: number, code: string): Buffer {
  return dataFrame(FrameType.RESET, stream, Buffer.from(code.slice(0, 64), "latin1"));
}

/** Split a head frame's payload into its parsed head and its body (a view, not a copy). */
export function splitHead<T extends RequestHead | ResponseHead>(payload: Buffer): { head: T; body: Buffer } {
  if (payload.length < 4) throw new MeshProtocolError("a head frame shorter than its head length");
  const n = payload.readUInt32BE(0);
  if (4 + n > payload.length) throw new MeshProtocolError("a head longer than its frame");
  let head: unknown;
  try {
    head = JSON.parse(payload.toString("utf8", 4, 4 + n));
  } catch {
    throw new MeshProtocolError("a frame head that is not JSON");
  }
  if (typeof head !== "object" || head === null || typeof (head as { h?: unknown }).h !== "object" || (head as { h?: unknown }).h === null) {
    throw new MeshProtocolError("a frame head without headers");
  }
  return { head: head as T, body: payload.subarray(4 + n) };
}

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/**
 * Cuts a byte stream into frames. Frames that arrive whole in one chunk are views into it (no
 * copy); only a frame spread over chunks is joined. Throws MeshProtocolError on a frame larger
 * than `max` or shorter than its header, before buffering it.
 */
export class FrameReader {
  #chunks: Buffer[] = [];
  #size = 0;

  constructor(private readonly onFrame: (frame: Frame) => void, private readonly max = MAX_FRAME) {}

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    while (this.#size >= FRAME_HEADER) {
      const first = this.#chunks[0]!.length >= FRAME_HEADER ? this.#chunks[0]! : this.#join();
      const length = first.readUInt32BE(0);
      if (length > this.max || length < FRAME_HEADER - 4) throw new MeshProtocolError(`a frame of ${length} bytes (at most ${this.max})`);
      if (this.#size < length + 4) return;
      const frame = this.#take(length + 4);
      this.onFrame({ type: frame[4]!, flags: frame[5]!, stream: frame.readUInt32BE(6), payload: frame.subarray(FRAME_HEADER) });
    }
  }

  /** Bytes held for a frame not yet complete. */
  get buffered(): number {
    return this.#size;
  }

  #join(): Buffer {
    const all = Buffer.concat(this.#chunks, this.#size);
    this.#chunks = [all];
    return all;
  }

  #take(n: number): Buffer {
    let first = this.#chunks[0]!;
    if (first.length < n) first = this.#join();
    const out = first.subarray(0, n);
    if (first.length === n) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
    this.#size -= n;
    return out;
  }
}
