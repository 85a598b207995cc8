/**
 * Other proxies as a pair of hops, the same topology as two sidecars (client → hop1 → hop2 →
 * app): nginx, HAProxy and Caddy from Debian's packages. Each hop is one process with one worker
 * (its pid is what the benchmark reads CPU and memory from), listens on 127.0.0.1 on a free
 * port, and keeps its upstream connections alive. Configs, logs, pid files and temp paths go to
 * a directory of the caller's; nothing is written elsewhere.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort, requireDebian, track } from "./lib.js";

export type PeerKind = "nginx" | "haproxy" | "caddy";

export interface PeerPair {
  name: string;
  /** hop1's address: `http://127.0.0.1:<port>` (add the path). */
  url: string;
  /** hop1's and hop2's process ids, in that order. */
  pids: number[];
  procs: ChildProcess[];
}

const PACKAGE: Record<PeerKind, string> = { nginx: "nginx", haproxy: "haproxy", caddy: "caddy" };
const NAME: Record<PeerKind, string> = { nginx: "nginx → nginx", haproxy: "HAProxy → HAProxy", caddy: "Caddy → Caddy" };

/** Installed when missing (as root); the binaries' paths. */
export function requirePeers(): Record<PeerKind, string> {
  return { nginx: requireDebian("nginx", PACKAGE.nginx), haproxy: requireDebian("haproxy", PACKAGE.haproxy), caddy: requireDebian("caddy", PACKAGE.caddy) };
}

/** The peers' versions as they report them, e.g. "nginx 1.22.1, HAProxy 2.6.12-1+deb12u4, Caddy 2.6.2". */
export function peerVersions(): string {
  const bin = requirePeers();
  // nginx -v prints its version on stderr, the others on stdout: read both.
  // Even `caddy version` makes $HOME/.step: give it a home of its own.
  const home = mkdtempSync(path.join(os.tmpdir(), "sidecar-bench-caddy-"));
  const say = (file: string, args: string[]) => {
    const r = spawnSync(file, args, { encoding: "utf8", timeout: 10_000, env: caddyEnv(home) });
    return `${r.stdout ?? ""}${r.stderr ?? ""}`;
  };
  try {
    const nginx = /nginx\/(\S+)/.exec(say(bin.nginx, ["-v"]))?.[1] ?? "?";
    const haproxy = /HAProxy version (\S+)/.exec(say(bin.haproxy, ["-v"]))?.[1] ?? "?";
    const caddy = /v?(\d+\.\d+\.\d+\S*)/.exec(say(bin.caddy, ["version"]))?.[1] ?? "?";
    return `nginx ${nginx}, HAProxy ${haproxy}, Caddy ${caddy}`;
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

/** Caddy's environment with its home and XDG directories in `dir`: it writes $HOME/.step, its config autosave and its data there. */
function caddyEnv(dir: string): NodeJS.ProcessEnv {
  return { ...process.env, HOME: dir, XDG_CONFIG_HOME: path.join(dir, "config"), XDG_DATA_HOME: path.join(dir, "data") };
}

/** One hop's config: listen on 127.0.0.1:`listen`, forward everything to 127.0.0.1:`upstream`. */
function config(kind: PeerKind, dir: string, listen: number, upstream: number): { file: string; text: string } {
  if (kind === "nginx") {
    const tmp = (name: string) => path.join(dir, name);
    return {
      file: path.join(dir, "nginx.conf"),
      text: `# One process (nginx runs with -g 'daemon off; master_process off;'): no master, the process is the worker.
worker_processes 1;
pid ${tmp("nginx.pid")};
error_log ${tmp("error.log")} warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${tmp("client_body")};
  proxy_temp_path ${tmp("proxy")};
  fastcgi_temp_path ${tmp("fastcgi")};
  uwsgi_temp_path ${tmp("uwsgi")};
  scgi_temp_path ${tmp("scgi")};
  # The default (1000) closes a client connection after 1000 requests; wrk would reconnect, the others never do.
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  upstream next {
    server 127.0.0.1:${upstream};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${listen};
    location / {
      proxy_pass http://next;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
    };
  }
  if (kind === "haproxy") {
    return {
      file: path.join(dir, "haproxy.cfg"),
      text: `global
  nbthread 1
  maxconn 4096

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 65s
  timeout server 65s
  timeout http-keep-alive 65s

frontend in
  bind 127.0.0.1:${listen}
  default_backend next

backend next
  server app 127.0.0.1:${upstream}
`,
    };
  }
  return {
    file: path.join(dir, "Caddyfile"),
    text: `{
\tadmin off
\tauto_https off
}

http://:${listen} {
\tbind 127.0.0.1
\treverse_proxy 127.0.0.1:${upstream} {
\t\ttransport http {
\t\t\tkeepalive 65s
\t\t\tkeepalive_idle_conns 64
\t\t\tkeepalive_idle_conns_per_host 64
\t\t}
\t}
}
`,
  };
}

/** Start one hop in `dir`; its output goes to `dir`/output.log. */
function startHop(kind: PeerKind, bin: string, dir: string, listen: number, upstream: number): ChildProcess {
  mkdirSync(dir, { recursive: true });
  const { file, text } = config(kind, dir, listen, upstream);
  writeFileSync(file, text);
  const args =
    kind === "nginx"
      ? ["-p", dir, "-c", file, "-e", path.join(dir, "error.log"), "-g", "daemon off; master_process off;"]
      : kind === "haproxy"
        ? ["-db", "-f", file]
        : ["run", "--config", file, "--adapter", "caddyfile"];
  // Caddy: one OS thread running Go code at a time, and its home here.
  const env = kind === "caddy" ? { ...caddyEnv(dir), GOMAXPROCS: "1" } : process.env;
  const out = openSync(path.join(dir, "output.log"), "a");
  try {
    return track(spawn(bin, args, { stdio: ["ignore", out, out], env, cwd: dir }));
  } finally {
    closeSync(out);
  }
}

/** GET `url` until it answers 200, within `timeoutMs`; else an error with the hop's output. */
async function waitFor(url: string, proc: ChildProcess, dir: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) break;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
      last = `status ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  let log = "";
  try {
    log = readFileSync(path.join(dir, "output.log"), "utf8").slice(-2000);
    log += readFileSync(path.join(dir, "error.log"), "utf8").slice(-2000);
  } catch {
    // no such log
  }
  throw new Error(`${url} did not answer 200 (${proc.exitCode !== null ? `exited with ${proc.exitCode}` : last}):\n${log}`);
}

/**
 * hop2 (to the app on `appPort`), then hop1 (to hop2), each waited for until a GET through it
 * answers 200 (the app's /health). The processes are tracked: stop them with stopAll(pair.procs).
 */
export async function startPeerPair(kind: PeerKind, appPort: number, dir: string): Promise<PeerPair> {
  const bin = requirePeers()[kind];
  const [port1, port2] = [await freePort(), await freePort()];
  const procs: ChildProcess[] = [];
  const hop2 = startHop(kind, bin, path.join(dir, `${kind}-hop2`), port2, appPort);
  procs.push(hop2);
  try {
    await waitFor(`http://127.0.0.1:${port2}/health`, hop2, path.join(dir, `${kind}-hop2`));
    const hop1 = startHop(kind, bin, path.join(dir, `${kind}-hop1`), port1, port2);
    procs.push(hop1);
    await waitFor(`http://127.0.0.1:${port1}/health`, hop1, path.join(dir, `${kind}-hop1`));
    return { name: NAME[kind], url: `http://127.0.0.1:${port1}`, pids: [hop1.pid!, hop2.pid!], procs: [hop1, hop2] };
  } catch (err) {
    for (const p of procs) p.kill("SIGKILL");
    throw err;
  }
}
