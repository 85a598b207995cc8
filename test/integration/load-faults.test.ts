import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { NatsServer } from "../support/nats.js";
import { apiUrl, registryNodes, rpc, SidecarProcess, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

const CLIENTS = 8;

/** `CLIENTS` concurrent loops of sequential calls until `stop()`; returns the statuses seen. */
function load(base: string, envelope: Record<string, unknown>): { stop: () => Promise<Map<number, number>> } {
  let running = true;
  const statuses = new Map<number, number>();
  const loops = Array.from({ length: CLIENTS }, async () => {
    for (let i = 0; running && i < 5_000; i++) {
      const r = await rpc(base, envelope);
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    }
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return statuses;
    },
  };
}

/** Callee faults under concurrent load, on a real nats-server with child-process callees. */
describe("faults under concurrent load", () => {
  let nats: NatsServer;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  const procs: SidecarProcess[] = [];
  let base: string;

  const callees = async (service: string, n: number) => {
    const list: SidecarProcess[] = [];
    for (let i = 0; i < n; i++) {
      const app = await TestApp.start(`${service}-${i}`);
      apps.push(app);
      const p = await SidecarProcess.start(testSettings({ service, appPort: app.port, registry: { nats: nats.url } }));
      procs.push(p);
      list.push(p);
    }
    await waitFor(async () => (await registryNodes(base, service)).length === n, `${n} ${service} nodes`);
    return list;
  };

  before(async () => {
    nats = await NatsServer.start();
    const app = await TestApp.start("client");
    apps.push(app);
    const caller = await startSidecar(testSettings({ service: "client", appPort: app.port, registry: { nats: nats.url } }));
    sidecars.push(caller);
    base = apiUrl(caller);
  });

  after(() => teardown({ procs, sidecars, apps, nats }));

  it("SIGTERM to a callee during 8 concurrent clients: no caller sees an error", async () => {
    const [a] = await callees("graceful", 3);
    const l = load(base, { service: "graceful", endpoint: "G.Call" });
    await new Promise((r) => setTimeout(r, 300));
    a!.kill("SIGTERM");
    assert.equal(await a!.exit(), 0);
    await new Promise((r) => setTimeout(r, 300));
    const statuses = await l.stop();
    assert.deepEqual([...statuses.keys()], [200], JSON.stringify(Object.fromEntries(statuses)));
    assert.ok(statuses.get(200)! > 100, `only ${statuses.get(200)} calls`);
  });

  it("kill -9 of a callee during 8 concurrent clients: idempotent calls (retries: 1) all succeed", async () => {
    const [a] = await callees("crashy", 3);
    const l = load(base, { service: "crashy", endpoint: "C.Call", retries: 1 });
    await new Promise((r) => setTimeout(r, 300));
    a!.kill("SIGKILL");
    await a!.exit();
    await new Promise((r) => setTimeout(r, 500));
    const statuses = await l.stop();
    assert.deepEqual([...statuses.keys()], [200], JSON.stringify(Object.fromEntries(statuses)));
  });

  it("a callee app that answers 500s under concurrent load is ejected: failures stop after a few", async () => {
    const [a] = await callees("sick", 3);
    const sick = apps.find((x) => x.name === "sick-0")!;
    sick.failStatus = 500;
    const l = load(base, { service: "sick", endpoint: "S.Call" });
    await new Promise((r) => setTimeout(r, 600));
    const statuses = await l.stop();
    // Three failures in a row eject it; calls already in flight to it may add a few more.
    assert.ok((statuses.get(500) ?? 0) <= 3 + CLIENTS, JSON.stringify(Object.fromEntries(statuses)));
    assert.ok(statuses.get(200)! > 50);
    void a;
  });
});
