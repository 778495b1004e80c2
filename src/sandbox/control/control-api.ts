import type { ServerResponse } from "node:http";
import { isSeedableKind, type SeedCounts } from "../crm/crm-store";
import { INSTALL_SHAPES, type InstallShape } from "../oauth/app-install";
import type { Params } from "../php/php-params";
import type { Faults, SandboxSwitches } from "../sandbox-types";
import { sendJson } from "../server/http-io";
import type { SandboxPortal } from "../server/portal";
import { realPortalControl } from "./real-portal-control";

/**
 * `/_sandbox/*`: the same control the programmatic API gives, over HTTP, for tests that run the sandbox in
 * another process (the CLI). Not rate limited, not subject to faults, no auth: it listens on loopback.
 */

function parseJson(body: string): Record<string, unknown> {
  if (!body.trim()) return {};
  const parsed: unknown = JSON.parse(body);
  return parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)
    ? (parsed as Record<string, unknown>)
    : {};
}

export function handleControl(
  portal: SandboxPortal,
  method: string,
  path: string,
  body: string,
  res: ServerResponse,
): void {
  const action = path.slice("/_sandbox/".length).replace(/\/$/, "");
  let input: Record<string, unknown>;
  try {
    input = parseJson(body);
  } catch {
    sendJson(res, 400, { error: "INVALID_JSON", error_description: "The body is not JSON" });
    return;
  }
  if (method === "GET") {
    switch (action) {
      case "state":
        sendJson(res, 200, {
          url: portal.url,
          oauthUrl: portal.oauthUrl,
          currentUrl: portal.currentUrl,
          secondOAuthUrl: portal.secondOAuthUrl,
          credentials: portal.credentials,
          options: portal.currentOptions(),
          faults: portal.currentFaults(),
          bindings: portal.bindingList(),
          stats: portal.stats(),
        });
        return;
      case "stats":
        sendJson(res, 200, portal.stats());
        return;
      case "records":
        sendJson(res, 200, portal.records());
        return;
      case "objects":
        sendJson(res, 200, portal.crm.counts());
        return;
    }
    // GET /_sandbox/objects/<kind>/<id>: what <kind>'s get method would answer.
    const object = /^objects\/(\w+)\/(\d+)$/.exec(action);
    if (object && isSeedableKind(object[1])) {
      const found = portal.crm.get(object[1], Number(object[2]));
      if (found) sendJson(res, 200, found);
      else sendJson(res, 404, { error: "NOT_FOUND", error_description: `No ${object[1]} ${object[2]}` });
      return;
    }
  } else if (method === "POST") {
    switch (action) {
      case "events": {
        const count = Math.max(0, Math.floor(Number(input.count ?? 1)) || 0);
        const name = typeof input.name === "string" ? input.name : "ONCRMDEALUPDATE";
        const connector = typeof input.connector === "string" ? input.connector : "";
        // Over HTTP `data` can only be one value: every event gets it, so they collapse into one record.
        const data = "data" in input ? () => input.data : undefined;
        const userId = typeof input.userId === "string" ? { user_id: input.userId } : undefined;
        portal.addGenerated(count, () => name, connector, data, true, userId);
        sendJson(res, 200, { added: count, stats: portal.stats() });
        return;
      }
      case "objects":
        portal.crm.seedAll(input as SeedCounts);
        sendJson(res, 200, portal.crm.counts());
        return;
      case "call": {
        // {method, params}: a change made inside the portal (see portalCall); errors answer 400 with the body.
        try {
          sendJson(res, 200, portal.portalCall(String(input.method ?? ""), (input.params ?? {}) as Params));
        } catch (err) {
          const body = err as { error?: string; error_description?: string };
          if (body.error === undefined) throw err;
          sendJson(res, 400, { error: body.error, error_description: body.error_description });
        }
        return;
      }
      case "faults":
        portal.setFaults(input as Faults);
        sendJson(res, 200, { faults: portal.currentFaults() });
        return;
      case "options":
        portal.setOptions(input as SandboxSwitches);
        sendJson(res, 200, { options: portal.currentOptions() });
        return;
      case "install": {
        const shape = (input.shape ?? "auth") as InstallShape;
        if (typeof input.url !== "string" || !INSTALL_SHAPES.includes(shape)) {
          sendJson(res, 400, {
            error: "INVALID_ARGUMENT",
            error_description: `expected {url, shape: ${INSTALL_SHAPES.join("|")}}`,
          });
          return;
        }
        portal.install(input.url, shape).then(
          (result) => sendJson(res, 200, result),
          (err: unknown) =>
            sendJson(res, 502, {
              error: "INSTALL_FAILED",
              error_description: err instanceof Error ? err.message : String(err),
            }),
        );
        return;
      }
      case "expire-tokens":
        portal.expireTokens();
        sendJson(res, 200, { ok: true });
        return;
      case "revoke-refresh-tokens":
        portal.revokeRefreshTokens();
        sendJson(res, 200, { ok: true });
        return;
      case "reset":
        portal.reset();
        sendJson(res, 200, { ok: true });
        return;
      case "rename":
      case "second-oauth":
      case "spend-budget":
        realPortalControl(portal, action, input, res);
        return;
    }
  }
  sendJson(res, 404, { error: "NOT_FOUND", error_description: `No control action ${method} ${path}` });
}
