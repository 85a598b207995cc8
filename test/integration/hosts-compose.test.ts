import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { parse } from "yaml";
import { Hosts } from "../hosts/hosts.js";
import { getJson, HostProcess } from "../hosts/process.js";
import { ROOT, waitFor } from "../support/sidecar.js";

interface ComposeService {
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  network_mode?: string;
}

/** docker-compose.yml as compose reads it: `${NAME:-default}` taken from our environment, else the default. */
function compose(): Record<string, ComposeService> {
  const text = readFileSync(path.join(ROOT, "docker-compose.yml"), "utf8").replace(/\$\{(\w+):-([^}]*)\}/g, (_m, name: string, dflt: string) => process.env[name] || dflt);
  return (parse(text) as { services: Record<string, ComposeService> }).services;
}

/** A service's bind mounts, as host paths by container path ("./examples/x.yaml:/config/sidecar.yaml:ro"). */
function mounts(s: ComposeService): Map<string, string> {
  return new Map((s.volumes ?? []).filter((v) => v.startsWith("./")).map((v) => [v.split(":")[1]!, path.join(ROOT, v.split(":")[0]!)]));
}

/** A compose command's arguments with container paths replaced by the files mounted there. */
function args(s: ComposeService): string[] {
  const m = mounts(s);
  return (s.command ?? []).map((a) => m.get(a) ?? a);
}

const CLI = path.join(ROOT, "dist", "cli.js");

/**
 * docker-compose.yml's topology, as compose runs it, on hosts made of network namespaces: NATS on
 * host `nats`; the greeter and its sidecar sharing host `greeter` (network_mode: service:greeter
 * shares a namespace); the caller and its sidecar on host `caller`. Names resolve as compose's DNS
 * resolves them; the sidecars get the compose file's own command, sidecar.yaml and environment
 * (SIDECAR_NATS_SERVERS=nats://nats:4222, SIDECAR_INBOUND_ADVERTISE=greeter:8082, …), read from the
 * file so the two cannot drift apart. Only the Java caller's interval is shortened (an app setting).
 */
describe("hosts: the docker-compose topology on three hosts (network namespaces)", () => {
  let hosts: Hosts;
  let tmp: string;
  const procs: HostProcess[] = [];
  const services = compose();

  before(async () => {
    const why = Hosts.missing();
    if (why) throw new Error(why);
    const build = spawnSync("bash", ["examples/java-caller/build.sh"], { cwd: ROOT, encoding: "utf8" });
    assert.equal(build.status, 0, build.stderr);
    tmp = mkdtempSync(path.join(os.tmpdir(), "sidecar-hosts-"));
    hosts = Hosts.create(["nats", "greeter", "caller"]);
    for (const name of ["greeter-sidecar", "caller-sidecar"]) assert.equal(services[name]!.network_mode, `service:${name.replace("-sidecar", "")}`, `${name} shares its app's network namespace`);

    const natsArgs = (services.nats!.command ?? []).map((a) => (a === "/data" ? path.join(tmp, "nats") : a));
    const nats = HostProcess.start(hosts, "nats", "nats", "nats-server", natsArgs);
    procs.push(nats);
    await nats.line(/Server is ready/);

    const env = (s: ComposeService, extra: Record<string, string> = {}) => ({ PATH: process.env.PATH, HOME: tmp, ...s.environment, ...extra });
    const greeter = HostProcess.start(hosts, "greeter", "greeter", "python3", ["examples/python-greeter/greeter.py"], { env: env(services.greeter!), cwd: ROOT });
    procs.push(greeter);
    await greeter.line(/greeter: listening/);
    const greeterSidecar = HostProcess.start(hosts, "greeter", "greeter-sidecar", process.execPath, [CLI, ...args(services["greeter-sidecar"]!)], { env: env(services["greeter-sidecar"]!), cwd: tmp });
    procs.push(greeterSidecar);
    await greeterSidecar.line(/"registered"/, 20_000);

    const callerSidecar = HostProcess.start(hosts, "caller", "caller-sidecar", process.execPath, [CLI, ...args(services["caller-sidecar"]!)], { env: env(services["caller-sidecar"]!), cwd: tmp });
    procs.push(callerSidecar);
    const caller = HostProcess.start(hosts, "caller", "caller", "java", ["-cp", "build", "Caller"], { env: env(services.caller!, { CALLER_INTERVAL_MS: "200" }), cwd: path.join(ROOT, "examples/java-caller") });
    procs.push(caller);
    await callerSidecar.line(/"registered"/, 20_000);
  });

  after(async () => {
    await hosts?.destroy();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  const proc = (name: string) => procs.find((p) => p.name === name)!;

  it("the greeter's sidecar listens on 0.0.0.0:8082 and advertises greeter:8082, as the compose file says", async () => {
    assert.equal(services["greeter-sidecar"]!.environment!.SIDECAR_INBOUND_ADVERTISE, "greeter:8082");
    const view = await waitFor(() => {
      const r = getJson(hosts, "caller", "http://127.0.0.1:8081/registry/greeter") as { status: number; body: { nodes?: { address: string }[] } };
      return r.status === 200 && r.body.nodes?.length === 1 ? r.body : undefined;
    }, "the caller's sidecar to see the greeter", 10_000);
    assert.equal(view.nodes![0]!.address, "greeter:8082");
    // Reachable by that name from another host: bound to every address, not loopback only.
    const r = hosts.run("nats", process.execPath, ["-e", "require('net').connect(8082, 'greeter').on('connect', () => { console.log('connected'); process.exit(0); }).on('error', (e) => { console.log(e.code); process.exit(1); })"]);
    assert.equal(r.stdout.trim(), "connected");
  });

  it("the demo's calls flow: the Java caller's greetings are answered by the Python greeter, across hosts", async () => {
    await proc("caller").line(/caller: greeter answered Hello/, 20_000);
    await proc("greeter").line(/greeter: Hello .* \(called by caller\)/, 5_000);
  });

  it("the demo's orders flow: published on the caller's host, delivered to the greeter by its sidecar (JetStream on host nats)", async () => {
    const published = await proc("caller").line(/caller: published order (\d+)/, 20_000);
    const n = /order (\d+)/.exec(published)![1];
    await proc("greeter").line(new RegExp(`greeter: received order \{'id': ${n}, `), 15_000);
  });
});
