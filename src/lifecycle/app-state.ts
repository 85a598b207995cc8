import type { SubscriptionConfig } from "../config/schema.js";
import type { AppHealth } from "../health/checker.js";
import type { Logger } from "../log.js";

/** What the app's health steers: its registration, its NATS inbound, its subscriptions. */
export interface AppStateDeps {
  /** Ask the app for more subscriptions (GET /sidecar/subscriptions), once; undefined when broker.askApp is off. */
  askApp?: (() => Promise<SubscriptionConfig[]>) | undefined;
  subscriptions: {
    add(configs: SubscriptionConfig[]): void;
    start(): Promise<void>;
    pause(): Promise<void>;
    resume(): void;
  };
  /** The node record's topics, once the subscriptions are known (the embedded broker reads them). */
  announce(): void;
  registrar: { up(): Promise<void>; down(reason: string): Promise<void> };
  natsInbound?: { start(): Promise<void>; stop(): Promise<void> } | undefined;
  /** True once the sidecar is shutting down: no transition may undo it by registering. */
  draining(): boolean;
  log: Logger;
}

/**
 * The app-state machine. The app passed: (first time) ask it for subscriptions and start them,
 * then take traffic and register. The app failed: deregister first, then stop taking traffic and
 * pause deliveries. One transition at a time, in order: a quick fail/pass never leaves things
 * half done, and `settled()` lets a shutdown wait for the one in progress.
 */
export class AppState {
  #askedApp = false;
  #transitions: Promise<void> = Promise.resolve();

  constructor(private readonly d: AppStateDeps) {}

  /** The health checker's "change": queued behind the transition in progress. */
  readonly change = (state: AppHealth, reason: string | undefined): void => {
    this.#transitions = this.#transitions.then(() => this.#apply(state, reason)).catch((err: unknown) => {
      this.d.log.error("app state change failed", { error: (err as Error).message });
    });
  };

  /** Resolves once the transitions queued so far are done. */
  settled(): Promise<void> {
    return this.#transitions;
  }

  async #apply(state: AppHealth, reason: string | undefined): Promise<void> {
    const d = this.d;
    if (d.draining()) return;
    if (state === "passing") {
      if (!this.#askedApp) {
        this.#askedApp = true;
        if (d.askApp) {
          const fromApp = await d.askApp();
          if (fromApp.length > 0) d.log.info("the app asked for subscriptions", { topics: fromApp.map((s) => s.topic) });
          d.subscriptions.add(fromApp);
        }
        d.announce();
        await d.subscriptions.start();
      } else {
        d.subscriptions.resume();
      }
      // A shutdown that began while we asked the app or subscribed must not be undone by registering.
      if (d.draining()) return;
      await d.natsInbound?.start();
      await d.registrar.up();
    } else {
      await d.registrar.down(`app health check failing: ${reason ?? "unknown"}`);
      await d.natsInbound?.stop();
      await d.subscriptions.pause();
    }
  }
}
