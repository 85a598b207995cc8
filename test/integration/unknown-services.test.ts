import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { apiUrl, registryNodes, rpc, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

/** The distinct values of the `service` label in a /metrics text. */
function serviceLabels(text: string): Set<string> {
  return new Set([...text.matchAll(/[{,]service="([^"]*)"/g)].map((m) => m[1]!));
}

/** Run `n` tasks, `width` at a time. */
async function inParallel(n: number, width: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < n) await task(next++);
  }));
}

/** Issue 12, item 6: names the registry does not know must not grow the sidecar. */
describe("unknown service names", () => {
  let dir: string;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let caller: Sidecar;
  let base: string;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-unknown-"));
    const callerApp = await TestApp.start("caller");
    const known = await TestApp.start("known");
    apps.push(callerApp, known);
    // A short TTL: a service gone for 10 TTLs (3 s) is forgotten.
    const extra = ["registry.ttl=300ms"];
    sidecars.push(await startSidecar(testSettings({ service: "known", appPort: known.port, registry: { dir }, extra })));
    caller = await startSidecar(testSettings({ service: "client", appPort: callerApp.port, registry: { dir }, extra }));
    sidecars.push(caller);
    base = apiUrl(caller);
    await waitFor(async () => (await registryNodes(base, "known")).length === 1, "known in the view");
  });

  after(async () => {
    await teardown({ sidecars, apps });
    rmSync(dir, { recursive: true, force: true });
  });

  it("thousands of unknown names through /rpc and /proxy share one 'other' label and create no balancer", async () => {
    assert.equal((await rpc(base, { service: "known", endpoint: "Known.Go" })).status, 200);
    const before = await (await fetch(`${base}/metrics`)).text();
    await inParallel(3_000, 8, async (i) => {
      const name = `svc-${randomBytes(6).toString("hex")}`;
      if (i % 3 === 0) {
        const r = await fetch(`${base}/proxy/${name}/x`);
        assert.equal(r.status, 404);
        await r.arrayBuffer();
      } else {
        const r = await rpc(base, { service: name, endpoint: `${name}.Go` });
        assert.equal(r.status, 404);
        assert.equal(r.body.error.code, "SERVICE_NOT_FOUND");
      }
    });
    const text = await (await fetch(`${base}/metrics`)).text();
    assert.deepEqual([...serviceLabels(text)].sort(), ["known", "other"], "the services this sidecar calls (and watches), and other");
    assert.match(text, /sidecar_calls_total\{service="other",endpoint="other",status="404"\} 3000\n/);
    assert.ok(text.length < before.length + 4_096, `/metrics grew from ${before.length} to ${text.length} bytes`);
    assert.equal(caller.balancedServices, 1, "a balancer for 'known' only");
  });

  it("a service gone for a while is forgotten: its balancer and series are dropped", async () => {
    assert.equal((await rpc(base, { service: "known", endpoint: "Known.Go" })).status, 200);
    assert.equal(caller.balancedServices, 1);
    await sidecars[0]!.close();
    assert.equal((await rpc(base, { service: "known", endpoint: "Known.Go" })).status, 503, "known, no node: NO_HEALTHY_NODE at first");
    await waitFor(async () => !serviceLabels(await (await fetch(`${base}/metrics`)).text()).has("known"), "the series of 'known' dropped", 10_000);
    assert.equal(caller.balancedServices, 0);
    const r = await rpc(base, { service: "known", endpoint: "Known.Go" });
    assert.equal(r.body.error.code, "SERVICE_NOT_FOUND");
    assert.equal(caller.balancedServices, 0);
  });
});
