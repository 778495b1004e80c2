import { OAuthSession, type OAuthSessionOptions } from "../auth/oauth-session";
import { Bitrix24Error } from "../rest/errors";
import { validateOAuthServerUrl, validateWebhookUrl } from "../rest/portal-url";
import { tokenStoreKey } from "../state/token-store";
import { type ClientOptions, DEFAULT_OAUTH_SERVER } from "./client-types";

/**
 * How a client authenticates, from its options: an OAuth session (the token pair, its single-flight refresh, the
 * token file) or an inbound webhook's address. Apart from client.ts because this is configuration checking and
 * wiring, done once when a client is made, while client.ts is the path every call takes.
 */

export interface ClientAuth {
  /** "" for a webhook. */
  clientId: string;
  session?: OAuthSession;
  /** A webhook's path (`/rest/<user>/<secret>/`) and origin; the origin moves with the portal like any other. */
  webhook?: { path: string; origin: string };
}

/** What the session needs of its client: the request limits and agents, and the client's events to report to. */
export type SessionWiring = Pick<
  OAuthSessionOptions,
  "timeoutMs" | "signal" | "agents" | "onTokens" | "onRequest" | "onStoreError"
>;

export function clientAuth(options: ClientOptions, portalHost: string, wiring: SessionWiring): ClientAuth {
  const auth = options.auth;
  if (auth.type === "oauth") {
    const clientId = String(auth.clientId ?? "").trim();
    const clientSecret = String(auth.clientSecret ?? "").trim();
    if (!clientId || !clientSecret) {
      throw new Bitrix24Error({ code: "INVALID_CONFIG", description: "OAuth needs a client id and a client secret" });
    }
    // With a token store the tokens may come later: from another process, or from the portal's installation.
    if (!auth.accessToken && !auth.refreshToken && !options.tokenStore) {
      throw new Bitrix24Error({
        code: "INVALID_CONFIG",
        description: "OAuth needs an access token or a refresh token: authorise the application first",
      });
    }
    const session = new OAuthSession({
      clientId,
      clientSecret,
      accessToken: auth.accessToken,
      refreshToken: auth.refreshToken,
      oauthServer: validateOAuthServerUrl(auth.oauthServer || DEFAULT_OAUTH_SERVER),
      serverEndpoint: auth.serverEndpoint,
      store: options.tokenStore,
      storeKey: tokenStoreKey(portalHost, clientId),
      ...wiring,
    });
    return { clientId, session };
  }
  if (auth.type === "webhook") {
    const webhook = new URL(validateWebhookUrl(auth.webhookUrl));
    return { clientId: "", webhook: { path: webhook.pathname, origin: webhook.origin } };
  }
  throw new Bitrix24Error({ code: "INVALID_CONFIG", description: "auth.type must be oauth or webhook" });
}
