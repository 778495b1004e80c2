import type { ServerResponse } from "node:http";
import { sendJson } from "../server/http-io";
import type { SandboxPortal } from "../server/portal";

const REDIRECT_STATUSES = new Set([301, 302, 307, 308]);

/**
 * The control actions for what real portals do beyond the method pages: `rename` {status}, `second-oauth`,
 * `spend-budget` {method, ms}. Split from control-api.ts because rename and second-oauth start listeners.
 */
export function realPortalControl(
  portal: SandboxPortal,
  action: string,
  input: Record<string, unknown>,
  res: ServerResponse,
): void {
  const fail = (err: unknown) => sendJson(res, 500, { error: "INTERNAL_SERVER_ERROR", error_description: String(err) });
  switch (action) {
    case "rename": {
      const status = input.status === undefined ? 302 : Number(input.status);
      if (!REDIRECT_STATUSES.has(status)) {
        sendJson(res, 400, { error: "INVALID_ARGUMENT", error_description: "status must be 301, 302, 307 or 308" });
        return;
      }
      portal.rename(status).then((moved) => sendJson(res, 200, moved), fail);
      return;
    }
    case "second-oauth":
      portal.useSecondOAuthServer().then((url) => sendJson(res, 200, { url }), fail);
      return;
    case "spend-budget": {
      const method = typeof input.method === "string" ? input.method.trim().toLowerCase() : "";
      const ms = Number(input.ms);
      if (!method || !Number.isFinite(ms) || ms < 0) {
        sendJson(res, 400, { error: "INVALID_ARGUMENT", error_description: "expected {method, ms >= 0}" });
        return;
      }
      sendJson(res, 200, { method, resetAt: portal.spendBudget(method, ms) });
      return;
    }
  }
}
