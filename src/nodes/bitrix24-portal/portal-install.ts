import { createHash } from "node:crypto";
import type { Request, RequestHandler, Response } from "express";
import type { NodeAPI } from "node-red";
import {
  InstallationError,
  InstallGate,
  parseInstallation,
  saveInstallation,
  type VerifiedInstallation,
  verifyInstallation,
} from "../../core/auth/installation";
import { NotificationError } from "../../core/queue/notification";
import { BodyReadError } from "../../core/rest/http-body";
import type { StateStores } from "../../core/state/state-seam";
import { asBitrix24Error } from "../shared/error-report";
import { RefusalReporter, readRequestBody, registerPost, removeRoute } from "../shared/http-endpoint";

/** An installation is a few hundred bytes; the placement shape a few more. */
const BODY_LIMIT = 32 * 1024;

/** What the installation endpoint needs from its portal node. */
export interface InstallEndpointOptions {
  path: string;
  clientId: string;
  clientSecret: string;
  oauthServer: string;
  /** host[:port]s the installation may be for (configured, renamed); none = not configured yet: the first verified one is taken. */
  expectedHosts: () => string[];
  /** The token store key for an installation on `host`. */
  storeKey: (host: string) => string;
  /** Where the installation is kept (the portal's state seam). */
  state: StateStores;
  /** fingerprint of the deployed refresh token: the lineage the installed tokens are written under. */
  deployedFingerprint: string;
  timeoutMs: number;
  warn: (line: string) => void;
  /** After the installation is stored. */
  onInstalled: (verified: VerifiedInstallation) => Promise<void> | void;
  /** For the dialog: the last refusal (status and reason, never a secret). */
  onRefused: (status: number, reason: string) => void;
}

/** A digest of an installation's refresh token: what a shared replay store keeps (never the token). */
function replayKey(refreshToken: string): string {
  return createHash("sha256").update(refreshToken, "utf8").digest("base64");
}

/**
 * A replay seen by another instance sharing the store (the in-memory gate only knows this process's POSTs). The
 * shared store failing does not block an installation: the OAuth server refuses a spent refresh token anyway.
 */
async function sharedReplay(state: StateStores, refreshToken: string): Promise<boolean> {
  if (!state.installReplays) return false;
  return state.installReplays.isReplay(replayKey(refreshToken)).catch(() => false);
}

/**
 * Registers the portal's installation endpoint on Node-RED's HTTP node server; returns the function that removes
 * it, or undefined when httpNodeRoot is false. Checks run cheapest first, so a stranger costs us little and the
 * OAuth server nothing: rate cap, shape, client configured, domain, replay — and only then the OAuth server.
 */
export function registerInstallEndpoint(RED: NodeAPI, o: InstallEndpointOptions): (() => void) | undefined {
  const gate = new InstallGate();
  const refusals = new RefusalReporter();
  let closed = false;

  function refuse(res: Response, status: number, reason: string, ip: string): void {
    if (!res.headersSent) res.status(status).type("text/plain").send(reason);
    o.onRefused(status, reason);
    refusals.refused((more) => o.warn(RED._("bitrix24-portal.install.refused", { status, reason, ip, more })));
  }

  async function onInstall(req: Request, res: Response): Promise<void> {
    const ip = req.ip ?? "";
    if (!gate.admit()) {
      res.setHeader("Connection", "close");
      refuse(res, 429, "too many installation requests: try again in a minute", ip);
      req.resume();
      return;
    }
    let refreshToken = "";
    try {
      const { body } = await readRequestBody(req, BODY_LIMIT);
      // The placement shape puts DOMAIN and APP_SID in the query string.
      const request = parseInstallation({ ...(req.query as Record<string, unknown>), ...body });
      if (!o.clientId || !o.clientSecret) {
        throw new InstallationError(
          403,
          "the portal node has no client id and secret yet: enter them from the application card, deploy, then click Reinstall",
        );
      }
      const expected = o.expectedHosts().map((host) => host.toLowerCase());
      if (expected.length > 0 && !expected.includes(request.domain)) {
        throw new InstallationError(
          403,
          `installation for ${request.domain}, but this node is for ${expected.join(", ")}`,
        );
      }
      if (gate.isReplay(request.refreshToken) || (await sharedReplay(o.state, request.refreshToken)))
        throw new InstallationError(409, "this installation was seen already");
      refreshToken = request.refreshToken;
      const verified = await verifyInstallation(request, {
        clientId: o.clientId,
        clientSecret: o.clientSecret,
        oauthServer: o.oauthServer,
        timeoutMs: o.timeoutMs,
      });
      // Spent refresh token: from here on the new pair must be kept, even if the node is closing.
      const host = new URL(verified.portalUrl).host;
      if (expected.length === 0) await o.state.rememberAdoptedPortal(o.clientId, verified.portalUrl);
      await saveInstallation(o.state.tokens, o.storeKey(host), verified, o.deployedFingerprint);
      // In effect before the portal hears OK: its first push may follow at once.
      if (!closed) await o.onInstalled(verified);
      if (!res.headersSent) res.status(200).type("text/plain").send("OK");
    } catch (err) {
      if (err instanceof InstallationError || err instanceof NotificationError || err instanceof BodyReadError) {
        // The OAuth server could not be asked: the portal's retry of this body must not count as a replay.
        if (err.status === 502 && refreshToken) {
          gate.forget(refreshToken);
          await o.state.installReplays?.forget(replayKey(refreshToken)).catch(() => undefined);
        }
        refuse(res, err.status, err.message, ip);
        return;
      }
      const error = asBitrix24Error(err);
      if (!res.headersSent) res.status(500).type("text/plain").send("Internal Server Error");
      o.onRefused(500, error.message);
      o.warn(RED._("bitrix24-portal.install.failed", { error: error.message }));
    }
  }

  const handler: RequestHandler = (req, res) => {
    void onInstall(req, res);
  };
  if (!registerPost(RED, o.path, handler)) return undefined;
  return () => {
    closed = true;
    removeRoute(RED.httpNode, handler);
  };
}
