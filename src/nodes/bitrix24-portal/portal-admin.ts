import type { Request, Response } from "express";
import type { NodeAPI } from "node-red";
import { authorizeUrl, exchangeAuthorizationCode, newOAuthState } from "../../core/auth/authorization-code";
import { Bitrix24Client, DEFAULT_OAUTH_SERVER, DEFAULT_RATE_LIMIT, validatePortalUrl } from "../../core/client/client";
import { OfflineEventsApi } from "../../core/queue/offline-api";
import { Bitrix24Error } from "../../core/rest/errors";
import { oauthServerFromDomain } from "../../core/rest/portal-url";
import { fileStateStores } from "../../core/state/file-state";
import type { StateStores } from "../../core/state/state-seam";
import type { PostgresNode } from "../bitrix24-postgres/bitrix24-postgres";
import { asBitrix24Error } from "../shared/error-report";
import {
  clientOptionsFor,
  type PortalConfig,
  type PortalCredentials,
  type PortalNode,
  stateDirFor,
} from "./portal-config";

/** The editor sends this in place of a password it has not changed (Node-RED's convention). */
const UNCHANGED = "__PWRD__";
const STATE_TTL_MS = 10 * 60 * 1000;

type DialogConfig = Pick<
  PortalConfig,
  | "portalUrl"
  | "oauthServer"
  | "rateLimit"
  | "rateBurst"
  | "instances"
  | "timeout"
  | "installPath"
  | "ownAddress"
  | "store"
>;

interface DialogRequest extends Partial<DialogConfig> {
  id?: string;
  credentials?: PortalCredentials;
}

/** What "Test connection" found, step by step, so the dialog can say which step failed. */
export interface ConnectionReport {
  ok: boolean;
  reachable: boolean;
  auth: boolean;
  offline: boolean;
  extended: boolean | null;
  queued: number | null;
  /** app.info's LICENSE and LICENSE_FAMILY ("ent" = Enterprise), when the portal told. */
  plan?: { license: string; family: string };
  /** Set when the plan allows more than the dialog's bucket (Enterprise with the default 2/s, burst 50). */
  suggestedRate?: { perSecond: number; burst: number };
  /** The portal answered from another address (renamed): the URL to put in the dialog. */
  movedTo?: string;
  error?: { code: string; description: string };
}

// app.info's LICENSE_FAMILY of Enterprise plans, and their bucket (REFERENCE.md "Calling the API").
const ENTERPRISE_FAMILY = "ent";
const ENTERPRISE_RATE = { perSecond: 5, burst: 250 };

/** The plan from app.info; undefined when the portal does not tell (the test goes on without it). */
async function planOf(client: Bitrix24Client): Promise<{ license: string; family: string } | undefined> {
  try {
    const info = (await client.call<Record<string, unknown>>("app.info")).result;
    if (typeof info !== "object" || info === null) return undefined;
    const text = (v: unknown) => (typeof v === "string" ? v : "");
    const family = text(info.LICENSE_FAMILY);
    const license = text(info.LICENSE);
    return family || license ? { license, family } : undefined;
  } catch {
    return undefined;
  }
}

function usesDefaultBucket(config: DialogConfig): boolean {
  const perSecond =
    config.rateLimit === undefined || config.rateLimit === "" ? DEFAULT_RATE_LIMIT.perSecond : Number(config.rateLimit);
  const burst =
    config.rateBurst === undefined || config.rateBurst === "" ? DEFAULT_RATE_LIMIT.burst : Number(config.rateBurst);
  return perSecond === DEFAULT_RATE_LIMIT.perSecond && burst === DEFAULT_RATE_LIMIT.burst;
}

interface PendingAuthorization {
  nodeId: string;
  portalUrl: string;
  oauthServer: string;
  credentials: PortalCredentials;
  redirectUri: string;
  expires: number;
}

/** Dialog values merged with the stored credentials wherever the editor sent the unchanged placeholder. */
function dialogCredentials(RED: NodeAPI, body: DialogRequest): PortalCredentials {
  const stored = (body.id ? (RED.nodes.getCredentials(body.id) as PortalCredentials | undefined) : undefined) ?? {};
  const sent = body.credentials ?? {};
  const merged: PortalCredentials = { ...stored };
  for (const key of Object.keys(sent) as (keyof PortalCredentials)[]) {
    const value = sent[key];
    if (value !== undefined && value !== UNCHANGED) merged[key] = value;
  }
  return merged;
}

export async function testConnection(
  config: DialogConfig,
  credentials: PortalCredentials,
  state: StateStores,
): Promise<ConnectionReport> {
  const report: ConnectionReport = {
    ok: false,
    reachable: false,
    auth: false,
    offline: false,
    extended: null,
    queued: null,
  };
  let client: Bitrix24Client | undefined;
  try {
    // The same token store as the deployed node: a refresh made by the test must not lose the rotated token.
    client = new Bitrix24Client({ ...clientOptionsFor(config, credentials, state), retry: { maxAttempts: 2 } });
    const api = new OfflineEventsApi(client);
    report.extended = (await api.feature("rest_offline_extended")) ?? null;
    report.reachable = true;
    report.auth = true;
    const page = await api.list({});
    report.offline = true;
    report.queued = page.total;
    report.ok = true;
    const plan = await planOf(client);
    if (plan) report.plan = plan;
    if (plan?.family === ENTERPRISE_FAMILY && usesDefaultBucket(config)) report.suggestedRate = { ...ENTERPRISE_RATE };
  } catch (err) {
    const error = asBitrix24Error(err);
    // An error answer proves the portal is there; only transport failures mean it is not.
    report.reachable = error.status > 0 || report.reachable;
    report.error = { code: error.code, description: error.description };
  } finally {
    if (client && client.currentPortalUrl !== client.portalUrl) report.movedTo = client.currentPortalUrl;
    // Waited for: the test's client writes into the deployed node's state folder (a renamed portal's address).
    await client?.close();
  }
  return report;
}

function callbackPage(RED: NodeAPI, nodeId: string, error?: string): string {
  const text = error ? RED._("bitrix24-portal.oauth.failed", { error }) : RED._("bitrix24-portal.oauth.done");
  const message = JSON.stringify({ type: "bitrix24-portal-authorized", id: nodeId, ok: !error });
  const escaped = text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Bitrix24</title></head><body><p>${escaped}</p><script>if (window.opener) { window.opener.postMessage(${message}, "*"); ${error ? "" : "setTimeout(function () { window.close(); }, 1500);"} }</script></body></html>`;
}

export function registerPortalAdminRoutes(RED: NodeAPI): void {
  const pending = new Map<string, PendingAuthorization>();
  const state = fileStateStores(stateDirFor(RED));

  RED.httpAdmin.post(
    "/bitrix24-portal/test",
    RED.auth.needsPermission("bitrix24-portal.write"),
    (req: Request, res: Response) => {
      const body = (req.body ?? {}) as DialogRequest;
      // The test refreshes through the same store as the deployed node would: a deployed PostgreSQL store when the
      // dialog names one (its tokens are the ones the instances share), else the files.
      const storeNode = body.store ? (RED.nodes.getNode(body.store) as PostgresNode | null) : null;
      const acquired = storeNode?.settings ? storeNode.acquire() : undefined;
      testConnection(body as DialogConfig, dialogCredentials(RED, body), acquired?.stores ?? state)
        .then(
          (report) => res.json(report),
          (err: unknown) => res.status(500).json({ ok: false, error: asBitrix24Error(err).toJSON() }),
        )
        .finally(() => acquired?.release());
    },
  );

  // What the dialog shows under the installation path: installed where and when, or the last refusal. Only the
  // deployed node knows; no secret is in the answer.
  RED.httpAdmin.get(
    "/bitrix24-portal/:id/installation",
    RED.auth.needsPermission("bitrix24-portal.read"),
    (req: Request, res: Response) => {
      const node = RED.nodes.getNode(String(req.params.id)) as PortalNode | null;
      if (!node || typeof node.onInstalled !== "function") {
        res.json({ deployed: false });
        return;
      }
      res.json({
        deployed: true,
        installPath: node.installPath,
        installation: node.installation ?? null,
        refusal: node.installRefusal ?? null,
      });
    },
  );

  // Step 1 runs with the editor's admin token; it returns the portal URL the editor opens in a new window.
  RED.httpAdmin.post(
    "/bitrix24-portal/authorize",
    RED.auth.needsPermission("bitrix24-portal.write"),
    (req: Request, res: Response) => {
      const body = (req.body ?? {}) as DialogRequest & { callbackUrl?: string };
      try {
        const credentials = dialogCredentials(RED, body);
        const portalUrl = validatePortalUrl(String(body.portalUrl ?? "").trim());
        if (!body.id || !credentials.clientId || !credentials.clientSecret) {
          throw new Bitrix24Error({ code: "INVALID_CONFIG", description: RED._("bitrix24-portal.oauth.needClient") });
        }
        const redirectUri = String(body.callbackUrl ?? "");
        if (!/^https?:\/\//.test(redirectUri)) {
          throw new Bitrix24Error({ code: "INVALID_ARGUMENT", description: "callbackUrl must be an absolute URL" });
        }
        const now = Date.now();
        for (const [key, entry] of pending) if (entry.expires < now) pending.delete(key);
        const state = newOAuthState();
        pending.set(state, {
          nodeId: body.id,
          portalUrl,
          oauthServer: String(body.oauthServer || DEFAULT_OAUTH_SERVER).replace(/\/+$/, ""),
          credentials,
          redirectUri,
          expires: now + STATE_TTL_MS,
        });
        res.json({ url: authorizeUrl(portalUrl, credentials.clientId, state, redirectUri) });
      } catch (err) {
        res.status(400).json({ error: asBitrix24Error(err).toJSON() });
      }
    },
  );

  // Step 2 is the portal's browser redirect: it carries no admin token, so the one-time state guards it.
  RED.httpAdmin.get("/bitrix24-portal/callback", (req: Request, res: Response) => {
    const state = String(req.query.state ?? "");
    const entry = pending.get(state);
    pending.delete(state);
    if (!entry || entry.expires < Date.now()) {
      res.status(403).send(callbackPage(RED, "", RED._("bitrix24-portal.oauth.badState")));
      return;
    }
    const code = String(req.query.code ?? "");
    if (!code) {
      res.status(400).send(callbackPage(RED, entry.nodeId, String(req.query.error ?? "no code")));
      return;
    }
    // The redirect names the portal's own OAuth server (server_domain): the configured one is only a guess.
    const oauthServer = oauthServerFromDomain(req.query.server_domain) ?? entry.oauthServer;
    exchangeAuthorizationCode({
      oauthServer,
      clientId: entry.credentials.clientId ?? "",
      clientSecret: entry.credentials.clientSecret ?? "",
      code,
    })
      .then(async (tokens) => {
        await RED.nodes.addCredentials(entry.nodeId, {
          ...entry.credentials,
          accessToken: tokens.accessToken,
          refreshToken: tokens.refreshToken,
          serverEndpoint: tokens.serverEndpoint ?? `${oauthServer}/rest/`,
        });
        res.send(callbackPage(RED, entry.nodeId));
      })
      .catch((err: unknown) => {
        res.status(502).send(callbackPage(RED, entry.nodeId, asBitrix24Error(err).message));
      });
  });
}
