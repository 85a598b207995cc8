import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "./ports.js";
import { LaunchedServer, spawnServer, type ServerProcess } from "./server-process.js";

const BINARY = process.env.ETCD_BIN ?? "etcd";
/** What etcd says once it serves clients (3.4 with the zap logger: "serving client traffic insecurely"); in a cluster, once it has joined. */
const READY = /serving client traffic|ready to serve client requests/;

/** The server's certificate and key; `clientCa`: require client certificates signed by it. */
export interface EtcdTls {
  cert: string;
  key: string;
  clientCa?: string;
}

interface Member {
  name: string;
  client: number;
  peer: number;
}

/**
 * A real etcd (Debian's etcd-server) for integration tests: bound to 127.0.0.1 on random client
 * and peer ports, with a temporary data directory removed on stop. `cluster(3)` starts three
 * members that form one cluster over loopback.
 */
export class EtcdServer extends LaunchedServer {

  private constructor(
    readonly dataDir: string,
    private readonly me: Member,
    private readonly initialCluster: string,
    private readonly tls?: EtcdTls,
  ) {
    super(dataDir);
  }

  /** One member; with `tls`, clients must speak https and (with `clientCa`) present a certificate that CA signed. */
  static async start(options: { tls?: EtcdTls } = {}): Promise<EtcdServer> {
    const [client, peer] = [await freePort(), await freePort()];
    const me = { name: "e1", client, peer };
    const server = new EtcdServer(mkdtempSync(path.join(os.tmpdir(), "sidecar-etcd-")), me, `e1=http://127.0.0.1:${peer}`, options.tls);
    await server.spawn();
    return server;
  }

  /** `size` members forming one cluster; each resolves once it serves clients. */
  static async cluster(size = 3): Promise<EtcdServer[]> {
    const members: Member[] = [];
    for (let i = 0; i < size; i++) members.push({ name: `e${i + 1}`, client: await freePort(), peer: await freePort() });
    const initial = members.map((m) => `${m.name}=http://127.0.0.1:${m.peer}`).join(",");
    const servers = members.map((m) => new EtcdServer(mkdtempSync(path.join(os.tmpdir(), "sidecar-etcd-")), m, initial));
    await Promise.all(servers.map((s) => s.spawn()));
    return servers;
  }

  get url(): string {
    return `${this.tls ? "https" : "http"}://127.0.0.1:${this.me.client}`;
  }


  protected async launch(): Promise<ServerProcess> {
    const { name, peer } = this.me;
    const args = [
      "--name", name, "--data-dir", this.dataDir, "--logger", "zap", "--log-outputs", "stderr",
      "--listen-client-urls", this.url, "--advertise-client-urls", this.url,
      ...(this.tls ? ["--cert-file", this.tls.cert, "--key-file", this.tls.key, ...(this.tls.clientCa ? ["--client-cert-auth", "--trusted-ca-file", this.tls.clientCa] : [])] : []),
      "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
      "--initial-cluster", this.initialCluster, "--initial-cluster-state", "new", "--initial-cluster-token", "sidecar-test",
    ];
    return (await spawnServer({ name: "etcd", bin: BINARY, args, ready: READY, timeoutMs: 20_000, packageName: "etcd-server" })).server;
  }
}
