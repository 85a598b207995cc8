import { Writable } from "node:stream";

const NL = 0x0a;
const NEWLINE = Buffer.from("\n");
/** A "line" longer than this with no newline yet is written out as one, so output is never held back without bound. */
const MAX_LINE = 64 * 1024;

/**
 * A stream that writes each line it is given to `target` with `prefix` in front (`[greeter] `),
 * whole: lines from several prefixers sharing one target interleave but never split. Works on
 * bytes (a newline byte never occurs inside a UTF-8 character). A last line without its newline
 * is written by flush(). `isTTY` is the target's, so a logger writing here picks its format as it
 * would for the target. If the target fails (a closed pipe), output is dropped, never an error.
 */
export class LinePrefixer extends Writable {
  readonly isTTY: boolean;
  readonly #prefix: Buffer;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #failed = false;

  constructor(prefix: string, private readonly target: NodeJS.WritableStream) {
    super({ decodeStrings: true });
    this.#prefix = Buffer.from(prefix);
    this.isTTY = (target as { isTTY?: boolean }).isTTY === true;
    target.on("error", () => (this.#failed = true));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.take(chunk);
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.flush();
    callback();
  }

  /** Take bytes; write every complete line. Synchronous (what the child supervisor feeds). */
  take(chunk: Buffer): void {
    const out: Buffer[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(NL); nl !== -1; nl = chunk.indexOf(NL, start)) {
      out.push(this.#prefix, ...this.#pending, chunk.subarray(start, nl + 1));
      this.#pending = [];
      this.#pendingBytes = 0;
      start = nl + 1;
    }
    if (start < chunk.length) {
      this.#pending.push(chunk.subarray(start));
      this.#pendingBytes += chunk.length - start;
      if (this.#pendingBytes >= MAX_LINE) this.#flushInto(out);
    }
    this.#emit(out);
  }

  /** Write the last line if it had no newline (the writer ended). */
  flush(): void {
    const out: Buffer[] = [];
    this.#flushInto(out);
    this.#emit(out);
  }

  #flushInto(out: Buffer[]): void {
    if (this.#pendingBytes === 0) return;
    out.push(this.#prefix, ...this.#pending, NEWLINE);
    this.#pending = [];
    this.#pendingBytes = 0;
  }

  #emit(out: Buffer[]): void {
    if (out.length === 0 || this.#failed) return;
    this.target.write(Buffer.concat(out));
  }
}
