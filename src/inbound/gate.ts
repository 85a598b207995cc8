import type { ErrorCode } from "../errors.js";
import { waitIdle } from "../lifecycle/wait-idle.js";
import { Lifecycle, type Component } from "../lifecycle/component.js";

export interface GateOptions {
  service: string;
  /** Whether the app takes calls now (passing its health check). */
  accepting: () => boolean;
  /** Most calls into the app at once; beyond it calls are refused with 503 and Retry-After. Unlimited when undefined. */
  maxConcurrency?: number | undefined;
}

export interface Refusal {
  code: ErrorCode;
  message: string;
}

/** How long close() without a deadline waits for calls in flight. */
const CLOSE_DEADLINE_MS = 10_000;

/**
 * Admission into the app, shared by every inbound path (HTTP listener, NATS subscription): a
 * call is refused, before the app sees it, while the sidecar drains, while the app fails its
 * health check, or when `app.maxConcurrency` calls are already in flight.
 */

export class InboundGate implements Component {
  readonly #lifecycle = new Lifecycle("inbound gate", {
    close: async (deadlineMs = CLOSE_DEADLINE_MS) => {
      this.drain();
      await this.idle(deadlineMs);
    },
  });
  #draining = false;
  #inFlight = 0;
  #idle: (() => void)[] = [];

  constructor(private readonly o: GateOptions) {}

  get draining(): boolean {
    return this.#draining;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** The gate is open from the start; after close() start rejects with CLOSED. */
  start(): Promise<void> {
    return this.#lifecycle.start();
  }

  /**
   * drain() then idle(deadlineMs): refuse new calls, wait for those in flight. Idempotent. (The
   * sidecar calls drain() and idle() itself, with other shutdown steps between them.)
   */
  close(deadlineMs?: number): Promise<void> {
    return this.#lifecycle.close(deadlineMs);
  }

  /** From now on refuse new calls (they go to other nodes); calls in flight finish. */
  drain(): void {
    this.#draining = true;
  }

  /** Admit one call (then call `leave()` once it is done), or say why not. */
  enter(): Refusal | undefined {
    if (this.#draining) return { code: "SHUTTING_DOWN", message: `the sidecar of '${this.o.service}' is shutting down` };
    if (!this.o.accepting()) return { code: "APP_UNAVAILABLE", message: `the app of '${this.o.service}' is not passing its health check` };
    if (this.o.maxConcurrency !== undefined && this.#inFlight >= this.o.maxConcurrency) {
      return { code: "OVERLOADED", message: `the app of '${this.o.service}' already has ${this.#inFlight} calls in flight (app.maxConcurrency)` };
    }
    this.#inFlight += 1;
    return undefined;
  }

  leave(): void {
    this.#inFlight -= 1;
    if (this.#inFlight === 0) for (const w of this.#idle.splice(0)) w();
  }

  /** Resolves once no call is in flight, or after `timeout` ms. */
  async idle(timeout: number): Promise<void> {
    await waitIdle(() => this.#inFlight === 0, (wake) => this.#idle.push(wake), timeout);
  }
}
