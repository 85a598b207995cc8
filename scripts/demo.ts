/**
 * `npm run demo`: the docker-compose topology as local processes. NATS (if nats-server is
 * installed, else the embedded local mode), the Python greeter and the Java caller, each beside
 * its sidecar. Shows the calls and the deliveries; Ctrl-C stops everything cleanly.
 * DEMO_ROUNDS=N stops by itself after the caller's N rounds.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { NatsServer } from "../test/support/nats.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const ROUNDS = Number(process.env.DEMO_ROUNDS ?? 0);
const children: ChildProcess[] = [];

function say(line: string): void {
  process.stdout.write(`\x1b[1m[demo]\x1b[0m ${line}\n`);
}

function has(cmd: string, args = ["--version"]): boolean {
  return spawnSync(cmd, args, { stdio: "ignore" }).status === 0;
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** Start a process whose output lines are shown with a prefix; resolves when `ready` appears (if given). */
function start(name: string, cmd: string, args: string[], o: { env?: NodeJS.ProcessEnv; cwd?: string; ready?: RegExp; show?: (line: string) => boolean }): Promise<ChildProcess> {
  const proc = spawn(cmd, args, { cwd: o.cwd ?? ROOT, env: { ...process.env, ...o.env }, stdio: ["ignore", "pipe", "pipe"] });
  children.push(proc);
  return new Promise((resolve, reject) => {
    let buf = "";
    const onData = (c: Buffer) => {
      buf += c.toString();
      for (let nl; (nl = buf.indexOf("\n")) !== -1; buf = buf.slice(nl + 1)) {
        const line = buf.slice(0, nl);
        if (!o.show || o.show(line)) process.stdout.write(`\x1b[36m[${name}]\x1b[0m ${line}\n`);
        if (o.ready?.test(line)) resolve(proc);
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    proc.once("exit", (code) => reject(new Error(`${name} exited with ${code}`)));
    if (!o.ready) resolve(proc);
  });
}

async function main(): Promise<void> {
  for (const [cmd, what] of [["python3", "the Python greeter"], ["javac", "the Java caller (a JDK 11+)"]] as const) {
    if (!has(cmd)) throw new Error(`${cmd} is needed for ${what}`);
  }
  if (!has("node", [path.join(ROOT, "dist/cli.js"), "--version"])) throw new Error("the sidecar is not built: run npm ci first");
  const tmp = mkdtempSync(path.join(os.tmpdir(), "sidecar-demo-"));
  let nats: NatsServer | undefined;
  const stop = async (code: number) => {
    say("stopping: SIGTERM to every process (sidecars deregister and drain first)");
    for (const c of [...children].reverse()) c.kill("SIGTERM");
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once("exit", r)) : undefined)));
    await nats?.stop();
    rmSync(tmp, { recursive: true, force: true });
    say("stopped");
    process.exit(code);
  };
  process.once("SIGINT", () => void stop(0));
  process.once("SIGTERM", () => void stop(0));

  try {
    let backbone: string[];
    if (has("nats-server")) {
      nats = await NatsServer.start();
      say(`NATS with JetStream on ${nats.url} (durable orders, KV registry)`);
      backbone = [`nats.servers=${nats.url}`];
    } else {
      say("nats-server is not installed: the embedded local mode (one machine, at-most-once deliveries)");
      backbone = ["registry.kind=local", "broker.kind=local", `registry.dir=${path.join(tmp, "registry")}`];
    }
    say("building the Java caller (javac)");
    const build = spawnSync("bash", ["examples/java-caller/build.sh"], { cwd: ROOT, encoding: "utf8" });
    if (build.status !== 0) throw new Error(`the Java caller did not build:\n${build.stderr}`);

    const sidecarShow = (line: string) => /registered|subscribed|embedded mode|ERROR|error/i.test(line);
    const sidecarArgs = (file: string, extra: string[]) => ["dist/cli.js", "start", "--config", file, ...[...backbone, "inbound.host=127.0.0.1", "inbound.port=0", "log.format=pretty", ...extra].flatMap((s) => ["--set", s])];

    // One mesh token for both sidecars, as in docker-compose.yml: it vouches for x-sidecar-caller.
    const mesh = { SIDECAR_MESH_TOKEN: process.env.SIDECAR_MESH_TOKEN ?? randomBytes(18).toString("base64url") };
    const greeterPort = await freePort();
    await start("greeter", "python3", ["examples/python-greeter/greeter.py"], { env: { APP_PORT: String(greeterPort) }, ready: /listening/ });
    await start("greeter-sidecar", "node", sidecarArgs("examples/python-greeter/sidecar.yaml", [`app.port=${greeterPort}`, "api.port=0"]), { env: mesh, ready: /registered/, show: sidecarShow });

    const callerPort = await freePort();
    const callerApi = await freePort();
    await start("caller-sidecar", "node", sidecarArgs("examples/java-caller/sidecar.yaml", [`app.port=${callerPort}`, `api.port=${callerApi}`]), { env: mesh, ready: /listening/, show: sidecarShow });
    say(`the caller's sidecar API: http://127.0.0.1:${callerApi}  (try: npx sidecar services --url http://127.0.0.1:${callerApi})`);
    const caller = await start("caller", "java", ["-cp", "build", "Caller"], {
      cwd: path.join(ROOT, "examples/java-caller"),
      env: { APP_PORT: String(callerPort), SIDECAR_URL: `http://127.0.0.1:${callerApi}`, CALLER_INTERVAL_MS: "1500", CALLER_ROUNDS: String(ROUNDS) },
    });
    say(ROUNDS > 0 ? `running ${ROUNDS} rounds` : "running: Ctrl-C to stop");
    if (ROUNDS > 0) {
      await new Promise((r) => caller.once("exit", r));
      await new Promise((r) => setTimeout(r, 1_000)); // the last order's delivery
      await stop(0);
    }
  } catch (err) {
    process.stderr.write(`demo failed: ${(err as Error).message}\n`);
    await stop(1);
  }
}

void main();
