import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { freePort } from "../support/ports.js";
import { rpc, SidecarProcess, waitFor } from "../support/sidecar.js";

/**
 * The app `sidecar run` starts in these tests: it prints what it was given, serves /health and
 * echoes anything else; GET /quit answers, then exits 3. On SIGTERM it says so and dies of it
 * (`stubborn`: says so and keeps running). It does not outlive the CLI if a test fails.
 */
const APP = `
import http from "node:http";
const mode = process.argv[2] ?? "serve";
console.log(\`env SIDECAR_URL=\${process.env.SIDECAR_URL ?? ""} PORT=\${process.env.PORT ?? ""} pid=\${process.pid}\`);
console.error("app stderr line");
const server = http.createServer((req, res) => {
  if (req.url === "/health") return void res.end("ok");
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ app: "cli-run", path: req.url, body }), () => {
      if (req.url === "/quit") process.exit(3);
    });
  });
});
server.listen(Number(process.env.PORT), "127.0.0.1", () => console.log("app listening"));
process.on("SIGTERM", () => {
  console.log("app got SIGTERM");
  if (mode === "stubborn") return;
  process.removeAllListeners("SIGTERM");
  process.kill(process.pid, "SIGTERM");
});
const parent = process.ppid;
setInterval(() => { if (process.ppid !== parent) process.exit(1); }, 200).unref();
`;

const WAIT = 15_000;

/** `sidecar run` as users run it: `node dist/cli.js run ...`. Its stdout lines, as printed. */
function lines(p: SidecarProcess): string[] {
  return p.lines.map((l) => String(l.message));
}

/** The sidecar's own (JSON) log lines, without their `[sidecar] ` prefix. */
function sidecarLog(p: SidecarProcess): Record<string, unknown>[] {
  return lines(p)
    .filter((l) => l.startsWith("[sidecar] {"))
    .map((l) => JSON.parse(l.slice("[sidecar] ".length)) as Record<string, unknown>);
}

function waitForLine(p: SidecarProcess, re: RegExp, what: string): Promise<string> {
  return waitFor(() => {
    const found = lines(p).find((l) => re.test(l));
    if (!found && p.proc.exitCode !== null) throw new Error(`the CLI exited with ${p.proc.exitCode} before printing ${what}:\n${lines(p).join("\n")}\nstderr: ${p.stderr}`);
    return found;
  }, what, WAIT);
}

const logIndex = (p: SidecarProcess, message: string) => lines(p).findIndex((l) => l.startsWith("[sidecar] {") && (JSON.parse(l.slice(10)) as { message: string }).message === message);

/** Resolves once no process has this pid (the app was killed and reaped). */
const gone = (pid: number) =>
  waitFor(() => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }, `process ${pid} to be gone`, WAIT);

describe("sidecar run -- <command>", () => {
  let dir: string;
  let app: string;
  const procs: SidecarProcess[] = [];
  /** Each app's pid, with the CLI that started it. */
  const appPids: { cli: SidecarProcess; pid: number }[] = [];

  const settings = (extra: string[] = []) =>
    ["app.health.path=/health", "app.health.interval=100ms", "app.health.timeout=500ms", "api.port=0", "inbound.port=0", `registry.dir=${path.join(dir, "registry")}`, "registry.ttl=1500ms", "shutdownTimeout=2s", "log.format=json", ...extra].flatMap((s) => ["--set", s]);

  /** Start `sidecar run --name <name> --app-port <free port> [settings] -- node app.mjs <mode>`. */
  const start = async (name: string, mode = "serve", extra: string[] = []) => {
    const port = await freePort();
    const p = SidecarProcess.spawn(["run", "--name", name, "--app-port", String(port), ...settings(extra), "--", process.execPath, app, mode]);
    procs.push(p);
    return { p, port };
  };

  /** The app's env line, once printed: what it was given, and its pid (for the teardown). */
  const appEnv = async (p: SidecarProcess, name: string) => {
    const line = await waitForLine(p, new RegExp(`^\\[${name}\\] env `), "the app's env line");
    const m = /SIDECAR_URL=(\S*) PORT=(\S*) pid=(\d+)$/.exec(line)!;
    appPids.push({ cli: p, pid: Number(m[3]) });
    return { url: m[1]!, port: m[2]!, pid: Number(m[3]) };
  };

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "sidecar-run-"));
    app = path.join(dir, "app.mjs");
    writeFileSync(app, APP);
  });

  after(() => {
    // A CLI still running here is from a failed test: kill it, and its app (in its own process group).
    const running = procs.filter((p) => p.proc.exitCode === null && p.proc.signalCode === null);
    for (const { cli, pid } of appPids) {
      if (!running.includes(cli)) continue;
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
    for (const p of running) p.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  describe("an app that serves, then SIGTERM", () => {
    let p: SidecarProcess;
    let port: number;
    let env: { url: string; port: string; pid: number };

    it("starts the app with SIDECAR_URL and PORT, prefixes both outputs, says it is in embedded mode, and a call through the sidecar reaches the app", async () => {
      ({ p, port } = await start("greeter"));
      env = await appEnv(p, "greeter");
      const api = await waitFor(() => sidecarLog(p).find((l) => l.message === "api listening"), "the api listening line", WAIT);
      assert.equal(env.url, `http://${String(api.api)}`, "SIDECAR_URL is the sidecar's api");
      assert.equal(env.port, String(port), "PORT is --app-port");
      await waitFor(() => sidecarLog(p).find((l) => l.message === "registered"), "the app registered", WAIT);
      await waitFor(async () => ((await (await fetch(`${env.url}/registry/greeter`)).json()) as { nodes?: unknown[] }).nodes?.length === 1, "the node in the sidecar's view", WAIT);

      const r = await rpc(env.url, { service: "greeter", endpoint: "/hello", request: { name: "Ada" } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.app, "cli-run");
      assert.equal(r.body.path, "/hello");
      const proxied = await fetch(`${env.url}/proxy/greeter/via/proxy?x=1`);
      assert.equal(proxied.status, 200);
      assert.equal(((await proxied.json()) as { path: string }).path, "/via/proxy?x=1");

      const embedded = sidecarLog(p).filter((l) => String(l.message).startsWith("embedded mode"));
      assert.equal(embedded.length, 1, "one embedded-mode line");
      assert.match(String(embedded[0]!.message), /this machine only/);
      assert.ok(lines(p).includes("[greeter] app listening"), "the app's stdout, prefixed");
      assert.match(p.stderr, /^\[greeter\] app stderr line$/m, "the app's stderr stays on stderr, prefixed");
      for (const l of lines(p)) assert.match(l, /^\[(sidecar|greeter)\] /, "every stdout line is prefixed");
    });

    it("SIGTERM: the sidecar deregisters and stops first, then the app gets the signal; the CLI exits with the app's status (128 + 15)", async () => {
      p.kill("SIGTERM");
      const code = await Promise.race([p.exit(), new Promise((_, reject) => setTimeout(() => reject(new Error("the CLI did not exit")), WAIT))]);
      const deregistered = logIndex(p, "deregistered");
      const stopped = logIndex(p, "stopped");
      const appGot = lines(p).indexOf("[greeter] app got SIGTERM");
      assert.ok(deregistered >= 0 && stopped > deregistered, lines(p).join("\n"));
      assert.ok(appGot > stopped, `the app got SIGTERM after the sidecar stopped:\n${lines(p).join("\n")}`);
      assert.equal(code, 143, p.stderr);
      await gone(env.pid);
    });
  });

  it("the app exiting by itself (exit 3) stops the sidecar, and the CLI exits 3", async () => {
    const { p } = await start("quitter");
    const env = await appEnv(p, "quitter");
    await waitFor(() => sidecarLog(p).find((l) => l.message === "registered"), "the app registered", WAIT);
    // Registered is the write; the sidecar's own view sees the record a moment later (the local registry's watch).
    await waitFor(async () => ((await (await fetch(`${env.url}/registry/quitter`)).json()) as { nodes?: unknown[] }).nodes?.length === 1, "the node in the sidecar's view", WAIT);
    const r = await fetch(`${env.url}/proxy/quitter/quit`);
    assert.equal(r.status, 200, await r.text());
    const code = await Promise.race([p.exit(), new Promise((_, reject) => setTimeout(() => reject(new Error("the CLI did not exit")), WAIT))]);
    assert.equal(code, 3, p.stderr);
    const exited = sidecarLog(p).find((l) => l.message === "the app exited: stopping the sidecar");
    assert.equal(exited?.code, 3);
    assert.ok(logIndex(p, "deregistered") > logIndex(p, "the app exited: stopping the sidecar"), lines(p).join("\n"));
    assert.ok(logIndex(p, "stopped") > 0, "the sidecar stopped");
  });

  it("SIGINT twice at once (npx forwards the terminal's Ctrl-C, which the sidecar also got) is one Ctrl-C: the sidecar still stops first", async () => {
    const { p } = await start("twice");
    await appEnv(p, "twice");
    await waitFor(() => sidecarLog(p).find((l) => l.message === "registered"), "the app registered", WAIT);
    p.kill("SIGINT");
    p.kill("SIGINT");
    const code = await Promise.race([p.exit(), new Promise((_, reject) => setTimeout(() => reject(new Error("the CLI did not exit")), WAIT))]);
    assert.ok(!sidecarLog(p).some((l) => String(l.message).startsWith("second SIGINT")), lines(p).join("\n"));
    assert.ok(logIndex(p, "deregistered") >= 0 && logIndex(p, "stopped") > logIndex(p, "deregistered"), lines(p).join("\n"));
    assert.equal(code, 130, p.stderr);
  });

  it("a second signal kills the app at once", async () => {
    const { p } = await start("stubborn", "stubborn");
    const env = await appEnv(p, "stubborn");
    await waitForLine(p, /^\[stubborn\] app listening$/, "the app listening");
    p.kill("SIGTERM");
    await waitForLine(p, /^\[stubborn\] app got SIGTERM$/, "the app getting SIGTERM");
    p.kill("SIGTERM");
    const code = await Promise.race([p.exit(), new Promise((_, reject) => setTimeout(() => reject(new Error("the CLI did not exit")), WAIT))]);
    assert.equal(code, 143, p.stderr);
    assert.ok(sidecarLog(p).some((l) => String(l.message).startsWith("second SIGTERM: killing the app now")), lines(p).join("\n"));
    await gone(env.pid);
  });

  it("a command that cannot be started: a clear error, exit 127", async () => {
    const port = await freePort();
    const p = SidecarProcess.spawn(["run", "--name", "ghost", "--app-port", String(port), ...settings(), "--", "sidecar-test-no-such-command", "--flag"]);
    procs.push(p);
    assert.equal(await p.exit(), 127, p.stderr);
    assert.match(p.stderr, /^sidecar run: cannot start 'sidecar-test-no-such-command': command not found \(ENOENT\)$/m);
    assert.ok(logIndex(p, "stopped") > 0, "the sidecar stopped");
  });

  it("a sidecar that cannot start (its api port taken) exits 1 and starts no app", async () => {
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", () => r()));
    try {
      const { p } = await start("blocked", "serve", [`api.port=${(busy.address() as net.AddressInfo).port}`]);
      assert.equal(await p.exit(), 1, p.stderr);
      assert.match(String(sidecarLog(p).find((l) => l.message === "cannot start")?.error), /EADDRINUSE/);
      assert.ok(!lines(p).some((l) => l.startsWith("[blocked] ")), "no app output: the app was not started");
    } finally {
      await new Promise((r) => busy.close(r));
    }
  });

  it("usage errors exit 2: no command after --, a command without --, run's options on another command", async () => {
    for (const [args, message] of [
      [["run", "--name", "x", "--app-port", "5000"], /sidecar run: expected the app's command after '--'/],
      [["run", "--name", "x", "--app-port", "5000", "--"], /sidecar run: expected the app's command after '--'/],
      [["run", "--name", "x", "node", "app.js"], /sidecar run: expected the app's command after '--', got 'node' before it/],
      [["run", "--app-port", "web", "--", "node"], /sidecar run: --app-port: expected a port number, got 'web'/],
      [["start", "--name", "x"], /sidecar start: --name is an option of 'sidecar run'/],
    ] as const) {
      const p = SidecarProcess.spawn([...args]);
      procs.push(p);
      assert.equal(await p.exit(), 2, `${args.join(" ")}: ${p.stderr}`);
      assert.match(p.stderr, message);
      assert.match(p.stderr, /Usage: sidecar start/);
    }
  });
});
