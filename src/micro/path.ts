/**
 * micro's path form (micro/micro `car/`, go-micro's api resolver "micro"): which service and
 * method a path names, and which paths the form may claim at all.
 */

/** First path segments that stay ours: the path form never claims them, whatever the method. */
export const RESERVED = new Set(["rpc", "proxy", "publish", "broker", "registry", "subscriptions", "metrics", "status", "health"]);

const VERSION = /^v[0-9]+$/;
/** micro's proxy resolver accepted only these service aliases in the first segment. */
const PROXY_ALIAS = /^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$/;

/** The path's segments; undefined when it has a '.' or '..' segment (we refuse rather than resolve them). */
function segments(pathname: string): string[] | undefined {
  const parts = pathname.split("/").filter((s) => s !== "");
  return parts.some((s) => s === "." || s === "..") ? undefined : parts;
}

/** Does micro's path form take this request (not one of our routes, and a POST unless proxying)? */
export function claims(pathname: string, method: string | undefined, handler: "rpc" | "proxy"): boolean {
  if (handler === "rpc" && method !== "POST") return false;
  const end = pathname.indexOf("/", 1);
  const first = end === -1 ? pathname.slice(1) : pathname.slice(1, end);
  return first !== "" && !RESERVED.has(first);
}

/** "say" → "Say", "say-hello" → "SayHello" (go-micro's toCamel: words split on '-', each titled). */
function camel(part: string): string {
  return part.split("-").map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join("");
}

/**
 * micro's rpc mapping (apiRoute): /greeter/say/hello → `<ns>.greeter` `Say.Hello`;
 * /greeter/hello → `<ns>.greeter` `Greeter.Hello`; /v1/greeter/hello → `<ns>.v1.greeter` `Greeter.Hello`;
 * longer paths: the last two segments are the method, the rest the service.
 */
export function rpcRoute(namespace: string, pathname: string): { service: string; method: string } | undefined {
  const parts = segments(pathname);
  if (parts === undefined || parts.length === 0) return undefined;
  let name: string[];
  let method: string[];
  if (parts.length <= 2) {
    name = parts.slice(0, 1);
    method = parts;
  } else if (parts.length === 3 && VERSION.test(parts[0]!)) {
    name = parts.slice(0, 2);
    method = parts.slice(1);
  } else {
    name = parts.slice(0, -2);
    method = parts.slice(-2);
  }
  return { service: `${namespace}.${name.join(".")}`, method: method.map(camel).join(".") };
}

/**
 * micro's proxy mapping (proxyRoute): the first segment names the service (`/v1/greeter/...` →
 * `<ns>.v1.greeter`); the path itself travels unchanged. Undefined when the alias is not one micro took.
 */
export function proxyRoute(namespace: string, pathname: string): string | undefined {
  const parts = pathname.split("/");
  const versioned = parts.length > 2 && VERSION.test(parts[1]!);
  const alias = versioned ? parts[2]! : parts[1]!;
  if (!PROXY_ALIAS.test(alias)) return undefined;
  return `${namespace}.${versioned ? `${parts[1]!}.${alias}` : alias}`;
}
