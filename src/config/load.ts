import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import YAML from "yaml";
import type { z } from "zod";
import { show } from "../names.js";
import { envPath, keyTree, nodeAt, type KeyNode } from "./keys.js";
import { readTls } from "../tls/files.js";
import { isValidSubject } from "../subjects.js";
import { REDIS_NO_WILDCARDS } from "../broker/redis/topics.js";
import { ConfigError, deepFreeze } from "./error.js";
import { configSchema, DEFAULTS, type Config, type ParsedConfig } from "./schema.js";

export { ConfigError } from "./error.js";

export interface LoadOptions {
  /** Path of the YAML file; when absent: $SIDECAR_CONFIG, then ./sidecar.yaml if it exists, else none. */
  file?: string | undefined;
  /** `key.path=value` overrides, as given to `--set`. */
  set?: readonly string[];
  /** Environment to read SIDECAR_* overrides from. Default: process.env. */
  env?: NodeJS.ProcessEnv;
  /** Directory relative paths are resolved against. Default: process.cwd(). */
  cwd?: string;
}

export interface LoadedConfig {
  config: Config;
  /** The file the config came from, if any. */
  file: string | undefined;
}

const TREE: KeyNode = keyTree(configSchema);
/** SIDECAR_* variables that are not config keys: the config file's path, and the sidecar the client commands (and apps) talk to. */
const NOT_OVERRIDES = new Set(["SIDECAR_CONFIG", "SIDECAR_URL"]);

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** A raw string from the environment or --set, turned into the value its key expects. */
function coerce(path: readonly string[], raw: string): unknown {
  const node = nodeAt(TREE, path);
  if (node === "entry") return raw;
  if (node?.kind === "leaf") {
    if (node.schema.safeParse(raw).success) return raw;
    if (node.isArray && !raw.trim().startsWith("[")) return raw.split(",").map((s) => s.trim()).filter(Boolean);
  }
  try {
    return YAML.parse(raw) as unknown;
  } catch {
    return raw;
  }
}

function setPath(target: Obj, path: readonly string[], value: unknown): void {
  let obj = target;
  for (const seg of path.slice(0, -1)) {
    if (!isObj(obj[seg])) obj[seg] = {};
    obj = obj[seg] as Obj;
  }
  obj[path[path.length - 1]!] = value;
}

function getPath(target: unknown, path: readonly PropertyKey[]): unknown {
  let v = target;
  for (const seg of path) v = isObj(v) ? v[seg as string] : Array.isArray(v) ? v[seg as number] : undefined;
  return v;
}

function readYaml(file: string, problems: string[]): Obj {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    problems.push(`${file}: cannot read the config file: ${(err as Error).message}`);
    return {};
  }
  const doc = YAML.parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    for (const e of doc.errors) problems.push(`${file}: YAML syntax error: ${e.message.split("\n")[0]}`);
    return {};
  }
  let value: unknown;
  try {
    // yaml refuses a document whose aliases expand past its limit ("billion laughs"): a config problem, not a crash.
    value = doc.toJS();
  } catch (err) {
    problems.push(`${file}: YAML cannot be read: ${(err as Error).message}`);
    return {};
  }
  if (value === null || value === undefined) return {};
  if (!isObj(value)) {
    problems.push(`${file}: expected a mapping of config keys at the top level, got ${show(value)}`);
    return {};
  }
  return value;
}

function describeIssue(issue: z.core.$ZodIssue, merged: Obj, originOf: (p: string) => string): string[] {
  const at = issue.path.map(String).join(".");
  if (issue.code === "unrecognized_keys") {
    const parent = nodeAt(TREE, issue.path.map(String));
    const known = parent && parent !== "entry" && parent.kind === "object" ? [...parent.children.keys()].join(", ") : "";
    return issue.keys.map((k) => {
      const key = at ? `${at}.${k}` : k;
      return `${originOf(key)}: ${key}: unknown key${known ? ` (expected one of: ${known})` : ""}`;
    });
  }
  const value = getPath(merged, issue.path);
  const secret = /token|password/i.test(String(issue.path.at(-1) ?? ""));
  if (value === undefined) return [`${originOf(at)}: ${at}: required key is missing (${issue.message.replace(/, received undefined$/, "")})`];
  // A URL may carry a password (redis.url, rabbitmq.url): show the rest of it.
  const shown = typeof value === "string" ? value.replace(/^([a-z]+:\/\/[^:@/]*:)[^@/]*@/i, "$1(hidden)@") : value;
  return [`${originOf(at)}: ${at}: got ${secret ? "(a value, hidden: it is a secret)" : show(shown)}: ${issue.message}`];
}

/** Fill in the defaults that depend on other keys, and freeze. */
function resolve(parsed: ParsedConfig, cwd: string): Config {
  const kind = parsed.registry.kind ?? (parsed.etcd ? "etcd" : parsed.nats ? "nats" : "local");
  const local = kind === "local";
  const dir = parsed.registry.dir ? path.resolve(cwd, parsed.registry.dir) : path.join(os.tmpdir(), "sidecar-registry");
  const config: Config = {
    ...parsed,
    registry: { ...parsed.registry, kind, dir },
    broker: { ...parsed.broker, kind: parsed.broker.kind ?? (parsed.rabbitmq ? "rabbitmq" : parsed.redis ? "redis" : parsed.nats ? "nats" : "local") },
    rabbitmq: parsed.rabbitmq
      ? { ...parsed.rabbitmq, tls: resolvePaths(parsed.rabbitmq.tls, cwd) }
      : { url: DEFAULTS.rabbitmqUrl, exchange: DEFAULTS.rabbitmqExchange, queueType: "classic" as const },
    inbound: {
      host: parsed.inbound.host ?? (local ? DEFAULTS.inboundHostLocal : DEFAULTS.inboundHostNats),
      port: parsed.inbound.port ?? (local ? DEFAULTS.inboundPortLocal : DEFAULTS.inboundPortNats),
      advertise: parsed.inbound.advertise,
      allow: parsed.inbound.allow,
    },
    mesh: { ...parsed.mesh, tls: resolvePaths(parsed.mesh.tls, cwd) },
    nats: parsed.nats
      ? { ...parsed.nats, tls: resolvePaths(parsed.nats.tls, cwd), ...(parsed.nats.credentials ? { credentials: path.resolve(cwd, parsed.nats.credentials) } : {}) }
      : { servers: [...DEFAULTS.natsServers], pingInterval: DEFAULTS.natsPingInterval },
    etcd: parsed.etcd ? { ...parsed.etcd, tls: resolvePaths(parsed.etcd.tls, cwd) } : { endpoints: [...DEFAULTS.etcdEndpoints], prefix: DEFAULTS.etcdPrefix },
    redis: resolveRedis(parsed.redis, cwd),
  };
  return deepFreeze(config);
}

/** The redis section with its defaults; a password given in the URL is moved out of it, so the URL can be shown. */
function resolveRedis(redis: ParsedConfig["redis"], cwd: string): Config["redis"] {
  if (!redis) return { url: DEFAULTS.redisUrl, prefix: DEFAULTS.redisPrefix, maxLen: DEFAULTS.redisMaxLen };
  const url = new URL(redis.url);
  const password = url.password ? decodeURIComponent(url.password) : redis.password;
  url.password = "";
  return { ...redis, url: url.toString(), password, tls: resolvePaths(redis.tls, cwd) };
}

function readable(file: string): boolean {
  try {
    accessSync(file, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/** File paths in the config are relative to the working directory, like registry.dir. */
function resolvePaths<T extends object | undefined>(files: T, cwd: string): T {
  if (!files) return files;
  const out: Record<string, unknown> = { ...files };
  for (const k of ["cert", "key", "ca"]) if (typeof out[k] === "string") out[k] = path.resolve(cwd, out[k] as string);
  return out as T;
}


/**
 * Load the config: YAML file, then SIDECAR_* environment, then --set flags (each overriding the
 * one before), validated once. Throws ConfigError listing every problem with where it came from.
 */
export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const problems: string[] = [];
  const origins = new Map<string, string>();

  let file = options.file ?? env.SIDECAR_CONFIG;
  if (file === undefined && existsSync(path.join(cwd, "sidecar.yaml"))) file = "sidecar.yaml";
  const fileLabel = file ?? "config (no file)";
  const merged: Obj = file ? readYaml(path.resolve(cwd, file), problems) : {};

  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith("SIDECAR_") || NOT_OVERRIDES.has(name) || raw === undefined) continue;
    const p = envPath(TREE, name);
    if (!p) {
      problems.push(`environment ${name}: not a config key (names are SIDECAR_ + the key path in upper snake case, e.g. SIDECAR_APP_PORT)`);
      continue;
    }
    setPath(merged, p, coerce(p, raw));
    origins.set(p.join("."), `environment ${name}`);
  }

  for (const assignment of options.set ?? []) {
    const eq = assignment.indexOf("=");
    const key = eq > 0 ? assignment.slice(0, eq).trim() : "";
    if (!key || !/^[A-Za-z0-9_.-]+$/.test(key)) {
      problems.push(`--set ${assignment}: expected key.path=value`);
      continue;
    }
    const p = key.split(".");
    setPath(merged, p, coerce(p, assignment.slice(eq + 1)));
    origins.set(key, `--set ${key}`);
  }

  const originOf = (at: string): string => {
    for (let p = at; p; p = p.includes(".") ? p.slice(0, p.lastIndexOf(".")) : "") {
      const o = origins.get(p);
      if (o) return o;
    }
    return fileLabel;
  };

  // Sections with required keys: an absent section is reported by its missing keys (app.port), not as a whole.
  for (const section of ["service", "app"]) if (merged[section] === undefined) merged[section] = {};
  const result = configSchema.safeParse(merged);
  if (!result.success) for (const issue of result.error.issues) problems.push(...describeIssue(issue, merged, originOf));
  else {
    if (result.data.api.headersTimeout > result.data.api.requestTimeout) {
      problems.push(`${originOf("api.headersTimeout")}: api.headersTimeout: got ${result.data.api.headersTimeout}ms: expected at most api.requestTimeout (${result.data.api.requestTimeout}ms)`);
    }
    // Without the mesh token or mutual TLS a caller's name is only what it claims: an allow list
    // would let in anyone claiming a listed name. The listener would refuse every caller; say so at start.
    const { allow } = result.data.inbound;
    if (allow !== undefined && result.data.mesh.token === undefined) {
      if (result.data.mesh.tls?.ca === undefined) {
        problems.push(`${originOf("inbound.allow")}: inbound.allow: expected mesh.token or mesh.tls with a ca (mutual TLS) as well: without either, a caller's name is only what it claims`);
      } else if (result.data.transport.kind === "nats") {
        problems.push(`${originOf("inbound.allow")}: inbound.allow: expected mesh.token as well with transport.kind nats: calls over NATS carry no client certificate, so only the mesh token vouches for a caller's name`);
      }
    }
    const etcd = result.data.etcd;
    if (etcd) {
      if (etcd.password !== undefined && etcd.username === undefined) problems.push(`${originOf("etcd.password")}: etcd.password: expected etcd.username as well`);
      if (etcd.username !== undefined && etcd.password === undefined) problems.push(`${originOf("etcd.username")}: etcd.username: expected etcd.password as well`);
      const https = etcd.endpoints.filter((e) => e.startsWith("https://"));
      if (https.length > 0 && https.length < etcd.endpoints.length) problems.push(`${originOf("etcd.endpoints")}: etcd.endpoints: expected all http:// or all https://, not both`);
      if (https.length > 0 && etcd.tls?.ca === undefined) problems.push(`${originOf("etcd.endpoints")}: etcd.endpoints: https:// endpoints need etcd.tls.ca (the CA that signed the etcd servers' certificates)`);
      if (https.length === 0 && etcd.tls !== undefined) problems.push(`${originOf("etcd.tls")}: etcd.tls: expected https:// endpoints with TLS settings`);
    }
    const rabbit = result.data.rabbitmq;
    if (rabbit?.tls && rabbit.url.startsWith("amqp://")) problems.push(`${originOf("rabbitmq.tls")}: rabbitmq.tls: expected an amqps:// rabbitmq.url with TLS settings`);
    if (result.data.registry.kind === "etcd" && result.data.transport.kind === "nats" && !result.data.nats) {
      problems.push(`${originOf("transport.kind")}: transport.kind: got 'nats': expected a nats section as well (the etcd registry does not carry calls)`);
    }
    const redis = result.data.redis;
    if (redis) {
      const url = new URL(redis.url);
      if (url.password && redis.password !== undefined) problems.push(`${originOf("redis.password")}: redis.password: expected the password once: in redis.url or in redis.password, not both`);
      if (url.protocol === "redis:" && redis.tls !== undefined) problems.push(`${originOf("redis.tls")}: redis.tls: expected a rediss:// URL with TLS settings (redis.url is redis://)`);
    }
    const brokerKind = result.data.broker.kind ?? (result.data.rabbitmq ? "rabbitmq" : redis ? "redis" : result.data.nats ? "nats" : "local");
    const seen = new Set<string>();
    result.data.subscriptions.forEach((s, i) => {
      if (brokerKind === "redis" && !isValidSubject(s.topic, false)) {
        problems.push(`${originOf(`subscriptions.${i}`)}: subscriptions.${i}.topic: got ${show(s.topic)}: ${REDIS_NO_WILDCARDS}`);
      }
      const name = s.name ?? s.topic;
      if (seen.has(name)) problems.push(`${originOf(`subscriptions.${i}`)}: subscriptions.${i}.name: got ${show(name)}: expected a name unique among the subscriptions (set name: to tell them apart)`);
      seen.add(name);
    });
  }
  if (problems.length > 0 || !result.success) throw new ConfigError(problems);
  const config = resolve(result.data, cwd);
  for (const [at, files] of [["mesh.tls", config.mesh.tls], ["nats.tls", config.nats.tls], ["etcd.tls", config.etcd.tls], ["rabbitmq.tls", config.rabbitmq.tls], ["redis.tls", config.redis.tls]] as const) {
    if (files) for (const p of readTls(files, at).problems) problems.push(`${originOf(p.slice(0, p.indexOf(":")))}: ${p}`);
  }
  if (config.nats.credentials !== undefined && !readable(config.nats.credentials)) {
    problems.push(`${originOf("nats.credentials")}: nats.credentials: cannot read '${config.nats.credentials}'`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { config, file };
}
