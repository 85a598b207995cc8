/** The path of a request URL, without its query. */
export function pathOf(url: string | undefined): string {
  const u = url ?? "/";
  const q = u.indexOf("?");
  return q === -1 ? u : u.slice(0, q);
}

/** Is `url` under `prefix` ("/rpc" matches /rpc, /rpc/x and /rpc?x, not /rpcx)? */
export function under(prefix: string, url: string | undefined): boolean {
  if (url === undefined || !url.startsWith(prefix)) return false;
  const next = url[prefix.length];
  return next === undefined || next === "/" || next === "?";
}
