/**
 * deploy/kubernetes, checked as far as a machine without a cluster allows. No cluster and no
 * Helm here: the manifests are parsed and held against the sidecar's own code. The
 * ConfigMap's sidecar.yaml, with the environment the Deployment gives the sidecar, goes
 * through the sidecar's loader; each SIDECAR_* name through its env mapping; each probe's
 * command runs against the sidecar's own health handlers; ports, the native sidecar shape, the
 * grace period against the drain and the app's SIDECAR_URL are compared with the loaded
 * config; the NATS chart's values with the sidecar's replicas, servers and credentials.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import YAML from "yaml";
import { tokenGate } from "../../src/api/router.js";
import { managementHandler, type ManagementDeps, type SidecarStatus } from "../../src/api/routes.js";
import { starting } from "../../src/api/starting.js";
import { ConfigError, loadConfig, type Config } from "../../src/config/index.js";
import { envPath, keyTree } from "../../src/config/keys.js";
import { configSchema } from "../../src/config/schema.js";
import type { AppHealth } from "../../src/health/checker.js";
import { Secret } from "../../src/http/auth.js";
import { silentLogger } from "../../src/log.js";
import type { RegistryStatus } from "../../src/registry/types.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const DIR = path.join(ROOT, "deploy/kubernetes");
const VALUES_FILE = "nats-values.yaml";
/** The key tree the loader maps SIDECAR_* names with (src/config/load.ts builds the same one). */
const TREE = keyTree(configSchema);
/** What the downward API gives a pod, for the fields the manifests read. */
const POD: Record<string, string> = { "status.podIP": "10.244.1.7", "metadata.name": "greeter-7d9f8b6c5d-x2x4q" };
/** src/sidecar.ts DRAIN_GRACE_MS: how long a draining sidecar keeps refusing calls before closing its inbound listener. */
const DRAIN_GRACE_MS = 500;
/** What the grace period keeps for the greeter's own exit after SIGTERM (it stops at once) and for closing NATS. */
const APP_EXIT_MS = 5_000;
const CLOSE_MS = 2_000;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
function obj(v: unknown, what: string): Obj {
  assert.ok(isObj(v), `${what}: expected a mapping, got ${JSON.stringify(v)}`);
  return v;
}
function list(v: unknown, what: string): unknown[] {
  assert.ok(Array.isArray(v), `${what}: expected a list, got ${JSON.stringify(v)}`);
  return v;
}
function str(v: unknown, what: string): string {
  assert.equal(typeof v, "string", `${what}: expected a string, got ${JSON.stringify(v)}`);
  return v as string;
}

/** Every document of a YAML file, parsed as the kubectl of a cluster would (multi-document). */
function documents(file: string): Obj[] {
  const docs = YAML.parseAllDocuments(readFileSync(path.join(DIR, file), "utf8"));
  return Array.from(docs, (d, i) => {
    assert.deepEqual([...d.errors, ...d.warnings].map((e) => e.message), [], `${file}, document ${i + 1}`);
    return obj(d.toJS(), `${file}, document ${i + 1}`);
  });
}

// Everything in deploy/kubernetes but the Helm values is a manifest.
const MANIFESTS = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f) && f !== VALUES_FILE).sort();
const objects = MANIFESTS.flatMap((file) => documents(file).map((doc) => ({ file, doc })));
function one(kind: string): Obj {
  const found = objects.filter((o) => o.doc.kind === kind);
  assert.equal(found.length, 1, `expected one ${kind} in deploy/kubernetes, found ${found.length}`);
  return found[0]!.doc;
}
const nameOf = (o: Obj) => str(obj(o.metadata, "metadata").name, "metadata.name");

const deployment = one("Deployment");
const template = obj(obj(deployment.spec, "Deployment spec").template, "pod template");
const podSpec = obj(template.spec, "pod spec");
const initContainers = list(podSpec.initContainers ?? [], "initContainers").map((c, i) => obj(c, `initContainers[${i}]`));
const containers = list(podSpec.containers, "containers").map((c, i) => obj(c, `containers[${i}]`));
const sidecar = initContainers.find((c) => c.name === "sidecar");
const secret = one("Secret");
const configMap = one("ConfigMap");

/** The Secret's values, from stringData or (base64) data, as the kubelet hands them to containers. */
const secretValues: Record<string, string> = {
  ...Object.fromEntries(Object.entries(isObj(secret.data) ? secret.data : {}).map(([k, v]) => [k, Buffer.from(str(v, `data.${k}`), "base64").toString("utf8")])),
  ...(isObj(secret.stringData) ? Object.fromEntries(Object.entries(secret.stringData).map(([k, v]) => [k, str(v, `stringData.${k}`)])) : {}),
};

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: Obj;
}
const envOf = (c: Obj): EnvVar[] => list(c.env ?? [], `${String(c.name)} env`).map((e) => obj(e, "env entry") as unknown as EnvVar);

/** A container's environment as the kubelet builds it: $(VAR) of a variable defined before it, the downward API, the Secret. */
function resolveEnv(c: Obj): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of envOf(c)) {
    if (e.value !== undefined) {
      env[e.name] = str(e.value, e.name).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (ref, name: string) => env[name] ?? ref);
      assert.doesNotMatch(env[e.name]!, /\$\([A-Za-z_]/, `${e.name}: refers to a variable not defined before it`);
      continue;
    }
    const from = obj(e.valueFrom, `${e.name}.valueFrom`);
    if (from.fieldRef !== undefined) {
      const field = str(obj(from.fieldRef, "fieldRef").fieldPath, `${e.name} fieldPath`);
      assert.ok(field in POD, `${e.name}: downward API field ${field} not modelled here`);
      env[e.name] = POD[field]!;
    } else if (from.secretKeyRef !== undefined) {
      const ref = obj(from.secretKeyRef, "secretKeyRef");
      assert.equal(ref.name, nameOf(secret), `${e.name}: expected the Secret of deploy/kubernetes`);
      const key = str(ref.key, `${e.name} key`);
      assert.ok(key in secretValues, `${e.name}: the Secret has no key ${key}`);
      env[e.name] = secretValues[key]!;
    } else assert.fail(`${e.name}: valueFrom ${JSON.stringify(from)} not modelled here`);
  }
  return env;
}

/** The config the sidecar starts with: the ConfigMap's file at the path its args name, and its environment. */
function loadSidecarConfig(extraEnv: Record<string, string> = {}): Config {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-k8s-"));
  const file = path.join(dir, "sidecar.yaml");
  writeFileSync(file, str(obj(configMap.data, "ConfigMap data")["sidecar.yaml"], "ConfigMap data sidecar.yaml"));
  return loadConfig({ file, env: { ...resolveEnv(sidecar!), ...extraEnv }, cwd: dir }).config;
}

/** Where a probe asks: an exec probe's URL, or an httpGet probe's host (the pod's IP unless given), port and path. */
function probeTarget(probe: Obj, what: string): { kind: "exec" | "httpGet"; host: string; port: number; path: string } {
  if (probe.exec !== undefined) {
    const command = list(obj(probe.exec, what).command, `${what} command`).map((a) => str(a, `${what} command`));
    const url = command.join(" ").match(/https?:\/\/[^'"\s)]+/);
    assert.ok(url, `${what}: no URL in ${JSON.stringify(command)}`);
    const u = new URL(url[0]);
    return { kind: "exec", host: u.hostname, port: Number(u.port), path: u.pathname };
  }
  const get = obj(probe.httpGet, `${what}: expected exec or httpGet`);
  return { kind: "httpGet", host: typeof get.host === "string" ? get.host : POD["status.podIP"]!, port: Number(get.port), path: str(get.path, `${what} path`) };
}

const PROBES = ["startupProbe", "readinessProbe", "livenessProbe"] as const;
type ProbeKind = (typeof PROBES)[number];
const probeOf = (kind: ProbeKind) => obj(sidecar![kind], `sidecar ${kind}`);

/** Run an exec probe's command against `port` instead of the api's: its exit status, as the kubelet reads it. */
function runProbe(kind: ProbeKind, apiPort: number, port: number): Promise<number | null> {
  const command = list(obj(probeOf(kind).exec, kind).command, kind).map((a) => str(a, kind).replace(`127.0.0.1:${apiPort}`, `127.0.0.1:${port}`));
  assert.equal(command[0], "node", `${kind}: the sidecar image runs node; this test runs the same command with this process's node`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, command.slice(1), { stdio: "ignore", timeout: 10_000 });
    child.once("error", reject);
    child.once("exit", (code) => resolve(code));
  });
}

/** A listener on a free loopback port serving `handler`. */
async function serve(handler: http.RequestListener): Promise<{ port: number; close: () => Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

describe("deploy/kubernetes: the manifests", () => {
  it("parse, each object with its apiVersion, kind and name; the Deployment's selector matches its pods", () => {
    assert.deepEqual(MANIFESTS, ["configmap.yaml", "deployment.yaml", "secret.yaml"]);
    for (const { file, doc } of objects) {
      assert.equal(typeof doc.apiVersion, "string", `${file}: apiVersion`);
      assert.equal(typeof doc.kind, "string", `${file}: kind`);
      assert.match(nameOf(doc), /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${file}: a DNS label as the name`);
    }
    const selector = obj(obj(obj(deployment.spec, "spec").selector, "selector").matchLabels, "matchLabels");
    const labels = obj(obj(template.metadata, "template metadata").labels, "template labels");
    for (const [k, v] of Object.entries(selector)) assert.equal(labels[k], v, `template label ${k}`);
  });

  it("run the sidecar as a native sidecar: an init container with restartPolicy Always, started with the ConfigMap's sidecar.yaml", () => {
    assert.ok(sidecar, "an initContainers entry named sidecar");
    assert.equal(sidecar.restartPolicy, "Always", "restartPolicy Always is what makes an init container a sidecar (Kubernetes >= 1.29)");
    assert.equal(containers.length, 1, "one app container beside it");
    assert.notEqual(containers[0]!.image, sidecar.image, "the sidecar is not also a regular container");
    assert.equal(sidecar.command, undefined, "the image's entrypoint (node dist/cli.js) is kept");
    const args = list(sidecar.args, "sidecar args");
    assert.deepEqual(args.slice(0, 2), ["start", "--config"]);
    const configPath = str(args[2], "the --config path");
    // The path is a file of the ConfigMap, through a read-only mount.
    const mount = list(sidecar.volumeMounts, "volumeMounts").map((m) => obj(m, "volumeMount")).find((m) => configPath.startsWith(`${str(m.mountPath, "mountPath").replace(/\/$/, "")}/`));
    assert.ok(mount, `a volume mounted above ${configPath}`);
    assert.equal(mount.readOnly, true);
    const volume = list(podSpec.volumes, "volumes").map((v) => obj(v, "volume")).find((v) => v.name === mount.name);
    const source = obj(volume?.configMap, `volume ${String(mount.name)}: a ConfigMap volume`);
    assert.equal(source.name, nameOf(configMap), "the ConfigMap of deploy/kubernetes");
    const fileInMount = configPath.slice(str(mount.mountPath, "mountPath").replace(/\/$/, "").length + 1);
    const items = list(source.items ?? [], "items").map((i) => obj(i, "item"));
    const key = items.length === 0 ? fileInMount : items.find((i) => i.path === fileInMount)?.key;
    assert.equal(key, "sidecar.yaml", `${configPath} is the ConfigMap's sidecar.yaml`);
    assert.ok("sidecar.yaml" in obj(configMap.data, "ConfigMap data"));
  });

  it("give the sidecar only SIDECAR_* names that map onto config keys (the loader's own mapping)", () => {
    const names = envOf(sidecar!).map((e) => e.name).filter((n) => n.startsWith("SIDECAR_"));
    assert.ok(names.length >= 4, `SIDECAR_* variables in the sidecar's environment: ${names.join(", ")}`);
    for (const name of names) assert.ok(envPath(TREE, name), `${name} is no config key: the sidecar would refuse to start`);
    assert.deepEqual(envPath(TREE, "SIDECAR_INBOUND_ADVERTISE"), ["inbound", "advertise"]);
    assert.deepEqual(envPath(TREE, "SIDECAR_NATS_PASSWORD"), ["nats", "password"]);
    // SIDECAR_URL is the clients' variable, no config key: it belongs in the app's container only.
    assert.equal(envPath(TREE, "SIDECAR_URL"), undefined);
    assert.ok(!names.includes("SIDECAR_URL"));
    // A Service named `sidecar` would inject SIDECAR_SERVICE_HOST and friends: no config keys either, hence no service links.
    assert.equal(envPath(TREE, "SIDECAR_SERVICE_HOST"), undefined);
    assert.equal(podSpec.enableServiceLinks, false);
    assert.throws(() => loadSidecarConfig({ SIDECAR_SERVICE_HOST: "10.96.0.12" }), (err: unknown) => err instanceof ConfigError && err.problems.some((p) => p.includes("SIDECAR_SERVICE_HOST")));
  });

  it("give the sidecar a config its own loader accepts: the ConfigMap's file, the pod's IP, the Secret's values", () => {
    const config = loadSidecarConfig();
    assert.equal(config.service.name, "greeter");
    assert.equal(config.registry.kind, "nats");
    assert.equal(config.broker.kind, "nats");
    assert.equal(config.inbound.advertise, `${POD["status.podIP"]}:${config.inbound.port}`, "peers dial the pod's IP at the inbound port");
    assert.equal(config.mesh.token, secretValues["mesh-token"]);
    assert.equal(config.nats.user, secretValues["nats-user"]);
    assert.equal(config.nats.password, secretValues["nats-password"]);
    assert.equal(config.service.metadata.pod, POD["metadata.name"]);
    // The app's port: what the greeter is told to listen on.
    const appEnv = resolveEnv(containers[0]!);
    assert.equal(Number(appEnv.APP_PORT), config.app.port);
  });

  it("publish the inbound port the sidecar binds and advertises, and not the loopback api port", () => {
    const config = loadSidecarConfig();
    const ports = list(sidecar!.ports, "sidecar ports").map((p) => obj(p, "port"));
    const inbound = ports.find((p) => p.name === "inbound");
    assert.equal(inbound?.containerPort, config.inbound.port);
    assert.notEqual(config.inbound.host, "127.0.0.1", "peers reach the inbound listener from other pods");
    assert.equal(Number(config.inbound.advertise!.split(":")[1]), config.inbound.port);
    assert.equal(config.api.host, "127.0.0.1", "the api is for the app in the pod alone");
    assert.ok(!ports.some((p) => p.containerPort === config.api.port), "the api port is not listed: nothing outside the pod reaches it");
  });

  it("point the app's SIDECAR_URL at the api's host and port, in the pod's shared network namespace", () => {
    const config = loadSidecarConfig();
    const url = new URL(str(resolveEnv(containers[0]!).SIDECAR_URL, "the app's SIDECAR_URL"));
    assert.equal(url.protocol, "http:");
    assert.equal(url.hostname, config.api.host);
    assert.equal(Number(url.port), config.api.port);
  });

  it("give the pod a grace period that covers the app's exit and the sidecar's whole drain", () => {
    const config = loadSidecarConfig();
    const grace = Number(podSpec.terminationGracePeriodSeconds) * 1000;
    // The app containers' preStop hooks run first; the sidecar's SIGTERM comes after the app has exited.
    const preStop = containers.map((c) => {
      const hook = isObj(c.lifecycle) && isObj(c.lifecycle.preStop) ? c.lifecycle.preStop : undefined;
      if (!hook) return 0;
      if (isObj(hook.sleep)) return Number(hook.sleep.seconds) * 1000;
      const command = isObj(hook.exec) ? list(hook.exec.command, "preStop command").join(" ") : "";
      const sleep = /\bsleep\s+(\d+)/.exec(command);
      assert.ok(sleep || !isObj(hook.exec) || command === "", `${String(c.name)}: a preStop hook this test cannot time: ${command}`);
      return sleep ? Number(sleep[1]) * 1000 : 0;
    });
    // Deliveries in flight (up to shutdownTimeout), refusing calls, calls in flight (up to shutdownTimeout).
    const drain = 2 * config.shutdownTimeout + DRAIN_GRACE_MS;
    const needed = Math.max(...preStop, 0) + APP_EXIT_MS + drain + CLOSE_MS;
    assert.ok(grace > config.shutdownTimeout, `terminationGracePeriodSeconds ${grace / 1000}s against shutdownTimeout ${config.shutdownTimeout}ms`);
    assert.ok(grace >= needed, `terminationGracePeriodSeconds ${grace / 1000}s: the app's exit and the sidecar's drain need ${needed / 1000}s`);
  });
});

describe("deploy/kubernetes: the sidecar's probes", () => {
  const state = { app: "passing" as AppHealth, registered: true, registry: "connected" as RegistryStatus, broker: "connected", subscriptions: true, draining: false };
  const status: SidecarStatus = {
    app: () => state.app,
    registered: () => state.registered,
    registry: () => state.registry,
    broker: () => state.broker,
    subscriptionsHealthy: () => state.subscriptions,
    draining: () => state.draining,
  };
  const log = silentLogger();
  // The sidecar's own handlers: the management routes, and what the api answers while it starts.
  const unused = <T>(what: string) => new Proxy({}, { get: () => assert.fail(`the health routes read no ${what}`) }) as unknown as T;
  const deps: ManagementDeps = {
    view: unused<ManagementDeps["view"]>("registry view"),
    list: () => assert.fail("the health routes list no registry"),
    lookupTimeout: 1_000,
    metrics: unused<ManagementDeps["metrics"]>("metrics"),
    status,
    nodeState: () => undefined,
    subscriptions: () => [],
    about: () => ({}),
    recent: () => [],
    events: () => [],
    traffic: () => ({ calls: [], deliveries: [] }),
  };
  let running: Awaited<ReturnType<typeof serve>>;
  let startingUp: Awaited<ReturnType<typeof serve>>;
  let config: Config;
  before(async () => {
    config = loadSidecarConfig();
    running = await serve(managementHandler(deps, log));
    startingUp = await serve((req, res) => starting(req, res, log, config.registry.kind));
  });
  after(async () => {
    await running.close();
    await startingUp.close();
  });
  const set = (s: Partial<typeof state>) => Object.assign(state, { app: "passing", registered: true, registry: "connected", broker: "connected", subscriptions: true, draining: false }, s);

  it("ask the api on its host and port, from inside the pod (exec: the api is loopback, which the kubelet's HTTP probes cannot reach)", () => {
    for (const kind of PROBES) {
      const t = probeTarget(probeOf(kind), kind);
      assert.equal(t.port, config.api.port, `${kind}: the api port`);
      if (t.kind === "httpGet") assert.ok(!/^(127\.|localhost$|::1$)/.test(config.api.host), `${kind}: an httpGet probe is sent to the pod's IP, but api.host is ${config.api.host}`);
      else assert.equal(t.host, config.api.host, `${kind}: the api's host`);
      // Exec probes send no Authorization header: the routes must be open whatever api.token says.
      assert.ok(tokenGate(new Secret("k8s-probe-test-api-token")).authorized({ url: t.path, headers: {} } as unknown as http.IncomingMessage), `${kind}: ${t.path} is open without the api token`);
    }
    assert.equal(probeTarget(probeOf("readinessProbe"), "readinessProbe").path, "/health/ready");
    assert.equal(probeTarget(probeOf("livenessProbe"), "livenessProbe").path, "/health/live");
  });

  it("pass while the sidecar starts only for startup and liveness: the app starts, nothing is restarted, the pod is not ready", async () => {
    assert.equal(await runProbe("startupProbe", config.api.port, startingUp.port), 0);
    assert.equal(await runProbe("livenessProbe", config.api.port, startingUp.port), 0);
    assert.equal(await runProbe("readinessProbe", config.api.port, startingUp.port), 1);
  });

  it("pass readiness only once the app is registered and the backends connected, and never fail liveness for it", async () => {
    for (const [why, s, ready] of [
      ["all well", {}, 0],
      ["the app is not registered", { registered: false, app: "failing" as AppHealth }, 1],
      ["NATS is disconnected", { registry: "disconnected" as RegistryStatus, broker: "disconnected" }, 1],
      ["a subscription failed", { subscriptions: false }, 1],
      ["the sidecar is draining", { draining: true }, 1],
    ] as const) {
      set(s);
      assert.equal(await runProbe("readinessProbe", config.api.port, running.port), ready, `readiness when ${why}`);
      assert.equal(await runProbe("livenessProbe", config.api.port, running.port), 0, `liveness when ${why}`);
    }
    set({});
  });

  it("fail when nothing answers", async () => {
    const gone = await serve(() => undefined);
    await gone.close();
    for (const kind of PROBES) assert.equal(await runProbe(kind, config.api.port, gone.port), 1, kind);
  });
});

describe("deploy/kubernetes: the app container", () => {
  const hasPython = spawnSync("python3", ["--version"]).status === 0;
  it("runs the greeter so that SIGTERM stops it (the image's python3 runs as PID 1, which ignores signals it has no handler for)", { skip: !hasPython && "python3 is not installed" }, async () => {
    const command = list(containers[0]!.command, "the greeter's command").map((a) => str(a, "command"));
    const free = await serve(() => undefined);
    await free.close();
    const child = spawn(command[0]!, command.slice(1), { cwd: path.join(ROOT, "examples/python-greeter"), env: { ...process.env, APP_PORT: String(free.port) }, stdio: ["ignore", "ignore", "inherit"] });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once("exit", (code, signal) => r({ code, signal })));
    try {
      // Serving: the command runs the greeter itself, and SIGTERM comes while it waits for requests.
      const deadline = Date.now() + 10_000;
      for (;;) {
        const ok = await fetch(`http://127.0.0.1:${free.port}/health`).then((r) => r.ok, () => false);
        if (ok) break;
        assert.ok(Date.now() < deadline, "the greeter did not answer GET /health within 10 s");
        await new Promise((r) => setTimeout(r, 50));
      }
      child.kill("SIGTERM");
      // Handled, it ends with status 0; unhandled, it would be killed by the signal here (and, as PID 1, not at all).
      assert.deepEqual(await exited, { code: 0, signal: null });
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("deploy/kubernetes: NATS from its Helm chart", () => {
  const values = obj(YAML.parse(readFileSync(path.join(DIR, VALUES_FILE), "utf8")), VALUES_FILE);
  const natsConfig = obj(values.config, "config");
  const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");

  it("is the official chart, installed as the README says, with these values", () => {
    assert.match(readme, /helm repo add nats https:\/\/nats-io\.github\.io\/k8s\/helm\/charts\/?\s/);
    assert.match(readme, /helm install \S+ nats\/nats\b[^\n]*-f deploy\/kubernetes\/nats-values\.yaml/);
  });

  it("runs a 3-server cluster with JetStream: enough servers for the registry's and the streams' replicas", () => {
    const config = loadSidecarConfig();
    assert.equal(obj(natsConfig.jetstream, "config.jetstream").enabled, true);
    const cluster = obj(natsConfig.cluster, "config.cluster");
    assert.equal(cluster.enabled, true);
    const servers = Number(cluster.replicas);
    assert.ok(servers >= 3, `${servers} servers`);
    assert.equal(config.registry.replicas, 3, "registry.replicas: 3 on the cluster");
    assert.ok(config.registry.replicas <= servers, "the registry bucket's replicas fit on the servers");
    assert.ok(config.broker.streamReplicas <= servers, "the streams' replicas fit on the servers");
  });

  it("is dialled by the sidecar at the release's Service, on the chart's client port", () => {
    const config = loadSidecarConfig();
    const release = /helm install (\S+) nats\/nats\b/.exec(readme)?.[1];
    assert.ok(release, "the README's helm install names the release");
    // The chart's Service is named by its fullname: the release name when it contains "nats" (templates/_helpers.tpl).
    const service = isObj(values.service) && typeof values.service.name === "string" ? values.service.name
      : typeof values.fullnameOverride === "string" ? values.fullnameOverride
      : release.includes("nats") ? release : `${release}-nats`;
    const port = isObj(natsConfig.nats) && typeof natsConfig.nats.port === "number" ? natsConfig.nats.port : 4222;
    assert.ok(config.nats.servers.length > 0);
    for (const server of config.nats.servers) {
      const u = new URL(server);
      assert.equal(u.protocol, "nats:");
      assert.ok(u.hostname === service || u.hostname.startsWith(`${service}.`), `${server}: the Service ${service}`);
      assert.equal(Number(u.port), port, `${server}: the client port`);
    }
  });

  it("checks the user and password the sidecar logs in with: the same keys of the same Secret", () => {
    const merge = obj(natsConfig.merge, "config.merge");
    const users = list(obj(merge.authorization, "authorization").users, "authorization.users").map((u) => obj(u, "user"));
    const env = obj(obj(values.container, "container").env, "container.env");
    /** The Secret key behind a `<< $VAR >>` of the server's config, through the container's environment. */
    const serverKey = (v: unknown) => {
      const name = /^<<\s*\$([A-Za-z_][A-Za-z0-9_]*)\s*>>$/.exec(str(v, "a credential"))?.[1];
      assert.ok(name, `${String(v)}: expected << $VARIABLE >>, read from the environment`);
      return obj(obj(obj(env[name], `container.env.${name}`).valueFrom, "valueFrom").secretKeyRef, "secretKeyRef");
    };
    const sidecarKey = (name: string) => obj(obj(envOf(sidecar!).find((e) => e.name === name)?.valueFrom, `the sidecar's ${name}`).secretKeyRef, "secretKeyRef");
    const same = (a: Obj, b: Obj) => a.name === b.name && a.key === b.key;
    assert.ok(
      users.some((u) => same(serverKey(u.user), sidecarKey("SIDECAR_NATS_USER")) && same(serverKey(u.password), sidecarKey("SIDECAR_NATS_PASSWORD"))),
      "a NATS user whose user and password are the sidecar's",
    );
    assert.equal(sidecarKey("SIDECAR_NATS_USER").name, nameOf(secret));
  });
});
