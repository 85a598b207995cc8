import os from "node:os";
import type { Config } from "../config/index.js";
import type { Logger } from "../log.js";
import { formatAddress } from "../transport/http.js";

/** The address peers reach this node at: `advertise`, else the bound one (a wildcard bind advertises the first external IPv4). */
export function advertisedAddress(config: Config, boundPort: number, log: Logger): string {
  if (config.inbound.advertise) return config.inbound.advertise;
  const host = config.inbound.host;
  if (host !== "0.0.0.0" && host !== "::") return formatAddress(host, boundPort);
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === "IPv4" && !a.internal) return `${a.address}:${boundPort}`;
  }
  log.warn("no external IPv4 address found; advertising 127.0.0.1 (set inbound.advertise)");
  return `127.0.0.1:${boundPort}`;
}
