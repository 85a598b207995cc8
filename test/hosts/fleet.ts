import path from "node:path";
import type { Hosts } from "./hosts.js";
import { readLoad, until } from "./load-output.js";
import { HostProcess } from "./process.js";
import { ROOT } from "../support/sidecar.js";

const CLI = path.join(ROOT, "dist", "cli.js");

/**
 * The hosts tests' nodes: on each host an echo app (test/hosts/echo-app.mjs, port 5000) and its
 * sidecar, started one after the other and waited for (app listening, sidecar registered).
 * `sets(host)` are the sidecar's --set flags beyond service name and app; `config(host)` a file.
 */
export async function startNodes(
  hosts: Hosts,
  procs: HostProcess[],
  o: { hosts: readonly string[]; tmp: string; sets: (host: string) => string[]; config?: (host: string) => string | undefined },
): Promise<void> {
  const env = { PATH: process.env.PATH, HOME: o.tmp };
  for (const host of o.hosts) {
    const app = HostProcess.start(hosts, host, `${host}-app`, process.execPath, [path.join(ROOT, "test/hosts/echo-app.mjs")], { env: { ...env, HOST_NAME: host, APP_PORT: "5000" } });
    procs.push(app);
    await app.line(/listening/);
    const sets = [`service.name=${host === "caller" ? "caller" : "echo"}`, "app.port=5000", "app.health.path=/health", "app.health.interval=500ms", `inbound.advertise=${host}:8082`, "log.format=json", ...o.sets(host)];
    const config = o.config?.(host);
    const sidecar = HostProcess.start(hosts, host, `${host}-sidecar`, process.execPath, [CLI, "start", ...(config ? ["--config", config] : []), ...sets.flatMap((s) => ["--set", s])], { env, cwd: o.tmp });
    procs.push(sidecar);
    await sidecar.line(/"registered"/, 30_000);
  }
}

/** Start test/hosts/load.mjs on host `caller` with `env`, and wait until both echo nodes have answered. */
export async function startLoad(hosts: Hosts, procs: HostProcess[], name: string, env: Record<string, string>): Promise<HostProcess> {
  const load = HostProcess.start(hosts, "caller", name, process.execPath, [path.join(ROOT, "test/hosts/load.mjs")], { env: { PATH: process.env.PATH, ...env } });
  procs.push(load);
  await until("both nodes to answer", 15_000, () => {
    const { calls } = readLoad(load);
    return calls.some((c) => c.host === "echo1") && calls.some((c) => c.host === "echo2") ? true : undefined;
  }, load);
  return load;
}

/** Delivery counts of a durable subscription: every message stored (202, stored) delivered to one of `apps`, and how many twice. */
export async function deliveries(apps: HostProcess[], stored: ReadonlySet<number>, waitMs = 20_000): Promise<{ lost: number; duplicates: number }> {
  const delivered = () => apps.flatMap((a) => a.matching(/^delivered \d+ /).map((l) => Number(l.split(" ")[1])));
  const end = Date.now() + waitMs;
  while (Date.now() < end && ![...stored].every((n) => delivered().includes(n))) await Promise.race(apps.map((a) => a.line(/^delivered /, Math.max(1, end - Date.now()), a.lines.length).catch(() => undefined)));
  const got = delivered();
  const unique = new Set(got);
  return { lost: [...stored].filter((n) => !unique.has(n)).length, duplicates: got.length - unique.size };
}
