import type { IncomingHttpHeaders } from "node:http";
import { Readable } from "node:stream";
import type { StreamedResponse } from "../response.js";

/** What a streamed body needs from its connection. */
export interface BodySource {
  /** The reader wants more: resume reading the socket. */
  resume(): void;
  /** The reader stopped before the end: the connection cannot be reused (unless this body is already done with it). */
  abandon(body: H1Body, err: Error | null): void;
}

/** A response body that did not arrive in one read: pushed from the parser, with backpressure on the socket. */
export class H1Body extends Readable implements StreamedResponse {
  constructor(
    readonly statusCode: number,
    readonly headers: IncomingHttpHeaders,
    private readonly source: BodySource,
  ) {
    super();
  }

  override _read(): void {
    this.source.resume();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.source.abandon(this, err);
    callback(err);
  }
}
