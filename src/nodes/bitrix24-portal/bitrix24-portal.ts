import type { NodeAPI } from "node-red";
import { AckQueue } from "../../core/acks/ack-queue";
import type { VerifiedInstallation } from "../../core/auth/installation";
import {
  Bitrix24Client,
  DEFAULT_OAUTH_SERVER,
  DEFAULT_TIMEOUT_MS,
  type PortalMove,
  validatePortalUrl,
} from "../../core/client/client";
import { OfflineEventsApi } from "../../core/queue/offline-api";
import { Bitrix24Error } from "../../core/rest/errors";
import { fileStateStores } from "../../core/state/file-state";
import { fingerprint, tokenStoreKey } from "../../core/state/token-store";
import type { PostgresNode } from "../bitrix24-postgres/bitrix24-postgres";
import { closeWaitMs } from "../shared/close-wait";
import { normalisePath } from "../shared/http-endpoint";
import { registerPortalAdminRoutes } from "./portal-admin";
import {
  clientOptionsFor,
  type InstallationStatus,
  type PortalConfig,
  type PortalCredentials,
  type PortalNode,
  positiveNumber,
  stateDirFor,
} from "./portal-config";
import { registerInstallEndpoint } from "./portal-install";
import { startPortalOps } from "./portal-metrics";

// Worker nodes and tests name the portal node's types and helpers by this file, as before portal-config.ts.
export type { InstallationStatus, PortalConfig, PortalCredentials, PortalNode } from "./portal-config";
export { clientOptionsFor, stateDirFor } from "./portal-config";

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

/** How often a node re-reads the token file for an installation another process received. */
const INSTALLATION_LOOK_MS = 10_000;

function asMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export default function register(RED: NodeAPI): void {
  function Bitrix24PortalNode(this: PortalNode, config: PortalConfig) {
    RED.nodes.createNode(this, config);
    const credentials = this.credentials ?? {};
    this.stateDir = stateDirFor(RED);
    this.state = fileStateStores(this.stateDir);
    // A named store replaces the files; one that is missing or unusable is an error, never a silent fall-back to
    // files (the instances would stop sharing the token lineage).
    let storeError: Bitrix24Error | undefined;
    let releaseStore: (() => void) | undefined;
    if (config.store) {
      const storeNode = RED.nodes.getNode(config.store) as PostgresNode | null;
      if (!storeNode) {
        storeError = new Bitrix24Error({
          code: "INVALID_CONFIG",
          description: RED._("bitrix24-portal.errors.noStore"),
        });
      } else if (storeNode.configError || !storeNode.settings) {
        storeError = storeNode.configError ?? new Bitrix24Error({ code: "INVALID_CONFIG" });
      } else {
        const acquired = storeNode.acquire();
        this.state = acquired.stores;
        releaseStore = acquired.release;
      }
    }
    this.applicationToken = credentials.applicationToken?.trim() ?? "";
    this.clientId = credentials.clientId?.trim() ?? "";
    this.portalHost = "";
    this.installPath = normalisePath(config.installPath);
    const listeners = new Set<(status: InstallationStatus) => void>();
    this.onInstalled = (fn) => {
      listeners.add(fn);
      return () => listeners.delete(fn);
    };
    // A node deployed without a portal URL takes the portal of its first verified installation (installation.ts).
    let portalUrl = String(config.portalUrl ?? "").trim();
    if (!portalUrl && this.installPath && this.clientId) portalUrl = this.state.adoptedPortal(this.clientId) ?? "";
    const state = this.state;
    // The host an installation must be for. A portal URL that does not parse matches no installation at all.
    let configuredHost: string | undefined;
    try {
      configuredHost = portalUrl ? new URL(validatePortalUrl(portalUrl)).host : undefined;
    } catch {
      configuredHost = "(invalid portal URL)";
    }
    const pastedToken = this.applicationToken;
    let installedToken = "";
    const takeInstallation = (status: InstallationStatus, applicationToken: string) => {
      installedToken = applicationToken;
      this.installation = status;
    };
    // The installation kept in the token file, by this node or by another Node-RED sharing the file.
    const readInstallation = (client: Bitrix24Client) => {
      const installed = state.peekInstallation(tokenStoreKey(client.portalHost, this.clientId));
      if (installed && installed.installedAt !== this.installation?.installedAt) {
        const { domain, installedAt } = installed;
        takeInstallation({ portal: domain, portalUrl: client.portalUrl, installedAt }, installed.applicationToken);
      }
    };
    // Another Node-RED may receive it later: looked at again now and then.
    let lastLook = Date.now();
    // A shared store is read asynchronously: the look answers from its last read and starts the next one.
    const loadShared = (client: Bitrix24Client) =>
      state.kind === "files"
        ? Promise.resolve()
        : state.loadInstallation(tokenStoreKey(client.portalHost, this.clientId)).then(
            () => readInstallation(client),
            () => undefined,
          );
    const lookAgain = () => {
      if (!this.client || Date.now() - lastLook < INSTALLATION_LOOK_MS) return;
      lastLook = Date.now();
      readInstallation(this.client);
      void loadShared(this.client);
    };
    Object.defineProperty(this, "applicationToken", {
      // The token the portal handed over itself wins over a pasted one: it is the newest word on it.
      get: () => {
        lookAgain();
        return installedToken || pastedToken;
      },
      configurable: true,
    });
    try {
      if (storeError) throw storeError;
      const client = new Bitrix24Client(clientOptionsFor({ ...config, portalUrl }, credentials, state));
      this.client = client;
      this.portalHost = client.portalHost;
      this.api = new OfflineEventsApi(client);
      this.acks = new AckQueue(this.api);
      reportMoves(RED, this, client);
      readInstallation(client);
      void loadShared(client);
      this.ops = startPortalOps(
        RED,
        this,
        { client, api: this.api, acks: this.acks },
        config.metricsPath,
        this.onInstalled,
        (text) => this.warn(text),
      );
    } catch (err) {
      this.configError =
        err instanceof Bitrix24Error ? err : new Bitrix24Error({ code: "INVALID_CONFIG", description: String(err) });
      if (!portalUrl && this.installPath) {
        this.configError = new Bitrix24Error({
          code: "INVALID_CONFIG",
          description: RED._("bitrix24-portal.install.noPortalYet"),
        });
        this.log(this.configError.description);
      } else this.warn(RED._("bitrix24-portal.errors.config", { error: this.configError.description }));
    }

    let removeInstallEndpoint: (() => void) | undefined;
    if (this.installPath) {
      removeInstallEndpoint = registerInstallEndpoint(RED, {
        path: this.installPath,
        clientId: this.clientId,
        clientSecret: credentials.clientSecret?.trim() ?? "",
        oauthServer: String(config.oauthServer || DEFAULT_OAUTH_SERVER),
        expectedHosts: () => {
          const current = this.client ? new URL(this.client.currentPortalUrl).host : undefined;
          const known = [configuredHost ?? this.installation?.portal, current];
          return [...new Set(known.filter((host): host is string => Boolean(host)))];
        },
        // Where this node's client keeps its tokens (a renamed portal's too); else the installation's portal.
        storeKey: (host) => tokenStoreKey(this.client?.portalHost ?? host, this.clientId),
        state,
        deployedFingerprint: fingerprint(credentials.refreshToken?.trim() || undefined),
        timeoutMs: positiveNumber(config.timeout, DEFAULT_TIMEOUT_MS / 1000) * 1000,
        warn: (line) => this.warn(line),
        onRefused: (status, reason) => {
          this.installRefusal = { status, reason, at: Date.now() };
        },
        onInstalled: async (verified: VerifiedInstallation) => {
          const { domain, installedAt } = verified.installation;
          const status = { portal: domain, portalUrl: verified.portalUrl, installedAt };
          // The client first: once the node says "installed", calls use the installed tokens.
          if (this.client) await this.client.reloadTokens().catch((err: unknown) => this.warn(asMessage(err)));
          takeInstallation(status, verified.installation.applicationToken);
          this.installRefusal = undefined;
          const time = new Date(status.installedAt).toISOString();
          if (this.client) {
            this.log(RED._("bitrix24-portal.install.done", { portal: status.portal, time }));
          } else {
            this.warn(RED._("bitrix24-portal.install.doneRedeploy", { portal: status.portal, time }));
          }
          for (const fn of listeners) fn(status);
        },
      });
      if (!removeInstallEndpoint) this.warn(RED._("bitrix24-portal.install.noHttp"));
    }
    this.on("close", (_removed: boolean, done: () => void) => {
      // Pending acks are flushed first: an event acked by the flow must not be redelivered after a redeploy.
      // But a portal that hangs must not hold up the deploy: before Node-RED's close timeout cuts us off (and
      // logs an error), the client is closed, which aborts what is still in flight. Records whose clear did not
      // get through stay held and come back from the journal after the restart.
      removeInstallEndpoint?.();
      this.ops?.close();
      listeners.clear();
      const acks = this.acks;
      let guard: NodeJS.Timeout | undefined;
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        if (guard) clearTimeout(guard);
        // done() only once the client's token writes ended: Node-RED may remove the state folder next; the
        // store (a shared pool) is let go after that.
        const closed = this.client?.close() ?? Promise.resolve();
        const end = () => {
          releaseStore?.();
          done();
        };
        closed.then(end, end);
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
