import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { ConfigError, loadConfig } from "../../src/config/index.js";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { TestCa, type Issued } from "../support/certs.js";
import { apiUrl, registryNodes, rpc, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

const tlsSettings = (id: Issued, ca: string) => [`mesh.tls.cert=${id.cert}`, `mesh.tls.key=${id.key}`, `mesh.tls.ca=${ca}`];

/** mesh.tls: the inbound listener and the http transport over mutual TLS, with certificates made by openssl here. */
describe("mesh TLS (mutual, certificates from a test CA)", () => {
  let dir: string;
  let ca: TestCa;
  let rogue: TestCa;
  let callee: TestApp;
  let base: string;
  let inboundAddress: string;
  const apps: TestApp[] = [];
  const sidecars: Sidecar[] = [];

  const start = async (service: string, extra: string[]) => {
    const app = await TestApp.start(service);
    apps.push(app);
    const s = await startSidecar(testSettings({ service, appPort: app.port, registry: { dir }, extra }));
    sidecars.push(s);
    return { app, s, base: apiUrl(s) };
  };

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-tls-"));
    ca = TestCa.create("mesh-ca");
    rogue = TestCa.create("rogue-ca");
    const vault = await start("vault", [...tlsSettings(ca.issue("vault"), ca.cert), "inbound.allow=[trusted]", 'subscriptions=[{"topic": "tls.events", "path": "/events"}]']);
    callee = vault.app;
    inboundAddress = vault.s.node.address;
    base = (await start("trusted", tlsSettings(ca.issue("trusted"), ca.cert))).base;
    await waitFor(async () => (await registryNodes(base, "vault")).length === 1, "vault in the view");
  });

  after(async () => {
    await teardown({ sidecars, apps });
    rmSync(dir, { recursive: true, force: true });
    ca.remove();
    rogue.remove();
  });

  it("a call between two sidecars goes over mutual TLS and reaches the app", async () => {
    const r = await rpc(base, { service: "vault", endpoint: "Vault.Open", request: { n: 1 } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(JSON.parse(callee.calls.at(-1)!.body), { n: 1 });
    const proxied = await fetch(`${base}/proxy/vault/open`, { method: "POST", body: "streamed" });
    assert.equal(proxied.status, 200);
  });

  it("the inbound listener speaks only TLS, and only to a client certificate from the mesh CA", async () => {
    const calls = callee.callCount();
    await assert.rejects(fetch(`http://${inboundAddress}/Vault/Open`, { method: "POST", body: "{}" }), "plain HTTP is not answered");
    const [host, port] = inboundAddress.split(":");
    const attempt = (options: https.RequestOptions) =>
      new Promise<number>((resolve, reject) => {
        const req = https.request({ host, port: Number(port), method: "POST", path: "/Vault/Open", ...options }, (res) => resolve(res.statusCode ?? 0));
        req.once("error", reject);
        req.end("{}");
      });
    await assert.rejects(attempt({ ca: [await readText(ca.cert)] }), "no client certificate");
    const stranger = rogue.issue("trusted");
    await assert.rejects(attempt({ ca: [await readText(ca.cert)], cert: await readText(stranger.cert), key: await readText(stranger.key) }), "a certificate from another CA");
    assert.equal(callee.callCount(), calls, "the app saw none of these");
  });

  it("inbound.allow under mutual TLS trusts the certificate's CN, not the caller's claimed name", async () => {
    // Claims to be 'trusted' (its service name), but its certificate says 'intruder'.
    const impostor = await start("trusted", tlsSettings(ca.issue("intruder"), ca.cert));
    await waitFor(async () => (await registryNodes(impostor.base, "vault")).length === 1, "vault in the impostor's view");
    const calls = callee.callCount();
    const r = await rpc(impostor.base, { service: "vault", endpoint: "Vault.Open" });
    assert.equal(r.status, 403, JSON.stringify(r.body));
    assert.equal(r.body.error.code, "FORBIDDEN");
    assert.match(r.body.error.message, /"intruder" may not call 'vault'/);
    assert.equal(callee.callCount(), calls);
  });

  it("a sidecar whose certificate is from another CA cannot reach the mesh: 502, the app sees nothing", async () => {
    const outsider = await start("trusted", tlsSettings(rogue.issue("trusted"), rogue.cert));
    await waitFor(async () => (await registryNodes(outsider.base, "vault")).length === 1, "vault in the outsider's view");
    const calls = callee.callCount();
    const r = await rpc(outsider.base, { service: "vault", endpoint: "Vault.Open" });
    assert.equal(r.status, 502, JSON.stringify(r.body));
    assert.match(r.body.error.message, /SELF_SIGNED_CERT_IN_CHAIN: self-signed certificate in certificate chain/);
    assert.equal(callee.callCount(), calls);
  });

  it("local-broker deliveries to peers go over the same TLS", async () => {
    const pub = await fetch(`${base}/publish/tls.events`, { method: "POST", headers: { "content-type": "text/plain" }, body: "hello over tls" });
    assert.equal(pub.status, 202);
    await waitFor(() => callee.callsTo("/events").length === 1, "the delivery");
    assert.equal(callee.callsTo("/events")[0]!.body, "hello over tls");
  });

  it("config: unreadable files and a key that does not match its certificate are named, with the key", () => {
    const a = ca.issue("a");
    const b = ca.issue("b");
    const load = (set: string[]) => loadConfig({ env: {}, cwd: dir, set: ["service.name=a", "app.port=1", ...set] });
    assert.throws(() => load([`mesh.tls.cert=${dir}/nope.crt`, `mesh.tls.key=${a.key}`]), (e: unknown) => e instanceof ConfigError && /--set mesh\.tls\.cert: mesh\.tls\.cert: cannot read '.*nope\.crt': ENOENT/.test(e.message));
    assert.throws(() => load([`mesh.tls.cert=${a.cert}`, `mesh.tls.key=${b.key}`]), (e: unknown) => e instanceof ConfigError && /mesh\.tls: the key '.*b-mesh-ca\.key' does not belong to the certificate '.*a-mesh-ca\.crt'/.test(e.message));
    assert.throws(() => load([`mesh.tls.cert=${a.cert}`]), (e: unknown) => e instanceof ConfigError && /mesh\.tls\.key: required key is missing/.test(e.message));
    assert.throws(() => load([`mesh.tls.cert=${a.cert}`, `mesh.tls.key=${a.key}`, `mesh.tls.ca=${a.key}`]), (e: unknown) => e instanceof ConfigError && /mesh\.tls\.ca: '.*a-mesh-ca\.key' is not a PEM certificate/.test(e.message));
  });
});

async function readText(file: string): Promise<string> {
  const { readFile } = await import("node:fs/promises");
  return readFile(file, "utf8");
}
