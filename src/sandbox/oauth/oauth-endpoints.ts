import type { ServerResponse } from "node:http";
import type { Params } from "../php/php-params";
import { sendJson } from "../server/http-io";
import type { TokenStore } from "./token-store";

/**
 * The OAuth server part (oauth.bitrix.info on the real cloud; here a port of its own, not the portal's):
 * `/oauth/authorize/` (the portal's page) approves at once and redirects to the application's registered
 * handler path with a code (a real portal shows a consent page first, and ignores any `redirect_uri`),
 * `/oauth/token/` (the OAuth server's) exchanges a code or a refresh token for a new token pair.
 */
export interface OAuthApp {
  clientId: string;
  clientSecret: string;
  /** host[:port] of the portal: `domain` of the authorize redirect and of pushes (NOT of token answers). */
  domain: string;
  /** The application's handler path from its form (local application) or card: where Authorize redirects. */
  handlerUrl: string;
  /** The granted scopes, comma-separated ("crm,task,user"), as the authorize redirect and pushes name them. */
  scopeList: () => string;
  /** The portal's address now (`client_endpoint`); it changes with a rename. */
  url: string;
  memberId: string;
  tokens: TokenStore;
  /** Base URL of the OAuth server answers name (`server_endpoint`, the authorize redirect's `server_domain`). */
  oauthServer: string;
  /** Which OAuth server each refresh token and code belongs to: the other one refuses it, as another region would. */
  refreshServer: Map<string, string>;
}

function param(params: Params, name: string): string {
  const value = params[name];
  return value === undefined || value === null || typeof value === "object" ? "" : String(value);
}

function oauthError(res: ServerResponse, status: number, error: string, description: string): void {
  sendJson(res, status, { error, error_description: description });
}

export function authorize(app: OAuthApp, params: Params, res: ServerResponse): void {
  if (param(params, "client_id") !== app.clientId) {
    oauthError(res, 400, "invalid_client", "Invalid client");
    return;
  }
  const code = app.tokens.newCode();
  app.refreshServer.set(code, app.oauthServer);
  const answer: Record<string, string> = {
    code,
    state: param(params, "state"),
    domain: app.domain,
    member_id: app.memberId,
    scope: app.scopeList(),
    server_domain: new URL(app.oauthServer).host,
  };
  // The portal redirects to the application's registered handler path; `redirect_uri` is not a parameter of
  // Bitrix24's authorize (settings/oauth/index.md): it is ignored, as a portal ignores it.
  if (!app.handlerUrl) {
    // No handler path registered: the portal shows the code on the page (the docs' note on apps without one).
    sendJson(res, 200, answer);
    return;
  }
  const target = new URL(app.handlerUrl);
  for (const [k, v] of Object.entries(answer)) target.searchParams.set(k, v);
  res.writeHead(302, { location: target.toString(), "content-length": 0 });
  res.end();
}

/** `servedBy`: the base URL of the OAuth server the request came to. */
export function token(app: OAuthApp, params: Params, res: ServerResponse, servedBy: string): void {
  const grantType = param(params, "grant_type");
  if (param(params, "client_id") !== app.clientId || param(params, "client_secret") !== app.clientSecret) {
    oauthError(res, 401, "invalid_client", "Invalid client credentials");
    return;
  }
  const grant = grantType === "authorization_code" ? param(params, "code") : param(params, "refresh_token");
  const owner = app.refreshServer.get(grant);
  if (owner !== undefined && owner !== servedBy) {
    oauthError(res, 400, "invalid_grant", `The ${grantType} grant belongs to another OAuth server (${owner})`);
    return;
  }
  app.refreshServer.delete(grant);
  if (grantType === "authorization_code") {
    if (!app.tokens.spendCode(grant)) {
      oauthError(res, 400, "invalid_grant", "Invalid authorization code");
      return;
    }
  } else if (grantType === "refresh_token") {
    if (!app.tokens.spendRefresh(grant)) {
      oauthError(res, 400, "invalid_grant", "Invalid refresh token");
      return;
    }
  } else {
    oauthError(res, 400, "unsupported_grant_type", "Unsupported grant type");
    return;
  }
  const issued = app.tokens.issue();
  sendJson(res, 200, tokenAnswer(app, issued.accessToken, issued.refreshToken, issued.expiresIn));
}

export function tokenAnswer(
  app: OAuthApp,
  accessToken: string,
  refreshToken: string,
  expiresIn: number,
): Record<string, string | number> {
  app.refreshServer.set(refreshToken, app.oauthServer);
  return {
    access_token: accessToken,
    expires: Math.floor(Date.now() / 1000) + expiresIn,
    expires_in: expiresIn,
    scope: "app",
    // Bitrix24's OAuth server names ITSELF here ("oauth.bitrix.info"); the portal is in client_endpoint.
    domain: new URL(app.oauthServer).host,
    server_endpoint: `${app.oauthServer}/rest/`,
    status: "L",
    client_endpoint: `${app.url}/rest/`,
    member_id: app.memberId,
    user_id: 1,
    refresh_token: refreshToken,
  };
}
