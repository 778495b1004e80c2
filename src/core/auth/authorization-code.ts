import { randomBytes } from "node:crypto";
import axios from "axios";
import type { TokenSet } from "../state/token-store";
import { describeTransportFailure } from "../transport/rest-transport";
import { USER_AGENT } from "../transport/user-agent";
import { parseTokenAnswer } from "./oauth-session";

const TOKEN_METHOD = "oauth/token";

/** The first step of the OAuth authorization-code flow: where to send the user's browser. */
export function authorizeUrl(portalUrl: string, clientId: string, state: string, redirectUri: string): string {
  const query = new URLSearchParams({ client_id: clientId, state, redirect_uri: redirectUri, response_type: "code" });
  return `${portalUrl}/oauth/authorize/?${query}`;
}

export function newOAuthState(): string {
  return randomBytes(24).toString("hex");
}

/**
 * Second step: trade the one-time code the portal handed the browser for the first token pair. `oauthServer` is
 * the redirect's `server_domain` when it named one (oauthServerFromDomain), else the configured guess; the
 * answer's `server_endpoint` (in the TokenSet) is where later refreshes go.
 */
export async function exchangeAuthorizationCode(options: {
  oauthServer: string;
  clientId: string;
  clientSecret: string;
  code: string;
  timeoutMs?: number;
}): Promise<TokenSet> {
  const answer = await requestToken(
    options.oauthServer,
    {
      grant_type: "authorization_code",
      client_id: options.clientId,
      client_secret: options.clientSecret,
      code: options.code,
    },
    options.timeoutMs,
  );
  return parseTokenAnswer(answer.status, answer.text);
}

/**
 * One GET to `<oauthServer>/oauth/token/` with the given grant, outside any client (no store, no lock): the
 * answer's status and text as they came, for parseTokenAnswer. A transport failure is a Bitrix24Error.
 */
export async function requestToken(
  oauthServer: string,
  params: Record<string, string>,
  timeoutMs = 30000,
): Promise<{ status: number; text: string }> {
  const base = oauthServer.replace(/\/+$/, "");
  const response = await axios
    .get(`${base}/oauth/token/`, {
      params,
      timeout: timeoutMs,
      validateStatus: () => true,
      responseType: "text",
      transformResponse: [(data: unknown) => data],
      // The client secret is in the query: it goes to the named server and nowhere else.
      maxRedirects: 0,
      headers: { "User-Agent": USER_AGENT },
    })
    .catch((err: unknown) => {
      throw describeTransportFailure(err, TOKEN_METHOD, `the OAuth server ${base}`).error;
    });
  return { status: response.status, text: String(response.data ?? "") };
}
