import { Writable } from "node:stream";
import winston from "winston";
import type { Logger } from "../log.js";

export interface RecentEvent {
  time: string;
  level: string;
  message: string;
  [field: string]: unknown;
}

/**
 * The last warnings and errors this sidecar logged, for the status page: a winston transport at
 * `warn` (whatever log.level says) feeding a ring buffer. Log lines carry no secrets, so neither
 * does this.
 */
export class RecentEvents {
  readonly #ring: RecentEvent[] = [];
  #next = 0;

  constructor(private readonly capacity = 50) {}

  /** Start collecting `log`'s warnings and errors (and those of its children). */
  attach(log: Logger): void {
    const sink = new Writable({
      objectMode: true,
      write: (info: Record<string, unknown>, _enc, done) => {
        this.#push(info);
        done();
      },
    });
    log.add(new winston.transports.Stream({ stream: sink, level: "warn" }));
  }

  #push(info: Record<string, unknown>): void {
    const { level, message, timestamp: _t, stack: _s, ...fields } = info;
    const event: RecentEvent = { time: new Date().toISOString(), level: String(level), message: String(message), ...fields };
    if (this.#ring.length < this.capacity) this.#ring.push(event);
    else this.#ring[this.#next] = event;
    this.#next = (this.#next + 1) % this.capacity;
  }

  /** Newest first. */
  list(): RecentEvent[] {
    const n = this.#ring.length;
    const out: RecentEvent[] = [];
    for (let i = 1; i <= n; i++) out.push(this.#ring[(this.#next - i + n) % n]!);
    return out;
  }
}
