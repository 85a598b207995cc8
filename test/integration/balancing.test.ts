import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { NatsServer } from "../support/nats.js";
import { apiUrl, registryNodes, rpc, SidecarProcess, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

/** Failover, ejection, retries and stickiness on a real nats-server registry. */
describe("balancing on NATS: failover, ejection, retries, stickiness", () => {
  let nats: NatsServer;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  const procs: SidecarProcess[] = [];
  let base: string;

  const settings = (service: string, app: TestApp, extra: string[] = []) => testSettings({ service, appPort: app.port, registry: { nats: nats.url }, extra });
  const app = async (name: string) => {
    const a = await TestApp.start(name);
    apps.push(a);
    return a;
  };
  const sidecar = async (service: string, a: TestApp, extra: string[] = []) => {
    const s = await startSidecar(settings(service, a, extra));
    sidecars.push(s);
    return s;
  };

  before(async () => {
    nats = await NatsServer.start();
    const caller = await sidecar("client", await app("client"), ["selector.services.sticky.strategy=hash", "selector.services.sticky.hashHeader=x-user"]);
    base = apiUrl(caller);
  });

  after(() => teardown({ procs, sidecars, apps, nats }));

  it("kill -9 of one of three callee sidecars during 300 sequential calls: 300 successes", async () => {
    const three = await Promise.all(["g1", "g2", "g3"].map(app));
    const children = await Promise.all(three.map((a) => SidecarProcess.start(settings("greeter", a))));
    procs.push(...children);
    await waitFor(async () => (await registryNodes(base, "greeter")).length === 3, "three greeter nodes");
    const statuses = new Map<number, number>();
    for (let i = 0; i < 300; i++) {
      if (i === 100) {
        children[1]!.kill("SIGKILL");
        await children[1]!.exit();
      }
      const r = await rpc(base, { service: "greeter", endpoint: "Greeter.Hello", request: { i } });
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    }
    assert.deepEqual(Object.fromEntries(statuses), { 200: 300 });
    // The dead node's record outlives it (until the TTL); it was ejected rather than tried on every call.
    const g2 = three[1]!.callCount();
    assert.ok(g2 >= 30 && g2 <= 35, `g2 served ${g2} calls before it died`);
  });

  it("a node answering 5xx is ejected, shown as ejected, and traffic moves to the healthy one", async () => {
    const bad = await app("bad");
    const good = await app("good");
    const sBad = await sidecar("flaky", bad);
    await sidecar("flaky", good);
    await waitFor(async () => (await registryNodes(base, "flaky")).length === 2, "two flaky nodes");
    bad.failStatus = 500;
    const seen = new Map<number, number>();
    for (let i = 0; i < 20; i++) {
      const r = await rpc(base, { service: "flaky", endpoint: "Flaky.Call" });
      seen.set(r.status, (seen.get(r.status) ?? 0) + 1);
    }
    // consecutiveFailures = 3: the bad node answers three 500s (passed through), then is ejected.
    assert.deepEqual(Object.fromEntries(seen), { 200: 17, 500: 3 });
    assert.equal(bad.callCount(), 3);
    const body = (await (await fetch(`${base}/registry/flaky`)).json()) as { nodes: { id: string; state: { ejected: boolean; ejectedUntil?: string } }[] };
    const state = body.nodes.find((n) => n.id === sBad.node.id)!.state;
    assert.equal(state.ejected, true);
    assert.ok(Date.parse(state.ejectedUntil!) > Date.now());
  });

  it("retries a sent call only when it opts in, on another node", async () => {
    const a = await app("r-bad");
    const b = await app("r-good");
    // A caller that never ejects, so every other call meets the failing node.
    const patient = await sidecar("patient", await app("patient"), ["selector.consecutiveFailures=1000"]);
    await sidecar("retry", a);
    await sidecar("retry", b);
    const pbase = apiUrl(patient);
    await waitFor(async () => (await registryNodes(pbase, "retry")).length === 2, "two retry nodes");
    a.failStatus = 503;
    const plain = await Promise.all([0, 1, 2, 3].map(() => rpc(pbase, { service: "retry", endpoint: "R.Call" })));
    assert.deepEqual(plain.map((r) => r.status).sort(), [200, 200, 503, 503], "without opting in, a 503 is passed through");
    for (let i = 0; i < 6; i++) {
      const r = await rpc(pbase, { service: "retry", endpoint: "R.Call", retries: 1 });
      assert.equal(r.status, 200);
    }
    const viaHeader = await rpc(pbase, { service: "retry", endpoint: "R.Call" }, { headers: { "x-sidecar-retries": "1" } });
    assert.equal(viaHeader.status, 200);
    const [beforeA, beforeB] = [a.callCount(), b.callCount()];
    for (let i = 0; i < 4; i++) await rpc(pbase, { service: "retry", endpoint: "R.Call", retries: 1 });
    assert.equal(b.callCount() - beforeB, 4, "every call ends on the healthy node");
    assert.ok(a.callCount() - beforeA <= 4, "the failing node is tried at most once per call");
  });

  it("the retry budget caps retries when the whole service fails", async () => {
    const a = await app("down-1");
    const b = await app("down-2");
    const patient = await sidecar("budget-client", await app("budget-client"), ["selector.consecutiveFailures=1000", "selector.minRetriesPerSecond=1"]);
    await sidecar("down", a);
    await sidecar("down", b);
    const pbase = apiUrl(patient);
    await waitFor(async () => (await registryNodes(pbase, "down")).length === 2, "two down nodes");
    a.failStatus = 503;
    b.failStatus = 503;
    const calls = 50;
    for (let i = 0; i < calls; i++) assert.equal((await rpc(pbase, { service: "down", endpoint: "D.Call", retries: 3 })).status, 503);
    const attempts = a.callCount() + b.callCount();
    // Without a budget: 4 attempts per call (200). With it: 50 calls + 20% of them + the 10-per-window floor.
    assert.ok(attempts <= calls + 0.2 * calls + 10, `attempts: ${attempts}`);
    assert.ok(attempts > calls, "some retries were allowed");
  });

  it("hash: calls with the same key stick to one node; keys spread over the nodes", async () => {
    const xs = await Promise.all(["s1", "s2", "s3"].map(app));
    for (const x of xs) await sidecar("sticky", x);
    await waitFor(async () => (await registryNodes(base, "sticky")).length === 3, "three sticky nodes");
    const home = async (user: string) => (await rpc(base, { service: "sticky", endpoint: "S.Call" }, { headers: { "x-user": user } })).body.app as string;
    const first = await home("ada");
    for (let i = 0; i < 10; i++) assert.equal(await home("ada"), first);
    const homes = new Set<string>();
    for (let i = 0; i < 30; i++) homes.add(await home(`user-${i}`));
    assert.equal(homes.size, 3, "30 keys land on all three nodes");
  });
});
