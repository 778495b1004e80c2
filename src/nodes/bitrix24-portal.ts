import { join } from "node:path";
import type { Node, NodeAPI, NodeDef } from "node-red";
import { AckQueue } from "../core/ack-queue";
import {
  Bitrix24Client,
  type ClientOptions,
  DEFAULT_OAUTH_SERVER,
  DEFAULT_TIMEOUT_MS,
  type PortalMove,
  validatePortalUrl,
} from "../core/client";
import { Bitrix24Error } from "../core/errors";
import { OfflineEventsApi } from "../core/offline-api";
import { FileTokenStore } from "../core/token-store";
import { closeWaitMs } from "./close-wait";
import { registerPortalAdminRoutes } from "./portal-admin";

export interface PortalCredentials {
  clientId?: string;
  clientSecret?: string;
  accessToken?: string;
  refreshToken?: string;
  webhookUrl?: string;
  applicationToken?: string;
  /** `server_endpoint` the portal named (authorize, installation): where refreshes go; oauthServer is the guess. */
  serverEndpoint?: string;
}

export interface PortalConfig extends NodeDef {
  portalUrl: string;
  authType: string;
  oauthServer: string;
  rateLimit: string | number;
  rateBurst: string | number;
  /** How many Node-RED instances drain this portal with the same application: they share its bucket. */
  instances?: string | number;
  /** Seconds per HTTP request before it counts as failed (default 75: above the portal's own 60 s cut-off). */
  timeout?: string | number;
}

/** What worker nodes get from `RED.nodes.getNode(config.portal)`. */
export interface PortalNode extends Node<PortalCredentials> {
  /** Undefined when the configuration is unusable; `configError` then says why. */
  client?: Bitrix24Client;
  api?: OfflineEventsApi;
  acks?: AckQueue;
  configError?: Bitrix24Error;
  /** Portal host, e.g. "example.bitrix24.com": the `portal` of msg.bitrix24 and part of journal keys. */
  portalHost: string;
  clientId: string;
  applicationToken: string;
  /** Directory in the Node-RED user directory for token files and process-id journals. */
  stateDir: string;
}

/** Where token files and journals live: inside the user directory, never in flows or context. */
export function stateDirFor(RED: NodeAPI): string {
  const userDir = (RED.settings as { userDir?: string }).userDir ?? join(process.cwd(), ".node-red");
  return join(userDir, ".bitrix24-offline-events");
}

function positiveNumber(value: unknown, fallback: number): number {
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

/** Builds client options from a config (deployed, or as edited in the dialog for "Test connection"). */
export function clientOptionsFor(
  config: Pick<PortalConfig, "portalUrl" | "oauthServer" | "rateLimit" | "rateBurst" | "instances" | "timeout">,
  credentials: PortalCredentials,
  stateDir: string,
): ClientOptions {
  const portalUrl = validatePortalUrl(String(config.portalUrl ?? "").trim());
  const clientId = credentials.clientId?.trim() ?? "";
  const clientSecret = credentials.clientSecret?.trim() ?? "";
  if (!clientId || !clientSecret) {
    throw new Bitrix24Error({
      code: "INVALID_CONFIG",
      description: "client id and client secret are required (the offline methods need an OAuth application)",
    });
  }
  if (!credentials.accessToken && !credentials.refreshToken) {
    throw new Bitrix24Error({
      code: "INVALID_CONFIG",
      description: "no tokens yet: click Authorize in the portal's dialog, or paste an access and refresh token",
    });
  }
  const instances = positiveNumber(config.instances, 1);
  return {
    portalUrl,
    auth: {
      type: "oauth",
      clientId,
      clientSecret,
      accessToken: credentials.accessToken?.trim() || undefined,
      refreshToken: credentials.refreshToken?.trim() || undefined,
      oauthServer: String(config.oauthServer || DEFAULT_OAUTH_SERVER).replace(/\/+$/, ""),
      serverEndpoint: credentials.serverEndpoint?.trim() || undefined,
    },
    // N instances share the portal's bucket: each takes its share so together they stay under it.
    rateLimit: {
      perSecond: positiveNumber(config.rateLimit, 2) / instances,
      burst: Math.max(1, Math.floor(positiveNumber(config.rateBurst, 50) / instances)),
    },
    timeoutMs: positiveNumber(config.timeout, DEFAULT_TIMEOUT_MS / 1000) * 1000,
    tokenStore: new FileTokenStore(stateDir),
  };
}

/**
 * A renamed portal: the client follows the redirect and keeps the new address beside the tokens. Said once per
 * new address, in the log and in the status of the nodes using this portal, because the configured URL is now
 * out of date and the user should update it.
 */
function reportMoves(RED: NodeAPI, portal: PortalNode, client: Bitrix24Client): void {
  const reported = new Set<string>();
  client.on("portal-moved", (move: PortalMove) => {
    if (reported.has(move.to)) return;
    reported.add(move.to);
    portal.warn(RED._("bitrix24-portal.moved.log", { from: move.from, to: move.to }));
    const text = RED._("bitrix24-portal.moved.status", { to: new URL(move.to).host });
    RED.nodes.eachNode((def) => {
      if ((def as { portal?: unknown }).portal !== portal.id) return;
      RED.nodes.getNode(def.id)?.status({ fill: "yellow", shape: "dot", text });
    });
  });
}

export default function register(RED: NodeAPI): void {
  function Bitrix24PortalNode(this: PortalNode, config: PortalConfig) {
    RED.nodes.createNode(this, config);
    const credentials = this.credentials ?? {};
    this.stateDir = stateDirFor(RED);
    this.applicationToken = credentials.applicationToken?.trim() ?? "";
    this.clientId = credentials.clientId?.trim() ?? "";
    this.portalHost = "";
    try {
      const options = clientOptionsFor(config, credentials, this.stateDir);
      const client = new Bitrix24Client(options);
      this.client = client;
      this.portalHost = client.portalHost;
      this.api = new OfflineEventsApi(client);
      this.acks = new AckQueue(this.api);
      reportMoves(RED, this, client);
    } catch (err) {
      this.configError =
        err instanceof Bitrix24Error ? err : new Bitrix24Error({ code: "INVALID_CONFIG", description: String(err) });
      this.warn(RED._("bitrix24-portal.errors.config", { error: this.configError.description }));
    }
    this.on("close", (_removed: boolean, done: () => void) => {
      // Pending acks are flushed first: an event acked by the flow must not be redelivered after a redeploy.
      // But a portal that hangs must not hold up the deploy: before Node-RED's close timeout cuts us off (and
      // logs an error), the client is closed, which aborts what is still in flight. Records whose clear did not
      // get through stay held and come back from the journal after the restart.
      const acks = this.acks;
      let guard: NodeJS.Timeout | undefined;
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        if (guard) clearTimeout(guard);
        this.client?.close();
        done();
      };
      if (acks) {
        guard = setTimeout(finish, closeWaitMs(RED));
        acks.close().then(finish, finish);
      } else finish();
    });
  }

  RED.nodes.registerType<PortalNode, PortalConfig, unknown, PortalCredentials>("bitrix24-portal", Bitrix24PortalNode, {
    credentials: {
      clientId: { type: "text" },
      clientSecret: { type: "password" },
      accessToken: { type: "password" },
      refreshToken: { type: "password" },
      webhookUrl: { type: "password" },
      applicationToken: { type: "password" },
      serverEndpoint: { type: "text" },
    },
  });
  registerPortalAdminRoutes(RED);
}
