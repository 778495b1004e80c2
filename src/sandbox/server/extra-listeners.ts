import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * The addresses a real portal has beyond its own: the new address after a rename (the old one then answers
 * 302 to it) and a second OAuth server in another region (oauth.bitrix24.tech beside oauth.bitrix.info) that
 * token answers name in `server_endpoint`. Each is one more listening port on the sandbox's host, served by
 * the same request handler, which asks `roleOf(req)` which address a request came to.
 */
export type AddressRole = "portal" | "renamed-away" | "oauth" | "second-oauth";

export interface ListenerSet {
  /** The portal's address now: the start URL, or the newest address after renames. */
  readonly current: string;
  /** The second OAuth server's base URL, once started. */
  readonly secondOAuth: string | undefined;
  roleOf(req: IncomingMessage): AddressRole;
}

function urlOf(server: Server): string {
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}

export class ExtraListeners implements ListenerSet {
  current: string;
  secondOAuth: string | undefined;
  private readonly servers: Server[] = [];
  /** Local port -> role; the start address is "portal" until a rename. */
  private readonly roles = new Map<number, AddressRole>();
  private secondOAuthStarting: Promise<string> | undefined;

  constructor(
    startUrl: string,
    private readonly host: string,
    private readonly handler: (req: IncomingMessage, res: ServerResponse) => void,
  ) {
    this.current = startUrl;
    this.roles.set(Number(new URL(startUrl).port), "portal");
  }

  roleOf(req: IncomingMessage): AddressRole {
    return this.roles.get(req.socket.localPort ?? 0) ?? "portal";
  }

  /** Renames the portal: a new address that serves it, and every older one redirects there from now on. */
  async rename(): Promise<{ from: string; to: string }> {
    const server = await this.listen();
    const from = this.current;
    for (const [port, role] of this.roles) if (role === "portal") this.roles.set(port, "renamed-away");
    const to = urlOf(server);
    this.roles.set(Number(new URL(to).port), "portal");
    this.current = to;
    return { from, to };
  }

  /**
   * Starts the (first) OAuth server on its own port and returns its base URL: oauth.bitrix.info is not the
   * portal's host, and a client that assumes it is must fail here as it would on a real portal.
   */
  async startOAuth(): Promise<string> {
    const url = urlOf(await this.listen());
    this.roles.set(Number(new URL(url).port), "oauth");
    return url;
  }

  /** Starts the second OAuth server (once) and returns its base URL. */
  startSecondOAuth(): Promise<string> {
    this.secondOAuthStarting ??= this.listen().then((server) => {
      const url = urlOf(server);
      this.roles.set(Number(new URL(url).port), "second-oauth");
      this.secondOAuth = url;
      return url;
    });
    return this.secondOAuthStarting;
  }

  async close(): Promise<void> {
    await Promise.all(
      this.servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      ),
    );
  }

  private async listen(): Promise<Server> {
    const server = createServer(this.handler);
    server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, this.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.servers.push(server);
    return server;
  }
}

/** What the old address of a renamed portal answers: a redirect to the same path and query at the new one. */
export function redirectToRenamed(req: IncomingMessage, res: ServerResponse, current: string, status: number): void {
  const location = `${current}${req.url ?? "/"}`;
  res.writeHead(status, { location, "content-type": "text/html; charset=UTF-8", "content-length": 0 });
  res.end();
}
