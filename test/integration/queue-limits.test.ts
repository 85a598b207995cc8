import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { QUEUE_LIMITS } from "../../src/broker/in-process.js";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { NatsServer } from "../support/nats.js";
import { apiUrl, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

/**
 * Issue 12, item 2: the in-process queue of a core (at-most-once) subscription counted bodies
 * only, so 1-byte messages with large x-sidecar-* headers grew it far past QUEUE_LIMITS.bytes.
 */
describe("core NATS subscription queue: bounded by whole messages, headers included", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];

  before(async () => {
    nats = await NatsServer.start();
    nc = await connect({ servers: nats.url });
  });

  after(async () => {
    await nc?.close();
    await teardown({ sidecars, apps, nats });
  });

  it("1-byte messages with 7 KB headers fill the 64 MiB queue limit and the rest are dropped and counted, not held", async () => {
    const app = await TestApp.start("slow-subscriber");
    apps.push(app);
    // The app holds its one delivery for a minute: everything after it waits in the sidecar's queue.
    const sub = { topic: "heavy.headers", path: "/slow?ms=60000", maxInFlight: 1, timeout: "60s" };
    const s = await startSidecar(testSettings({ service: "slow-subscriber", appPort: app.port, registry: { nats: nats.url }, extra: [`subscriptions=${JSON.stringify([sub])}`] }));
    sidecars.push(s);
    const listed = async () => ((await (await fetch(`${apiUrl(s)}/subscriptions`)).json()) as { subscriptions: { state: string; dropped: number }[] }).subscriptions[0]!;
    await waitFor(async () => (await listed()).state === "active", "the subscription to start");

    const header = "h".repeat(7 * 1024);
    // About 7 KB a message: the byte limit holds some 9,300 of them, far below the 65,536-message limit.
    const perMessage = header.length + "x-sidecar-blob".length;
    const room = Math.floor(QUEUE_LIMITS.bytes / perMessage);
    const published = room + 2_000;
    assert.ok(published < QUEUE_LIMITS.messages, "the byte limit, not the message count, is what stops them");
    for (let i = 0; i < published; i++) {
      const h = headers();
      h.set("x-sidecar-blob", header);
      h.set("ce-id", `m${i}`);
      nc.publish("heavy.headers", "x", { headers: h });
      if (i % 500 === 499) await nc.flush();
    }
    await nc.flush();
    await waitFor(() => app.callsTo("/slow?ms=60000").length === 1, "the one delivery in flight");
    // Everything published has reached the sidecar once queued + dropped + in flight add up; what is
    // queued is at most `room`, so at least published - room - 1 were dropped.
    const dropped = await waitFor(async () => {
      const d = (await listed()).dropped;
      return d >= published - room - 1 ? d : undefined;
    }, `at least ${published - room - 1} messages dropped`, 20_000);
    assert.ok(dropped <= published - 1 - Math.floor(room * 0.9), `most of the room was used before dropping (dropped ${dropped})`);
  });
});
