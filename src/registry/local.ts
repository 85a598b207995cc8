import { watch as fsWatch, type FSWatcher } from "node:fs";
import { mkdir, readdir, readFile, rename, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "../log.js";
import { parseNodeRecord, type NodeRecord, type Registry, type RegistryEvent, type RegistryStatus, type RegistryWatch, type WatchScope } from "./types.js";
import { closedError } from "../lifecycle/component.js";

export interface LocalRegistryOptions {
  /** Shared directory, one JSON file per node. */
  dir: string;
  /** A file not refreshed within the TTL is dead. */
  ttl: number;
}

/** Files this much older than the TTL are deleted by any watcher: their sidecar died without deregistering. */
const GC_AFTER_TTLS = 3;

/**
 * The embedded registry for one machine: `<dir>/<service>.<nodeId>.json`, written
 * atomically (temp file + rename), refreshed by heartbeats, aged out by mtime. Watchers learn of
 * changes through fs.watch plus a periodic rescan (which also catches expiry).
 * Not for more than one machine: the directory is the whole registry.
 */
export class LocalRegistry implements Registry {
  readonly kind = "local";
  #files = new Map<string, string>();
  #watches = new Set<RegistryWatch>();
  #closed = false;

  private constructor(private readonly options: LocalRegistryOptions, private readonly log: Logger) {}

  static async open(options: LocalRegistryOptions, log: Logger): Promise<LocalRegistry> {
    await mkdir(options.dir, { recursive: true });
    return new LocalRegistry(options, log);
  }

  async register(node: NodeRecord): Promise<void> {
    if (this.#closed) throw closedError("local registry");
    const file = path.join(this.options.dir, `${node.service}.${node.id}.json`);
    this.#files.set(node.id, file);
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(node));
    await rename(tmp, file);
  }

  async deregister(nodeId: string): Promise<void> {
    if (this.#closed) throw closedError("local registry");
    const file = this.#files.get(nodeId);
    if (!file) return;
    this.#files.delete(nodeId);
    await unlink(file).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
  }

  /** Every live record (of `service`, when given) with the mtime it was last refreshed at. */
  async #scan(service?: string): Promise<Map<string, { node: NodeRecord; mtime: number }>> {
    const out = new Map<string, { node: NodeRecord; mtime: number }>();
    const now = Date.now();
    let names: string[];
    try {
      names = await readdir(this.options.dir);
    } catch (err) {
      this.log.warn("cannot read the local registry directory", { dir: this.options.dir, error: (err as Error).message });
      return out;
    }
    await Promise.all(
      names
        // `shop.` also prefixes shop.cart's files: the record's own service decides (below).
        .filter((n) => n.endsWith(".json") && (service === undefined || n.startsWith(`${service}.`)))
        .map(async (name) => {
          const file = path.join(this.options.dir, name);
          try {
            const st = await stat(file);
            const age = now - st.mtimeMs;
            if (age > this.options.ttl * GC_AFTER_TTLS) {
              await unlink(file).catch(() => undefined);
              return;
            }
            if (age > this.options.ttl) return;
            const node = parseNodeRecord(JSON.parse(await readFile(file, "utf8")));
            if (node && (service === undefined || node.service === service)) out.set(`${node.service}.${node.id}`, { node, mtime: st.mtimeMs });
          } catch {
            // Vanished between readdir and read (deregistered), or half-read: the next scan settles it.
          }
        }),
    );
    return out;
  }

  async list(service?: string): Promise<NodeRecord[]> {
    return [...(await this.#scan(service)).values()].map((e) => e.node);
  }

  async watch(onEvent: (event: RegistryEvent) => void, scope?: WatchScope): Promise<RegistryWatch> {
    if (this.#closed) throw closedError("local registry");
    let known = new Map<string, number>();
    let stopped = false;
    let scanning = false;
    let again = false;
    const rescan = async (): Promise<void> => {
      if (scanning) {
        again = true;
        return;
      }
      scanning = true;
      do {
        again = false;
        const now = await this.#scan(scope?.service);
        if (stopped) break;
        for (const [key, { node, mtime }] of now) {
          if (known.get(key) !== mtime) onEvent({ type: "put", node, seenAt: mtime });
        }
        for (const key of known.keys()) {
          if (!now.has(key)) {
            const dot = key.lastIndexOf(".");
            onEvent({ type: "delete", service: key.slice(0, dot), id: key.slice(dot + 1) });
          }
        }
        known = new Map([...now].map(([k, v]) => [k, v.mtime]));
      } while (again && !stopped);
      scanning = false;
    };
    await rescan();
    let watcher: FSWatcher | undefined;
    try {
      watcher = fsWatch(this.options.dir, () => void rescan());
      watcher.on("error", () => undefined);
    } catch (err) {
      this.log.warn("fs.watch unavailable on the registry directory; relying on periodic scans", { error: (err as Error).message });
    }
    const period = Math.max(50, Math.min(1_000, Math.floor(this.options.ttl / 6)));
    const timer = setInterval(() => void rescan(), period);
    timer.unref();
    const w: RegistryWatch = {
      stop: () => {
        stopped = true;
        clearInterval(timer);
        watcher?.close();
        this.#watches.delete(w);
      },
    };
    this.#watches.add(w);
    return w;
  }

  status(): RegistryStatus {
    return this.#closed ? "closed" : "connected";
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const w of [...this.#watches]) w.stop();
  }
}
