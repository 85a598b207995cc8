import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { createUser } from "@nats-io/nkeys";
import { silentLogger } from "../../src/log.js";
import { NatsClient } from "../../src/nats/connect.js";
import type { Sidecar } from "../../src/sidecar.js";
import { TestApp } from "../support/app.js";
import { TestCa } from "../support/certs.js";
import { NatsServer } from "../support/nats.js";
import { SidecarProcess, startSidecar, teardown, testSettings, waitFor } from "../support/sidecar.js";

const PASSWORD = "nats-password-0123456789";
const TOKEN = "nats-token-0123456789abcdef";

/** A NATS credentials file as `nsc` writes it: a user JWT, then the user's nkey seed. */
function credsFile(dir: string, seed: string): string {
  // The server below authenticates the nkey (it signs the server's nonce with the seed); it runs
  // without an operator, so the JWT part is not checked and a placeholder stands in for it.
  const jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.placeholder";
  const file = path.join(dir, "user.creds");
  writeFileSync(file, `-----BEGIN NATS USER JWT-----\n${jwt}\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`);
  return file;
}

/** nats.user/password, nats.token, nats.credentials and nats.tls against real nats-servers that require them. */
describe("NATS credentials and TLS", () => {
  let dir: string;
  let ca: TestCa;
  let users: NatsServer;
  let tokens: NatsServer;
  let tls: NatsServer;
  let app: TestApp;
  let creds: string;
  const sidecars: Sidecar[] = [];
  const procs: SidecarProcess[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-nats-auth-"));
    ca = TestCa.create("nats-ca");
    const server = ca.issue("nats");
    const user = createUser();
    creds = credsFile(dir, new TextDecoder().decode(user.getSeed()));
    [users, tokens, tls, app] = await Promise.all([
      NatsServer.start({ config: `authorization { users: [ { user: "sidecar", password: "${PASSWORD}" }, { nkey: "${user.getPublicKey()}" } ] }\n` }),
      NatsServer.start({ config: `authorization { token: "${TOKEN}" }\n` }),
      NatsServer.start({ config: `tls { cert_file: "${server.cert}", key_file: "${server.key}", ca_file: "${ca.cert}", verify: true }\n` }),
      TestApp.start("authed"),
    ]);
  });

  after(async () => {
    await teardown({ procs, sidecars, apps: [app] });
    await Promise.all([users, tokens, tls].map((s) => s?.stop()));
    rmSync(dir, { recursive: true, force: true });
    ca.remove();
  });

  const settings = (server: NatsServer, extra: string[] = []) => testSettings({ service: "authed", appPort: app.port, registry: { nats: server.url }, extra });

  it("user and password from the environment: the sidecar connects and registers; the password is never logged", async () => {
    const p = SidecarProcess.spawn(["start", ...[...settings(users), "log.format=json", "log.level=debug"].flatMap((s) => ["--set", s])], { SIDECAR_NATS_USER: "sidecar", SIDECAR_NATS_PASSWORD: PASSWORD });
    procs.push(p);
    await p.registered();
    p.kill("SIGTERM");
    assert.equal(await p.exit(), 0);
    assert.ok(!JSON.stringify(p.lines).includes(PASSWORD) && !p.stderr.includes(PASSWORD), "the password appears in no log line");
  });

  it("a wrong password: the sidecar says NATS refused its credentials (without printing them) and keeps retrying", async () => {
    const p = SidecarProcess.spawn(["start", ...[...settings(users, ["nats.user=sidecar", "nats.password=not-the-password-123"]), "log.format=json"].flatMap((s) => ["--set", s])]);
    procs.push(p);
    const line = await p.waitForLog("NATS refused this sidecar's credentials (nats.token, nats.user/password or nats.credentials); retrying every second", 10_000);
    assert.match(String(line.error), /authorization/i);
    const events = await p.events();
    const refused = await events.next("backend", (e) => e.backend === "nats");
    assert.equal(refused.status, "refused");
    events.close();
    assert.equal(p.proc.exitCode, null, "still running, waiting for valid credentials");
    assert.ok(!JSON.stringify(p.lines).includes("not-the-password-123"));
    p.kill("SIGKILL");
  });

  it("a wrong password: NatsClient.connect tells its onWaiting hook 'refused' until stopped", async () => {
    const stop = new AbortController();
    const waiting: string[] = [];
    const options = { servers: [users.url], name: "refused", user: "sidecar", password: "not-the-password-123" };
    const connecting = NatsClient.connect(options, silentLogger(), stop.signal, (why) => waiting.push(why));
    await waitFor(() => waiting.length > 0, "a refused attempt", 10_000);
    stop.abort();
    await assert.rejects(connecting, /stopped while waiting for NATS/);
    assert.deepEqual(waiting, waiting.map(() => "refused"));
  });

  it("a credentials file: the nkey seed in it answers the server's challenge", async () => {
    const s = await startSidecar(settings(users, [`nats.credentials=${creds}`]));
    sidecars.push(s);
    assert.equal(await waitRegistered(s), true);
  });

  it("a token", async () => {
    const s = await startSidecar(settings(tokens, [`nats.token=${TOKEN}`]));
    sidecars.push(s);
    assert.equal(await waitRegistered(s), true);
  });

  it("TLS with a client certificate (the server verifies it)", async () => {
    const client = ca.issue("authed");
    const s = await startSidecar(settings(tls, [`nats.tls.ca=${ca.cert}`, `nats.tls.cert=${client.cert}`, `nats.tls.key=${client.key}`]));
    sidecars.push(s);
    assert.equal(await waitRegistered(s), true);
  });

  it("TLS without the client certificate the server requires: the sidecar waits and says why", async () => {
    const p = SidecarProcess.spawn(["start", ...[...settings(tls, [`nats.tls.ca=${ca.cert}`]), "log.format=json"].flatMap((s) => ["--set", s])]);
    procs.push(p);
    const line = await p.waitForLog("waiting for NATS: cannot connect yet, retrying every second", 10_000);
    assert.match(String(line.hint), /TLS handshake may have been refused/);
    assert.equal(p.find("registered"), undefined);
    p.kill("SIGKILL");
  });
});

async function waitRegistered(s: Sidecar): Promise<boolean> {
  await waitFor(() => s.registered, "registration", 10_000);
  return true;
}
