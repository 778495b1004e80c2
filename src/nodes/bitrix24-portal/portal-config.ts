/**
 * What a portal config node is, apart from the running node: its config and credentials, the node's public face
 * for worker nodes, where its state lives and how a config becomes client options. The node (bitrix24-portal.ts)
 * and its admin routes (portal-admin.ts, "Test connection" builds a client from the dialog's config) both need
 * these; kept here so neither imports the other.
 */
import { join } from "node:path";
import type { Node, NodeAPI, NodeDef } from "node-red";
import type { AckQueue } from "../../core/acks/ack-queue";
import {
  type Bitrix24Client,
  type ClientOptions,
  DEFAULT_OAUTH_SERVER,
  DEFAULT_TIMEOUT_MS,
  validatePortalUrl,
} from "../../core/client/client";
import type { OfflineEventsApi } from "../../core/queue/offline-api";
import { Bitrix24Error } from "../../core/rest/errors";
import type { StateStores } from "../../core/state/state-seam";
import { tokenStoreKey } from "../../core/state/token-store";
import { normalisePath } from "../shared/http-endpoint";
import type { PortalOps } from "./portal-metrics";

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
  /** Endpoint on Node-RED's HTTP node server for the portal's installation POST; empty = none. */
  installPath?: string;
  /** Id of a bitrix24-postgres config node keeping the state; empty = files in the user directory. */
  store?: string;
  /**
   * With a store: each instance leaves from its own public address, so each has the portal's whole bucket
   * (REFERENCE.md: the portal counts per source address). Default false: the instances share one bucket.
   */
  ownAddress?: boolean;
  /** HTTP path on Node-RED's HTTP node server serving Prometheus text; empty = none. */
  metricsPath?: string;
}

/** What the status, the dialog and the trigger may know of an installation: no secret in it. */
export interface InstallationStatus {
  /** host[:port] of the portal. */
  portal: string;
  /** The portal's origin, e.g. https://example.bitrix24.com. */
  portalUrl: string;
  /** Epoch ms. */
  installedAt: number;
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
  /** Directory in the Node-RED user directory for token files and process-id journals (the file store's). */
  stateDir: string;
  /** Where this portal's state persists (the state seam): what the client and the get nodes are handed. */
  state: StateStores;
  /** Normalised installPath ("" = none). */
  installPath: string;
  installation?: InstallationStatus;
  /** The last refused installation POST, for the dialog (status and reason: never a secret). */
  installRefusal?: { status: number; reason: string; at: number };
  /** Calls fn after each accepted installation; returns the unsubscribe function. */
  /** The operations numbers (sidebar, metricsPath); get nodes add their consumers. Undefined without a client. */
  ops?: PortalOps;
  onInstalled(fn: (status: InstallationStatus) => void): () => void;
}

/** Where token files and journals live: inside the user directory, never in flows or context. */
export function stateDirFor(RED: NodeAPI): string {
  const userDir = (RED.settings as { userDir?: string }).userDir ?? join(process.cwd(), ".node-red");
  return join(userDir, ".bitrix24-offline-events");
}

export function positiveNumber(value: unknown, fallback: number): number {
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

/** Builds client options from a config (deployed, or as edited in the dialog for "Test connection"). */
export function clientOptionsFor(
  config: Pick<
    PortalConfig,
    "portalUrl" | "oauthServer" | "rateLimit" | "rateBurst" | "instances" | "timeout" | "installPath" | "ownAddress"
  >,
  credentials: PortalCredentials,
  state: StateStores,
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
  // An installation brings its tokens to the token store, so a node that expects one (or got one) needs none here.
  // A shared store may hold the tokens another instance received: it is asked on first use.
  const installed = () => state.peekInstallation(tokenStoreKey(new URL(portalUrl).host, clientId)) !== undefined;
  const shared = state.kind !== "files";
  if (
    !credentials.accessToken &&
    !credentials.refreshToken &&
    !normalisePath(config.installPath) &&
    !shared &&
    !installed()
  ) {
    throw new Bitrix24Error({
      code: "INVALID_CONFIG",
      description:
        "no tokens yet: set the installation path and let the portal install the application, or click Authorize in the portal's dialog",
    });
  }
  // With a shared store the instances draw from one bucket (or each has its own address): no share to divide.
  const instances = state.bucket ? 1 : positiveNumber(config.instances, 1);
  const rate = {
    perSecond: positiveNumber(config.rateLimit, 2) / instances,
    burst: Math.max(1, Math.floor(positiveNumber(config.rateBurst, 50) / instances)),
  };
  const rateGate =
    state.bucket && !config.ownAddress ? state.bucket(`${new URL(portalUrl).host}\n${clientId}`, rate) : undefined;
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
    rateLimit: rate,
    rateGate,
    timeoutMs: positiveNumber(config.timeout, DEFAULT_TIMEOUT_MS / 1000) * 1000,
    tokenStore: state.tokens,
  };
}
