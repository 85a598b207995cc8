import { SidecarError } from "../errors.js";

/**
 * The one lifecycle every long-lived part of the sidecar has (issue 14, item 1; the model is
 * undici's DispatcherBase close/destroy and fastify's close): `start()` and `close()` are
 * idempotent, a caller arriving mid-close waits for the same close, and `start()` after
 * `close()` rejects with a `CLOSED` error: a closed component is never reopened.
 */
export interface Component {
  start(): Promise<void>;
  /** Stop, letting work in flight finish within `deadlineMs` where the component has such work. */
  close(deadlineMs?: number): Promise<void>;
}

export interface LifecycleHooks {
  start?: () => Promise<void> | void;
  close?: (deadlineMs?: number) => Promise<void> | void;
}

/** The error `start()` rejects with once `close()` was called. */
export function closedError(name: string): SidecarError {
  return new SidecarError("CLOSED", `the ${name} was closed and cannot be started again`);
}

/**
 * start/close written once. `start()` runs the start hook once (concurrent callers share the
 * promise); `close()` runs the close hook once, whether or not start ran (a component may hold
 * timers from its constructor), and every later or concurrent call returns the same promise.
 * close does not wait for a start in progress: the close hook decides (it may have to abort it).
 */
export class Lifecycle implements Component {
  #starting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(readonly name: string, readonly hooks: LifecycleHooks) {}

  /** start() was called (and close() was not called before it). */
  get started(): boolean {
    return this.#starting !== undefined;
  }

  /** close() was called: the component is closing or closed. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  start(): Promise<void> {
    if (this.#closing) return Promise.reject(closedError(this.name));
    this.#starting ??= (async () => {
      await this.hooks.start?.();
    })();
    return this.#starting;
  }

  close(deadlineMs?: number): Promise<void> {
    this.#closing ??= (async () => {
      await this.hooks.close?.(deadlineMs);
    })();
    return this.#closing;
  }
}

/**
 * The composition root's stack: each component pushed once started, closed in reverse order.
 * `closed` lists the names in the order they were closed (tests read it, not log text).
 */
export class ComponentStack {
  readonly #stack: { name: string; close: (deadlineMs?: number) => Promise<void> | void }[] = [];
  readonly #closed: string[] = [];

  push(name: string, component: { close(deadlineMs?: number): Promise<void> | void }): void {
    this.#stack.push({ name, close: (d) => component.close(d) });
  }

  /** Names closed so far, in order. */
  get closed(): readonly string[] {
    return this.#closed;
  }

  /** Record a step of a shutdown that is not (only) the stack's: `name` is listed when `fn` is done. */
  async step(name: string, fn: () => Promise<unknown> | unknown): Promise<void> {
    await fn();
    this.#closed.push(name);
  }

  /** Close every pushed component, last pushed first, one at a time. */
  async closeAll(deadlineMs?: number): Promise<void> {
    for (let c = this.#stack.pop(); c; c = this.#stack.pop()) await this.step(c.name, () => c.close(deadlineMs));
  }
}
