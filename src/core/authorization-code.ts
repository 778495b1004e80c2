import { randomBytes } from "node:crypto";
import axios from "axios";
import { Bitrix24Error } from "./errors";

/** The first step of the OAuth authorization-code flow: where to send the user's browser. */
export function authorizeUrl(portalUrl: string, clientId: string, state: string, redirectUri: string): string {
  const query = new URLSearchParams({ client_id: clientId, state, redirect_uri: redirectUri, response_type: "code" });
  return `${portalUrl}/oauth/authorize/?${query}`;
}

export function newOAuthState(): string {
  return randomBytes(24).toString("hex");
}

export interface AuthorizationCodeTokens {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
  domain?: string;
  memberId?: string;
}

/** Second step: trade the one-time code the portal handed the browser for the first token pair. */
export async function exchangeAuthorizationCode(options: {
  oauthServer: string;
  clientId: string;
  clientSecret: string;
  code: string;
  timeoutMs?: number;
}): Promise<AuthorizationCodeTokens> {
  const url = `${options.oauthServer.replace(/\/+$/, "")}/oauth/token/`;
  const response = await axios
    .get(url, {
      params: {
        grant_type: "authorization_code",
        client_id: options.clientId,
        client_secret: options.clientSecret,
        code: options.code,
      },
      timeout: options.timeoutMs ?? 30000,
      validateStatus: () => true,
    })
    .catch((err: unknown) => {
      throw new Bitrix24Error({
        code: "NETWORK_ERROR",
        method: "oauth/token",
        description: `the OAuth server ${options.oauthServer} could not be reached (${(err as Error).message})`,
      });
    });
  const body = response.data as Record<string, unknown> | undefined;
  if (!body || typeof body !== "object" || typeof body.access_token !== "string") {
    const code = typeof body?.error === "string" ? body.error : "MALFORMED_ANSWER";
    const description =
      typeof body?.error_description === "string" ? body.error_description : "the OAuth server issued no access token";
    throw new Bitrix24Error({ code, status: response.status, method: "oauth/token", description, retryable: false });
  }
  return {
    accessToken: body.access_token,
    refreshToken: String(body.refresh_token ?? ""),
    expiresIn: Number(body.expires_in ?? 3600),
    domain: typeof body.domain === "string" ? body.domain : undefined,
    memberId: typeof body.member_id === "string" ? body.member_id : undefined,
  };
}
