import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Etcd3, Range } from "etcd3";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { TestCa } from "../support/certs.js";
import { EtcdServer } from "../support/etcd.js";
import { apiUrl, registryNodes, SidecarProcess, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

const PASSWORD = "etcd-password-0123456789";

/** etcd.username/password and etcd.tls against real etcd servers that require them. */
describe("etcd credentials and TLS", () => {
  let ca: TestCa;
  let authed: EtcdServer;
  let tls: EtcdServer;
  let app: TestApp;
  const sidecars: Sidecar[] = [];
  const procs: SidecarProcess[] = [];

  before(async () => {
    ca = TestCa.create("etcd-ca");
    authed = await EtcdServer.start();
    // etcd's auth: a root user (required to enable it), and a sidecar user that may read and write the registry prefix only.
    const admin = new Etcd3({ hosts: authed.url });
    await admin.role("root").create();
    await admin.user("root").create("root-password-0123456789");
    await admin.user("root").addRole("root");
    await admin.role("registry").create();
    await admin.role("registry").grant({ permission: "Readwrite", range: Range.prefix("/sidecar/registry/") });
    await admin.user("sidecar").create(PASSWORD);
    await admin.user("sidecar").addRole("registry");
    await admin.auth.authEnable();
    admin.close();
    const server = ca.issue("etcd");
    tls = await EtcdServer.start({ tls: { ...server, clientCa: ca.cert } });
    app = await TestApp.start("etcd-secured");
  });

  after(async () => {
    await teardown({ procs, sidecars, apps: [app] });
    await authed.stop();
    await tls.stop();
    ca.remove();
  });

  const settings = (server: EtcdServer, extra: string[] = []) => testSettings({ service: "secured", appPort: app.port, registry: { etcd: server.url }, extra: ["registry.ttl=2s", ...extra] });

  it("user and password from the environment: the sidecar registers; the password is never logged", async () => {
    const p = SidecarProcess.spawn(["start", ...[...settings(authed), "log.format=json", "log.level=debug"].flatMap((s) => ["--set", s])], { SIDECAR_ETCD_USERNAME: "sidecar", SIDECAR_ETCD_PASSWORD: PASSWORD });
    procs.push(p);
    await p.registered();
    const nodes = await registryNodes(p.apiUrl, "secured");
    assert.deepEqual(nodes, [p.nodeId]);
    p.kill("SIGTERM");
    assert.equal(await p.exit(), 0);
    assert.ok(!JSON.stringify(p.lines).includes(PASSWORD) && !p.stderr.includes(PASSWORD), "the password appears in no log line");
  });

  it("a wrong password: the sidecar says etcd refused its credentials (without printing them), answers 503 STARTING, and keeps retrying", async () => {
    const p = SidecarProcess.spawn(["start", ...[...settings(authed, ["etcd.username=sidecar", "etcd.password=not-the-password-123"]), "log.format=json"].flatMap((s) => ["--set", s])]);
    procs.push(p);
    const line = await p.waitForLog("etcd refused this sidecar's credentials (etcd.username/password); retrying every second", 10_000);
    assert.match(String(line.error), /authentication failed|invalid user ID or password/i);
    const api = `http://${String((await p.waitForLog("api listening")).api)}`;
    const call = await fetch(`${api}/rpc`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"service":"x","endpoint":"y"}' });
    assert.equal(call.status, 503);
    assert.equal(((await call.json()) as { error: { code: string } }).error.code, "STARTING");
    assert.equal(p.proc.exitCode, null, "still running, waiting for valid credentials");
    assert.ok(!JSON.stringify(p.lines).includes("not-the-password-123"));
    p.kill("SIGKILL");
  });

  it("TLS with a client certificate (etcd verifies it): the sidecar registers and a caller sees it", async () => {
    const client = ca.issue("sidecar-client");
    const tlsSettings = [`etcd.tls.ca=${ca.cert}`, `etcd.tls.cert=${client.cert}`, `etcd.tls.key=${client.key}`];
    const s = await startSidecar(settings(tls, tlsSettings));
    sidecars.push(s);
    const caller = await startSidecar(testSettings({ service: "tls-caller", appPort: app.port, registry: { etcd: tls.url }, extra: ["registry.ttl=2s", ...tlsSettings] }));
    sidecars.push(caller);
    await waitFor(async () => (await registryNodes(apiUrl(caller), "secured")).includes(s.node.id), "the TLS-registered node in the caller's view");
  });

  it("TLS without the client certificate etcd requires: the sidecar waits and says why", async () => {
    const p = SidecarProcess.spawn(["start", ...[...settings(tls, [`etcd.tls.ca=${ca.cert}`]), "log.format=json"].flatMap((s) => ["--set", s])]);
    procs.push(p);
    const line = await p.waitForLog("waiting for etcd: cannot connect yet, retrying every second", 10_000);
    assert.deepEqual(line.endpoints, [tls.url]);
    assert.equal(p.proc.exitCode, null);
    p.kill("SIGKILL");
  });
});
