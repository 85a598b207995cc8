/**
 * The client side of the CLI (`sidecar call | publish | services`): talks to a running sidecar's
 * API over HTTP, prints what it answered, and exits non-zero with the sidecar's error code.
 */
export const DEFAULT_URL = "http://127.0.0.1:8081";

export interface ClientOptions {
  url: string;
  timeout?: string | undefined;
  contentType?: string | undefined;
}

class CommandError extends Error {}

async function request(url: string, init: RequestInit): Promise<{ status: number; text: string }> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (err) {
    throw new CommandError(`cannot reach the sidecar at ${new URL(url).origin}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message} (is it running? set --url or SIDECAR_URL)`);
  }
  return { status: res.status, text: await res.text() };
}

/** The sidecar's JSON error as "CODE: message", or the raw answer. */
function failure(status: number, text: string): CommandError {
  try {
    const e = (JSON.parse(text) as { error?: { code: string; message: string } }).error;
    if (e) return new CommandError(`${e.code} (${status}): ${e.message}`);
  } catch {
    /* not the sidecar's error body: the callee's own answer */
  }
  return new CommandError(`the call answered ${status}${text ? `: ${text}` : ""}`);
}

async function call(o: ClientOptions, args: string[]): Promise<string> {
  const [service, endpoint, json] = args;
  if (!service || !endpoint) throw new CommandError("usage: sidecar call <service> <endpoint> [json]");
  let request_: unknown = {};
  if (json !== undefined) {
    try {
      request_ = JSON.parse(json);
    } catch (err) {
      throw new CommandError(`the request is not valid JSON: ${(err as Error).message}`);
    }
  }
  const body: Record<string, unknown> = { service, endpoint, request: request_ };
  if (o.timeout !== undefined) body.timeout = Number(o.timeout);
  const r = await request(`${o.url}/rpc`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (r.status < 200 || r.status >= 300) throw failure(r.status, r.text);
  return r.text;
}

async function publish(o: ClientOptions, args: string[]): Promise<string> {
  const [topic, data] = args;
  if (!topic) throw new CommandError("usage: sidecar publish <topic> [data]");
  const payload = data ?? "";
  let type = o.contentType;
  if (!type) {
    try {
      JSON.parse(payload);
      type = "application/json";
    } catch {
      type = "text/plain; charset=utf-8";
    }
  }
  const r = await request(`${o.url}/publish/${encodeURIComponent(topic)}`, { method: "POST", headers: { "content-type": type }, body: payload });
  if (r.status !== 202) throw failure(r.status, r.text);
  return r.text;
}

async function services(o: ClientOptions): Promise<string> {
  const r = await request(`${o.url}/registry`, { method: "GET" });
  if (r.status !== 200) throw failure(r.status, r.text);
  const { services: list } = JSON.parse(r.text) as { services: { service: string; nodes: { id: string; address: string; version: string }[] }[] };
  if (list.length === 0) return "no services registered";
  const rows = [["SERVICE", "NODE", "VERSION", "ADDRESS"], ...list.flatMap((s) => s.nodes.map((n) => [s.service, n.id, n.version, n.address]))];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}

export const CLIENT_COMMANDS: Record<string, (o: ClientOptions, args: string[]) => Promise<string>> = { call, publish, services };

/** Run one client command; prints the result (stdout) or the problem (stderr); the exit code. */
export async function runClientCommand(name: string, o: ClientOptions, args: string[]): Promise<number> {
  try {
    const out = await CLIENT_COMMANDS[name]!(o, args);
    process.stdout.write(out.endsWith("\n") ? out : `${out}\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    process.stderr.write(`sidecar ${name}: ${err.message}\n`);
    return 1;
  }
}
