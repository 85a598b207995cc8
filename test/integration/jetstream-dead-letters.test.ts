import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { jetstreamManager, type ConsumerInfo, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { consumerName } from "../../src/broker/jetstream.js";
import type { SubscriptionSpec } from "../../src/broker/types.js";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp, type ReceivedCall } from "../support/app.js";
import { NatsServer } from "../support/nats.js";
import { apiUrl, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

/**
 * Regression tests for issue 12, item 1: a dead-lettered JetStream message was ended with
 * `+TERM <reason>`, which nats-server 2.9 does not understand, so it stayed pending and was
 * redelivered (and dead-lettered again) at every ack wait, and enough of them stalled the consumer.
 */

/** One delivery's deadline in these tests: the consumer's ack wait is twice this plus 1 s (2 s). */
const TIMEOUT_MS = 500;
const ACK_WAIT_MS = TIMEOUT_MS * 2 + 1_000;

const n = (c: ReceivedCall) => (JSON.parse(c.body) as { n: number }).n;

async function publish(base: string, topic: string, body: unknown): Promise<string> {
  const res = await fetch(`${base}/publish/${topic}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  assert.equal(res.status, 202, await res.clone().text());
  return ((await res.json()) as { id: string }).id;
}

/** Fail as soon as `cond` stops holding during `ms` (an observation window, polled every 50 ms). */
async function holdsFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    assert.ok(cond(), `${what} stopped holding`);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(cond(), `${what} stopped holding`);
}

describe("JetStream dead letters: terminated once, never redelivered, the subscription keeps flowing", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let pub: string;
  let dlq: TestApp;

  const settings = (service: string, app: TestApp, extra: string[] = []) => testSettings({ service, appPort: app.port, registry: { nats: nats.url }, extra });

  /** A subscriber service with one durable subscription to `topic`, dead letters to `dlq.<topic>`. */
  const subscriber = async (service: string, topic: string, o: { maxInFlight?: number; retry?: { attempts: number; initial: string; max: string } } = {}) => {
    const app = await TestApp.start(service);
    apps.push(app);
    const sub = { topic, path: "/events", durable: true, timeout: `${TIMEOUT_MS}ms`, deadLetter: `dlq.${topic}`, ...o };
    const s = await startSidecar(settings(service, app, [`subscriptions=${JSON.stringify([sub])}`]));
    sidecars.push(s);
    await waitFor(async () => ((await (await fetch(`${apiUrl(s)}/subscriptions`)).json()) as { subscriptions: { state: string }[] }).subscriptions[0]?.state === "active", `${service}'s subscription to start`);
    const consumer = async (): Promise<ConsumerInfo> => jsm.consumers.info(await jsm.streams.find(topic), consumerName({ queue: service, name: topic } as SubscriptionSpec));
    const counters = async () => ((await (await fetch(`${apiUrl(s)}/subscriptions`)).json()) as { subscriptions: { delivered: number; retried: number; deadLettered: number }[] }).subscriptions[0]!;
    return { app, consumer, counters };
  };
  const deadLetters = (topic: string) => dlq.callsTo("/dead").filter((c) => c.headers["x-sidecar-original-topic"] === topic);

  before(async () => {
    nats = await NatsServer.start();
    nc = await connect({ servers: nats.url });
    jsm = await jetstreamManager(nc);
    const app = await TestApp.start("publisher");
    apps.push(app);
    sidecars.push(await startSidecar(settings("publisher", app)));
    pub = apiUrl(sidecars[0]!);
    // Every dead letter of this file, on core NATS (no stream: nothing to redeliver on this side).
    dlq = await TestApp.start("dlq");
    apps.push(dlq);
    const audit = await startSidecar(settings("audit", dlq, [`subscriptions=${JSON.stringify([{ topic: "dlq.>", path: "/dead", maxInFlight: 64 }])}`]));
    sidecars.push(audit);
    await waitFor(async () => ((await (await fetch(`${apiUrl(audit)}/subscriptions`)).json()) as { subscriptions: { state: string }[] }).subscriptions[0]?.state === "active", "the dead-letter subscription");
  });

  after(async () => {
    await nc?.close();
    await teardown({ sidecars, apps, nats });
  });

  it("a message the app answers 400 is dead-lettered exactly once and never redelivered, even once the app recovers (the term reaches nats-server 2.9)", async () => {
    const s = await subscriber("poison-one", "dl.one");
    s.app.failStatus = 400;
    const id = await publish(pub, "dl.one", { n: 1 });
    await waitFor(() => deadLetters("dl.one").length === 1, "the dead letter");
    const dead = deadLetters("dl.one")[0]!;
    assert.equal(dead.headers["ce-id"], id);
    assert.equal(dead.headers["x-sidecar-dead-reason"], "the app answered 400");
    assert.equal(dead.headers["x-sidecar-attempts"], "1");
    // Terminated: nothing pending on the consumer, nothing waiting to be redelivered.
    await waitFor(async () => {
      const info = await s.consumer();
      return info.num_ack_pending === 0 && info.num_pending === 0 && info.num_redelivered === 0;
    }, "the consumer to hold nothing (num_ack_pending 0)", 5_000);
    // The app recovers. Past one ack wait, an unterminated message would have been redelivered by
    // now: dead-lettered a second time, or (answered 200) both dead-lettered and delivered.
    s.app.failStatus = undefined;
    await holdsFor(() => s.app.callsTo("/events").length === 1 && deadLetters("dl.one").length === 1, ACK_WAIT_MS + 1_000, "one delivery and one dead letter");
    const info = await s.consumer();
    assert.equal(info.num_ack_pending, 0);
    assert.equal(info.num_redelivered, 0);
    assert.equal(info.delivered.stream_seq, info.ack_floor.stream_seq, "the ack floor moved past the terminated message");
    assert.equal((await s.counters()).deadLettered, 1);
  });

  it("more poisoned (400) messages than maxInFlight do not stall the subscription: every good message after them is delivered", async () => {
    const maxInFlight = 4;
    const poisoned = maxInFlight * 3;
    const good = 20;
    const s = await subscriber("poison-many", "dl.many", { maxInFlight });
    s.app.respond = (call) => (n(call) < poisoned ? 400 : undefined);
    for (let i = 0; i < poisoned + good; i++) await publish(pub, "dl.many", { n: i });
    await waitFor(() => s.app.callsTo("/events").filter((c) => n(c) >= poisoned).length === good, `the ${good} good messages`, 10_000);
    assert.deepEqual(s.app.callsTo("/events").filter((c) => n(c) >= poisoned).map(n).sort((a, b) => a - b), Array.from({ length: good }, (_, i) => poisoned + i));
    await waitFor(() => deadLetters("dl.many").length === poisoned, `${poisoned} dead letters`);
    assert.deepEqual(deadLetters("dl.many").map(n).sort((a, b) => a - b), Array.from({ length: poisoned }, (_, i) => i), "each poisoned message dead-lettered once");
    await waitFor(async () => (await s.consumer()).num_ack_pending === 0, "nothing pending on the consumer");
    assert.equal((await s.consumer()).num_redelivered, 0);
  });

  it("a message answered 500 every time is delivered exactly retry.attempts times, then dead-lettered once with x-sidecar-attempts = attempts", async () => {
    const attempts = 3;
    const s = await subscriber("always-500", "dl.retry", { retry: { attempts, initial: "50ms", max: "100ms" } });
    s.app.failStatus = 500;
    await publish(pub, "dl.retry", { n: 1 });
    await waitFor(() => deadLetters("dl.retry").length === 1, "the dead letter");
    const dead = deadLetters("dl.retry")[0]!;
    assert.equal(dead.headers["x-sidecar-attempts"], String(attempts));
    assert.equal(dead.headers["x-sidecar-dead-reason"], `the app answered 500 (gave up after ${attempts} attempts)`);
    assert.deepEqual(s.app.callsTo("/events").map((c) => c.headers["x-sidecar-attempt"]), ["1", "2", "3"]);
    await waitFor(async () => (await s.consumer()).num_ack_pending === 0, "nothing pending on the consumer");
    await holdsFor(() => s.app.callsTo("/events").length === attempts && deadLetters("dl.retry").length === 1, ACK_WAIT_MS + 1_000, `${attempts} deliveries and one dead letter`);
    const c = await s.counters();
    assert.deepEqual([c.delivered, c.retried, c.deadLettered], [0, attempts - 1, 1]);
  });
});
