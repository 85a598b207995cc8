/**
 * The one idle-wait with a deadline (it was written five times as a Promise.race): the listener,
 * the inbound gate, the in-process and JetStream subscriptions and the NATS drain use it. The
 * abortable sleep of the backends that wait for their servers (NATS, etcd, RabbitMQ) is here too.
 */

/**
 * Settles with what `promise` settles with, or with `onDeadline` after `deadlineMs` ms, whichever
 * comes first; the timer is cleared either way (nothing keeps the event loop alive afterwards).
 */
export async function withDeadline<T>(promise: Promise<T>, deadlineMs: number, onDeadline: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<T>((r) => (timer = setTimeout(() => r(onDeadline), deadlineMs)))]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Resolves true once idle (at once if `isIdle()`), false at the deadline. `onIdle` registers
 * the wake-up the component calls when its last piece of work ends.
 */
export function waitIdle(isIdle: () => boolean, onIdle: (wake: () => void) => void, deadlineMs: number): Promise<boolean> {
  if (isIdle()) return Promise.resolve(true);
  return withDeadline(new Promise<boolean>((r) => onIdle(() => r(true))), deadlineMs, false);
}

/** Resolves after `ms`, or at once when `signal` aborts (a start waiting for its server gives up); leaves no timer or listener behind. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
