import type { Socket } from "node:net";

/**
 * Frames written in one turn of the event loop leave in one system call: the first write corks
 * the socket and the check phase (setImmediate, right after the I/O that produced them)
 * uncorks it. Under load many calls' frames share a write; a lone call waits no timer.
 */
export class FrameWriter {
  #corked = false;

  constructor(private readonly socket: Socket) {}

  /** false: the socket's buffer is full (wait for "drain" before writing more of a stream). */
  write(frame: Buffer): boolean {
    if (this.socket.destroyed) return true;
    if (!this.#corked) {
      this.#corked = true;
      this.socket.cork();
      setImmediate(this.#flush);
    }
    return this.socket.write(frame);
  }

  readonly #flush = (): void => {
    this.#corked = false;
    this.socket.uncork();
  };
}
