import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../../src/config/index.js";
import { createBroker, type Broker } from "../../src/broker/index.js";
import { SidecarError } from "../../src/errors.js";
import { silentLogger } from "../../src/log.js";
import { NatsClient } from "../../src/nats/connect.js";
import { createRegistry, RegistryView, type NodeRecord, type Registry } from "../../src/registry/index.js";
import { NatsServer } from "../support/nats.js";

/**
 * The lifecycle rules of every registry and broker backend (issue 14, item 1), on real servers:
 * the factory returns a ready backend; close() is idempotent and shared by concurrent callers;
 * after it every operation rejects with CLOSED and status() says "closed".
 */
describe("backend lifecycle: close once, never reopened", () => {
  let nats: NatsServer;
  let client: NatsClient;
  const dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-backends-"));
  const log = silentLogger();

  before(async () => {
    nats = await NatsServer.start();
    client = await NatsClient.connect({ servers: [nats.url], name: "lifecycle" }, log);
  });
  after(async () => {
    await client.close();
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const config = (kind: "local" | "nats") => loadConfig({ set: ["service.name=lc", "app.port=1", `registry.kind=${kind}`, `registry.dir=${dir}`, `broker.kind=${kind}`, `nats.servers=${nats.url}`], env: {}, cwd: dir }).config;
  const node: NodeRecord = { id: "lc-1", service: "lc", version: "1", address: "127.0.0.1:1", transport: "http", metadata: {}, endpoints: [], subscriptions: [], registeredAt: new Date().toISOString() };
  const isClosed = (err: unknown) => err instanceof SidecarError && err.code === "CLOSED";

  for (const kind of ["local", "nats"] as const) {
    it(`${kind} registry: ready from its factory; two concurrent closes are one; then CLOSED`, async () => {
      const registry: Registry = await createRegistry({ config: config(kind), log, nats: async () => client });
      assert.equal(registry.status(), "connected");
      await registry.register(node);
      const view = new RegistryView(registry, { ttl: 1_500 }, log);
      await view.start();
      assert.deepEqual((await registry.list("lc")).map((n) => n.id), ["lc-1"]);
      await registry.deregister(node.id);
      await view.close();
      await Promise.all([registry.close(), registry.close()]);
      await registry.close();
      assert.equal(registry.status(), "closed");
      await assert.rejects(registry.register(node), isClosed);
      await assert.rejects(registry.deregister(node.id), isClosed);
      await assert.rejects(registry.watch(() => {}), isClosed);
    });

    it(`${kind} broker: ready from its factory; close is idempotent; then publish and subscribe reject with CLOSED`, async () => {
      const registry = await createRegistry({ config: config(kind), log, nats: async () => client });
      const broker: Broker = await createBroker({ config: config(kind), log, subscribers: () => new RegistryView(registry, { ttl: 1_500, scope: "all" }, log), nats: async () => client });
      assert.equal(broker.status(), "connected");
      await broker.publish("lc.ready", Buffer.from("x"), {});
      await Promise.all([broker.close(), broker.close()]);
      assert.equal(broker.status(), "closed");
      await assert.rejects(broker.publish("lc.after", Buffer.from("x"), {}), isClosed);
      const spec = { name: "s", topic: "lc.t", path: "/e", durable: false, maxInFlight: 1, timeout: 1_000, retry: { attempts: 1, initial: 10, max: 10 } } as unknown as Parameters<Broker["subscribe"]>[0];
      await assert.rejects(broker.subscribe(spec, async () => ({ kind: "ack" })), isClosed);
      await registry.close();
    });
  }
});
