import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { EtcdServer } from "../support/etcd.js";
import { NatsServer } from "../support/nats.js";
import { freePort } from "../support/ports.js";
import { ROOT, SidecarProcess, waitFor } from "../support/sidecar.js";

/** A process whose output is kept, for the examples. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): { proc: ChildProcess; out: () => string } {
  const proc = spawn(cmd, args, { cwd, env: { PATH: process.env.PATH, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  proc.stderr!.on("data", (c: Buffer) => (out += c.toString()));
  return { proc, out: () => out };
}

/**
 * The registry settings docker-compose.etcd.yml gives a sidecar (read from the file, so the test
 * and the compose file cannot drift apart), pointed at the test's etcd instead of host `etcd`.
 */
function etcdComposeEnv(service: string, etcdUrl: string): Record<string, string> {
  const compose = parse(readFileSync(path.join(ROOT, "docker-compose.etcd.yml"), "utf8")) as { services: Record<string, { environment: Record<string, string> }> };
  const env = { ...compose.services[service]!.environment };
  assert.equal(env.SIDECAR_REGISTRY_KIND, "etcd");
  env.SIDECAR_ETCD_ENDPOINTS = env.SIDECAR_ETCD_ENDPOINTS!.replace("http://etcd:2379", etcdUrl);
  return env;
}

for (const variant of ["nats", "etcd"] as const) examples(variant);

/** The examples as real processes, each beside its sidecar, on a real nats-server (and with `etcd`, as docker-compose.etcd.yml runs them: an etcd registry). */
function examples(variant: "nats" | "etcd"): void {
describe(`examples: Python greeter and Java caller through their sidecars${variant === "etcd" ? ", with the etcd registry (docker-compose.etcd.yml)" : ""}`, () => {
  let nats: NatsServer;
  let etcd: EtcdServer | undefined;
  let tmp: string;
  const procs: ChildProcess[] = [];
  const sidecars: SidecarProcess[] = [];
  let greeterPort: number;
  let caller: ReturnType<typeof run>;
  let greeter: ReturnType<typeof run>;

  before(async () => {
    nats = await NatsServer.start();
    if (variant === "etcd") etcd = await EtcdServer.start();
    tmp = mkdtempSync(path.join(os.tmpdir(), "sidecar-examples-"));
    const build = spawnSync("bash", ["examples/java-caller/build.sh"], { cwd: ROOT, encoding: "utf8" });
    assert.equal(build.status, 0, build.stderr);

    greeterPort = await freePort();
    greeter = run("python3", ["examples/python-greeter/greeter.py"], { APP_PORT: String(greeterPort) }, ROOT);
    procs.push(greeter.proc);
    const common = [`nats.servers=${nats.url}`, "inbound.host=127.0.0.1", "inbound.port=0", "log.format=json"];
    const flags = (file: string, extra: string[]) => ["start", "--config", path.join(ROOT, file), ...[...common, ...extra].flatMap((s) => ["--set", s])];
    // As docker-compose.yml runs them: a mesh token, which vouches for the caller's name (x-sidecar-caller) at the greeter.
    const mesh = { SIDECAR_MESH_TOKEN: "examples-test-mesh-token-0123" };
    const registry = (service: string) => (etcd ? etcdComposeEnv(service, etcd.url) : {});
    const g = SidecarProcess.spawn(flags("examples/python-greeter/sidecar.yaml", [`app.port=${greeterPort}`, "api.port=0"]), { ...mesh, ...registry("greeter-sidecar") });
    sidecars.push(g);
    await g.registered(15_000);

    const callerPort = await freePort();
    const callerApi = await freePort();
    const c = SidecarProcess.spawn(flags("examples/java-caller/sidecar.yaml", [`app.port=${callerPort}`, `api.port=${callerApi}`]), { ...mesh, ...registry("caller-sidecar") });
    sidecars.push(c);
    caller = run("java", ["-cp", "build", "Caller"], { APP_PORT: String(callerPort), SIDECAR_URL: `http://127.0.0.1:${callerApi}`, CALLER_ROUNDS: "3", CALLER_INTERVAL_MS: "100" }, path.join(ROOT, "examples/java-caller"));
    procs.push(caller.proc);
    await c.registered(15_000);
  });

  after(async () => {
    for (const p of procs) p.kill("SIGTERM");
    for (const s of sidecars) s.kill("SIGTERM");
    await Promise.all(sidecars.map((s) => s.exit()));
    await nats.stop();
    await etcd?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it("the Java caller's calls reach the Python greeter and its orders reach the greeter's subscription", async () => {
    if (etcd) {
      // The greeter was found through etcd: its record is there, under the default prefix.
      const res = await fetch(`${etcd.url}/v3/kv/range`, { method: "POST", body: JSON.stringify({ key: Buffer.from("/sidecar/registry/greeter/").toString("base64"), range_end: Buffer.from("/sidecar/registry/greeter0").toString("base64") }) });
      assert.equal(((await res.json()) as { count?: string }).count, "1", "one greeter record in etcd");
    }
    await waitFor(() => caller.out().includes("caller: done"), "the caller's three rounds", 20_000);
    for (const i of [1, 2, 3]) assert.match(caller.out(), new RegExp(`caller: greeter answered Hello Java #${i}\\n`));
    assert.match(greeter.out(), /greeter: Hello Java #1 \(called by caller\)/);
    await waitFor(async () => ((await (await fetch(`http://127.0.0.1:${greeterPort}/stats`)).json()) as { orders: number }).orders === 3, "three orders at the greeter", 10_000);
    const stats = (await (await fetch(`http://127.0.0.1:${greeterPort}/stats`)).json()) as { last: { id: number; item: string } };
    assert.deepEqual(stats.last, { id: 3, item: "book" });
    assert.match(greeter.out(), /greeter: received order \{'id': 1, 'item': 'book'\} \(message [0-9a-f-]{36}, attempt 1\)/);
  });

  // The demo runs on NATS: once, in the nats variant.
  if (variant === "nats") it("npm run demo runs the same topology as local processes and stops cleanly", () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", "scripts/demo.ts"], { cwd: ROOT, encoding: "utf8", env: { ...process.env, DEMO_ROUNDS: "1" }, timeout: 60_000 });
    const out = r.stdout.replace(/\x1b\[[0-9;]*m/g, "");
    assert.equal(r.status, 0, `${out}\n${r.stderr}`);
    assert.match(out, /\[caller\] caller: greeter answered Hello Java #1/);
    assert.match(out, /\[greeter\] greeter: received order \{'id': 1, 'item': 'book'\}/);
    assert.match(out, /\[demo\] stopped\n$/);
  });
});
}
