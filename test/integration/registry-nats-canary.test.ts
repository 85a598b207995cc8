import assert from "node:assert/strict";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/log.js";
import { NatsClient } from "../../src/nats/connect.js";
import { NatsRegistry } from "../../src/registry/nats.js";
import type { NodeRecord, RegistryStatus } from "../../src/registry/types.js";
import { NatsServer } from "../support/nats.js";
import { waitFor } from "../support/sidecar.js";

/**
 * The canary: a watch of one of our own keys, whose silence after a heartbeat means the
 * watches are stalled. It must not cry wolf (a write's echo may come back before the write's
 * acknowledgement), and it must notice a real stall.
 */
describe("nats registry: the canary watch of our own key", () => {
  const log = silentLogger();
  let nats: NatsServer;
  let client: NatsClient;
  const node: NodeRecord = { id: "canary-1", service: "canary", version: "1", address: "127.0.0.1:1", transport: "http", metadata: {}, endpoints: [], subscriptions: [], registeredAt: new Date().toISOString() };

  before(async () => {
    nats = await NatsServer.start();
    client = await NatsClient.connect({ servers: [nats.url], name: "canary" }, log);
  });
  after(async () => {
    await client.close();
    await nats.stop();
  });

  /** Every status seen, sampled every 25 ms, over `ms`. */
  async function statuses(registry: NatsRegistry, ms: number): Promise<Set<RegistryStatus>> {
    const seen = new Set<RegistryStatus>();
    const t0 = Date.now();
    while (Date.now() - t0 < ms) {
      seen.add(registry.status());
      await new Promise((r) => setTimeout(r, 25));
    }
    return seen;
  }

  it("heartbeats further apart than the stall limit (TTL 9 s: every 3 s, limit 2 s) never look like a stall", async () => {
    const registry = await NatsRegistry.open(client, { bucket: "canary_quiet", ttl: 9_000, replicas: 1 }, log);
    try {
      const watch = await registry.watch(() => {}, { service: "other" });
      for (let beat = 0; beat < 3; beat++) {
        await registry.register(node);
        // Past the 2 s limit and the watchdog's next check (every 1 s) after each write: a write whose
        // echo beat its acknowledgement (most do, on one server) counts as seen.
        assert.deepEqual([...(await statuses(registry, 3_300))], ["connected"], `heartbeat ${beat}: never unavailable`);
      }
      watch.stop();
    } finally {
      await registry.close();
    }
  });

  it("one watch stalled alone (its consumer deleted, the canary's kept): silent past a heartbeat, it lists again", async () => {
    const bucket = "canary_alone";
    const registry = await NatsRegistry.open(client, { bucket, ttl: 3_000, replicas: 1 }, log);
    const nc = await connect({ servers: nats.url });
    try {
      let puts = 0;
      const watch = await registry.watch((e) => void (e.type === "put" && (puts += 1)), { service: "canary" });
      await registry.register(node);
      await waitFor(() => puts > 0, "our record through the service watch");
      const jsm = await jetstreamManager(nc);
      for await (const c of jsm.consumers.list(`KV_${bucket}`)) {
        if (c.config.filter_subject === `$KV.${bucket}.canary.*`) await jsm.consumers.delete(`KV_${bucket}`, c.name);
      }
      const before = puts;
      const t0 = Date.now();
      await waitFor(async () => {
        await registry.register(node);
        return puts > before;
      }, "the service watch to deliver again", 10_000);
      // Silent for a heartbeat (1 s) and the stall limit (1 s), then listed within the TTL (3 s): no live node's record could lapse.
      assert.ok(Date.now() - t0 < 3_000, `listed again ${Date.now() - t0} ms after its consumer went, within the TTL`);
      assert.notEqual(watch.listening?.(), false);
      assert.equal(registry.status(), "connected", "one watch restoring itself is not the registry being unavailable");
      watch.stop();
    } finally {
      await nc.close();
      await registry.close();
    }
  });

  it("a real stall (the watches' consumers deleted on the server) is noticed at the next heartbeat, and healed by restarting the watches", async () => {
    const bucket = "canary_stall";
    const registry = await NatsRegistry.open(client, { bucket, ttl: 3_000, replicas: 1 }, log);
    const nc = await connect({ servers: nats.url });
    try {
      const events: string[] = [];
      const watch = await registry.watch((e) => events.push(e.type === "put" ? e.node.id : `-${e.id}`), { service: "canary" });
      await registry.register(node);
      await waitFor(() => events.includes(node.id), "our own record through the service watch");
      // Two more heartbeats seen: the canary is open and quiet.
      await registry.register(node);
      assert.deepEqual([...(await statuses(registry, 1_200))], ["connected"]);
      const jsm = await jetstreamManager(nc);
      for await (const c of jsm.consumers.list(`KV_${bucket}`)) await jsm.consumers.delete(`KV_${bucket}`, c.name);
      await registry.register(node);
      await waitFor(() => registry.status() === "unavailable", "the stall noticed (our heartbeat never came back)", 3_000);
      // Heartbeats go on; the restarted watches see them again.
      await waitFor(async () => {
        await registry.register(node);
        return registry.status() === "connected";
      }, "the restarted watches to see our heartbeats", 10_000);
      const before = events.length;
      await registry.register({ ...node, version: "2" });
      await waitFor(() => events.length > before, "the restarted service watch delivers again");
      watch.stop();
    } finally {
      await nc.close();
      await registry.close();
    }
  });
});
