import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { connect, headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { loadConfig } from "../../src/config/index.js";
import { createLogger } from "../../src/log.js";
import { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { NatsServer } from "../support/nats.js";
import { apiUrl, registryNodes, rpc, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

const MESH = "mesh-token-0123456789abcdef";

/** An in-process sidecar whose JSON log lines the test can read (what the publisher learns). */
async function startLogged(settings: string[]): Promise<{ sidecar: Sidecar; lines: Record<string, unknown>[] }> {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const { config } = loadConfig({ set: settings, env: {}, cwd: os.tmpdir() });
  const sidecar = new Sidecar(config, createLogger({ level: "debug", format: "json", stream }));
  await sidecar.start();
  return { sidecar, lines };
}

/** Every x-sidecar-* header an app received, sorted: what the sidecar shows it. */
const sidecarHeaders = (h: Record<string, unknown>) => Object.keys(h).filter((k) => k.startsWith("x-sidecar-")).sort();

/** Issue 12 (isolation): internal headers stay between sidecars; deliveries obey mesh.token and inbound.allow like calls. */
describe("internal headers and deliveries, with mesh.token (local registry, embedded broker)", () => {
  let dir: string;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let vault: TestApp;
  let vaultInbound: string;
  let base: string;
  let outsider: { sidecar: Sidecar; lines: Record<string, unknown>[] };
  let echo1: TestApp;
  let echo2: TestApp;

  const start = async (service: string, app: TestApp, extra: string[]) => {
    const s = await startSidecar(testSettings({ service, appPort: app.port, registry: { dir }, extra: [`mesh.token=${MESH}`, ...extra] }));
    sidecars.push(s);
    return s;
  };

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-iso-"));
    vault = await TestApp.start("vault");
    const trustedApp = await TestApp.start("trusted");
    const outsiderApp = await TestApp.start("outsider");
    echo1 = await TestApp.start("echo1");
    echo2 = await TestApp.start("echo2");
    apps.push(vault, trustedApp, outsiderApp, echo1, echo2);
    const v = await start("vault", vault, ["inbound.allow=[trusted]", 'subscriptions=[{"topic": "iso.events", "path": "/events"}]']);
    vaultInbound = v.node.address;
    base = apiUrl(await start("trusted", trustedApp, []));
    for (const a of [echo1, echo2]) await start("echo", a, []);
    outsider = await startLogged(testSettings({ service: "outsider", appPort: outsiderApp.port, registry: { dir }, extra: [`mesh.token=${MESH}`] }));
    sidecars.push(outsider.sidecar);
    await waitFor(async () => (await registryNodes(base, "vault")).length === 1 && (await registryNodes(base, "echo")).length === 2, "vault and echo in the view");
    await waitFor(async () => (await registryNodes(apiUrl(outsider.sidecar), "vault")).length === 1, "vault in the outsider's view");
  });

  after(async () => {
    await teardown({ sidecars, apps });
    rmSync(dir, { recursive: true, force: true });
  });

  it("the mesh token never reaches a subscriber app on an embedded-broker delivery, nor any internal header the publisher's app set", async () => {
    // The publisher's own sidecar refuses internal names from its app (400); forged ones sent straight to a peer are dropped there (below).
    const forged = await fetch(`${base}/publish/iso.events`, { method: "POST", headers: { "content-type": "text/plain", "x-sidecar-caller": "evil", "x-sidecar-refused": "SHUTTING_DOWN" }, body: "forged" });
    assert.equal(forged.status, 400);
    const pub = await fetch(`${base}/publish/iso.events`, {
      method: "POST",
      headers: { "content-type": "text/plain", "x-sidecar-note": "kept" },
      body: "first",
    });
    assert.equal(pub.status, 202);
    const d = await waitFor(() => vault.callsTo("/events").find((c) => c.body === "first"), "the delivery");
    assert.equal(d.headers["x-sidecar-mesh-token"], undefined);
    assert.deepEqual(sidecarHeaders(d.headers), ["x-sidecar-attempt", "x-sidecar-caller", "x-sidecar-note", "x-sidecar-subscription", "x-sidecar-topic"]);
    assert.equal(d.headers["x-sidecar-caller"], "trusted", "the publishing service, vouched for by the mesh token; not what its app claimed");
    assert.equal(d.headers["x-sidecar-note"], "kept", "an app's own x-sidecar-* header travels");
  });

  it("a service refused by inbound.allow on /rpc gets no deliveries either, and its sidecar logs the refusal", async () => {
    const r = await rpc(apiUrl(outsider.sidecar), { service: "vault", endpoint: "Vault.Open" });
    assert.equal(r.status, 403);
    const pub = await fetch(`${apiUrl(outsider.sidecar)}/publish/iso.events`, { method: "POST", headers: { "content-type": "text/plain" }, body: "from outsider" });
    assert.equal(pub.status, 202);
    const refused = await waitFor(() => outsider.lines.find((l) => l.message === "a subscriber's sidecar refused the message"), "the publisher's refusal log line");
    assert.equal(refused.status, 403);
    assert.match(String(refused.error), /"outsider" may not publish to 'vault' \(inbound\.allow\)/);
    await waitFor(() => outsider.lines.find((l) => String(l.message).startsWith("no node of the subscribed service took the message")), "the message reported lost");
    // A message published after it arrives; the refused one never does.
    await fetch(`${base}/publish/iso.events`, { method: "POST", headers: { "content-type": "text/plain" }, body: "marker" });
    await waitFor(() => vault.callsTo("/events").some((c) => c.body === "marker"), "the marker delivery");
    assert.equal(vault.callsTo("/events").filter((c) => c.body === "from outsider").length, 0);
  });

  it("a direct POST to the inbound listener with x-sidecar-deliver and a forged caller, without the mesh token, is refused 401", async () => {
    const before = vault.callsTo("/events").length;
    const res = await fetch(`http://${vaultInbound}/`, { method: "POST", headers: { "x-sidecar-deliver": "iso.events", "x-sidecar-caller": "trusted", "content-type": "text/plain" }, body: "forged" });
    assert.equal(res.status, 401);
    const forgedEvil = await fetch(`http://${vaultInbound}/`, { method: "POST", headers: { "x-sidecar-deliver": "iso.events", "x-sidecar-caller": "evil", "x-sidecar-mesh-token": "not-the-mesh-token-at-all" }, body: "forged" });
    assert.equal(forgedEvil.status, 401);
    const marker = await fetch(`${base}/publish/iso.events`, { method: "POST", headers: { "content-type": "text/plain" }, body: "marker 2" });
    assert.equal(marker.status, 202);
    await waitFor(() => vault.callsTo("/events").some((c) => c.body === "marker 2"), "the marker delivery");
    assert.equal(vault.callsTo("/events").length, before + 1, "only the marker arrived");
  });

  it("an app answering x-sidecar-refused: SHUTTING_DOWN runs once per call, and the calling app never sees the header", async () => {
    echo1.answerHeaders = echo2.answerHeaders = { "x-sidecar-refused": "SHUTTING_DOWN", "x-sidecar-status": "500" };
    try {
      const runs = echo1.callCount() + echo2.callCount();
      for (let i = 0; i < 4; i++) {
        const r = await rpc(base, { service: "echo", endpoint: "Echo.Once", request: { i } });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.headers.get("x-sidecar-refused"), null);
        assert.equal(r.headers.get("x-sidecar-status"), null);
      }
      assert.equal(echo1.callCount() + echo2.callCount() - runs, 4, "one execution per call");
    } finally {
      echo1.answerHeaders = echo2.answerHeaders = undefined;
    }
  });

  it("an app answering x-sidecar-refused: MISDIRECTED does not get its node ejected, and runs once per call", async () => {
    echo1.answerHeaders = echo2.answerHeaders = { "x-sidecar-refused": "MISDIRECTED" };
    try {
      const runs = echo1.callCount() + echo2.callCount();
      for (let i = 0; i < 8; i++) {
        const r = await rpc(base, { service: "echo", endpoint: "Echo.Once", request: { i } });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.headers.get("x-sidecar-refused"), null);
      }
      assert.equal(echo1.callCount() + echo2.callCount() - runs, 8, "one execution per call");
      const view = (await (await fetch(`${base}/registry/echo`)).json()) as { nodes: { state: { ejected: boolean; consecutiveFailures: number } }[] };
      assert.deepEqual(view.nodes.map((n) => n.state.ejected), [false, false]);
      assert.deepEqual(view.nodes.map((n) => n.state.consecutiveFailures), [0, 0]);
    } finally {
      echo1.answerHeaders = echo2.answerHeaders = undefined;
    }
  });
});

describe("internal headers without mesh.token: a claimed caller is not shown to the app", () => {
  let dir: string;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let open: TestApp;
  let inbound: string;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-iso-open-"));
    open = await TestApp.start("open");
    apps.push(open);
    const s = await startSidecar(testSettings({ service: "open", appPort: open.port, registry: { dir }, extra: ['subscriptions=[{"topic": "open.events", "path": "/events"}]'] }));
    sidecars.push(s);
    inbound = s.node.address;
    await waitFor(() => s.registered, "open registered");
  });

  after(async () => {
    await teardown({ sidecars, apps });
    rmSync(dir, { recursive: true, force: true });
  });

  it("a direct delivery with a forged x-sidecar-caller is delivered without it, and without any internal header", async () => {
    const res = await fetch(`http://${inbound}/`, { method: "POST", headers: { "x-sidecar-deliver": "open.events", "x-sidecar-caller": "evil", "x-sidecar-app-token": "forged-app-token-0123", "content-type": "text/plain" }, body: "claimed" });
    assert.equal(res.status, 202);
    const d = await waitFor(() => open.callsTo("/events").find((c) => c.body === "claimed"), "the delivery");
    assert.equal(d.headers["x-sidecar-caller"], undefined, "no mesh token, no certificate: the name is only a claim");
    assert.deepEqual(sidecarHeaders(d.headers), ["x-sidecar-attempt", "x-sidecar-subscription", "x-sidecar-topic"]);
  });

  it("a direct call with a forged x-sidecar-caller reaches the app without it, and without any internal header", async () => {
    const res = await fetch(`http://${inbound}/Open/Call`, { method: "POST", headers: { "x-sidecar-caller": "evil", "x-sidecar-topic": "forged", "x-sidecar-subscription": "forged", "content-type": "application/json" }, body: "{}" });
    assert.equal(res.status, 200);
    const seen = open.calls.at(-1)!;
    assert.equal(seen.path, "/Open/Call");
    assert.deepEqual(sidecarHeaders(seen.headers), ["x-sidecar-timeout"]);
  });

  it("config: inbound.allow without mesh.token or mutual TLS is refused at start, naming the key", () => {
    assert.throws(
      () => loadConfig({ env: {}, cwd: dir, set: ["service.name=a", "app.port=1", "inbound.allow=[b]"] }),
      (e: unknown) => e instanceof Error && /--set inbound\.allow: inbound\.allow: expected mesh\.token or mesh\.tls with a ca \(mutual TLS\) as well/.test(e.message),
    );
    assert.doesNotThrow(() => loadConfig({ env: {}, cwd: dir, set: ["service.name=a", "app.port=1", "inbound.allow=[b]", `mesh.token=${MESH}`] }));
  });
});

describe("internal headers over the NATS transport", () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];
  let base: string;
  let n1: TestApp;
  let n2: TestApp;

  const settings = (service: string, app: TestApp, extra: string[] = []) => testSettings({ service, appPort: app.port, registry: { nats: nats.url }, extra: [`mesh.token=${MESH}`, ...extra] });

  before(async () => {
    nats = await NatsServer.start();
    const callerApp = await TestApp.start("client");
    n1 = await TestApp.start("n1");
    n2 = await TestApp.start("n2");
    apps.push(callerApp, n1, n2);
    const caller = await startSidecar(settings("client", callerApp));
    sidecars.push(caller);
    for (const a of [n1, n2]) sidecars.push(await startSidecar(settings("natsy", a, ["transport.kind=nats"])));
    base = apiUrl(caller);
    await waitFor(async () => (await registryNodes(base, "natsy")).length === 2, "two natsy nodes");
    nc = await connect({ servers: nats.url });
  });

  after(async () => {
    await nc?.close();
    await teardown({ sidecars, apps, nats });
  });

  it("a call over NATS reaches the app with the vouched caller and no internal header a requester set", async () => {
    const h = natsHeaders();
    for (const [k, v] of Object.entries({ "x-sidecar-mesh-token": MESH, "x-sidecar-caller": "client", "x-sidecar-method": "POST", "x-sidecar-path": "/Greeter/Hello", "x-sidecar-topic": "forged", "x-sidecar-deliver": "forged", "x-sidecar-app-token": "forged-app-token-0123", "x-sidecar-refused": "MISDIRECTED" })) h.set(k, v);
    const c1 = n1.callCount();
    const reply = await nc.request("sidecar.rpc.natsy", "{}", { headers: h, timeout: 5_000 });
    assert.equal(reply.headers?.get("x-sidecar-status"), "200");
    const seen = (n1.callCount() > c1 ? n1 : n2).calls.at(-1)!;
    assert.equal(seen.path, "/Greeter/Hello");
    assert.equal(seen.headers["x-sidecar-mesh-token"], undefined);
    assert.equal(seen.headers["x-sidecar-caller"], "client", "vouched for by the mesh token");
    assert.deepEqual(sidecarHeaders(seen.headers), ["x-sidecar-caller", "x-sidecar-timeout"]);
  });

  it("an app answering x-sidecar-refused: SHUTTING_DOWN over NATS runs once per call, and the calling app never sees the header", async () => {
    n1.answerHeaders = n2.answerHeaders = { "x-sidecar-refused": "SHUTTING_DOWN" };
    try {
      const runs = n1.callCount() + n2.callCount();
      for (let i = 0; i < 4; i++) {
        const r = await rpc(base, { service: "natsy", endpoint: "Greeter.Once", request: { i } });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.headers.get("x-sidecar-refused"), null);
      }
      assert.equal(n1.callCount() + n2.callCount() - runs, 4, "one execution per call");
    } finally {
      n1.answerHeaders = n2.answerHeaders = undefined;
    }
  });
});
