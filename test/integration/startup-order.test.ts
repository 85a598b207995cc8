import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { TestApp } from "../support/app.js";
import { NatsServer } from "../support/nats.js";
import { freePort } from "../support/ports.js";
import { SidecarProcess, teardown, testSettings } from "../support/sidecar.js";

/** Start-up order: a sidecar started before NATS is reachable waits, registers nothing, then comes up by itself. */
describe("start-up order: NATS after the sidecar", () => {
  let nats: NatsServer | undefined;
  let app: TestApp | undefined;
  let proc: SidecarProcess | undefined;

  after(async () => {
    await teardown({ procs: proc ? [proc] : [], apps: app ? [app] : [], nats });
  });

  it("waits for NATS saying so, registers nothing, answers 503 STARTING meanwhile, and registers once NATS is up", async () => {
    app = await TestApp.start("early");
    const port = await freePort();
    const settings = testSettings({ service: "early", appPort: app.port, registry: { nats: `nats://127.0.0.1:${port}` } });
    proc = SidecarProcess.spawn(["start", ...[...settings, "log.format=json"].flatMap((s) => ["--set", s])]);
    const waiting = await proc.waitForLog("waiting for NATS: cannot connect yet, retrying every second", 10_000);
    assert.deepEqual(waiting.servers, [`nats://127.0.0.1:${port}`]);
    assert.equal(proc.find("registered"), undefined);
    // Meanwhile the app's sidecar answers, and says why it cannot serve yet.
    const api = `http://${String((await proc.waitForLog("api listening")).api)}`;
    assert.equal((await fetch(`${api}/health/live`)).status, 200);
    const ready = await fetch(`${api}/health/ready`);
    assert.equal(ready.status, 503);
    assert.deepEqual(await ready.json(), { status: "not ready", reasons: ["the sidecar is starting: waiting for NATS and the registry bucket"] });
    const call = await fetch(`${api}/rpc`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"service":"x","endpoint":"y"}' });
    assert.equal(call.status, 503);
    assert.equal(call.headers.get("retry-after"), "1");
    assert.equal(((await call.json()) as { error: { code: string } }).error.code, "STARTING");

    // GET /events already streams while the sidecar starts: it says what it waits for, typed.
    const events = await proc.events();
    const waitingEvent = await events.next("backend", (e) => e.backend === "nats");
    assert.equal(waitingEvent.status, "waiting");
    assert.match(waitingEvent.error ?? "", /refused/i);

    nats = await NatsServer.start({ port });
    await events.next("registered");
    const statuses = events.all("backend").filter((e) => e.backend === "nats").map((e) => e.status);
    assert.deepEqual(statuses, ["waiting", "connected"], "waiting said once, not at every retry");
    events.close();
    const res = await fetch(`${proc.apiUrl}/registry/early`);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { nodes: { id: string }[] };
    assert.deepEqual(body.nodes.map((n) => n.id), [proc.nodeId]);
    assert.equal((await fetch(`${proc.apiUrl}/health`)).status, 200);
  });
});
