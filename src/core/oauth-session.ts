import type { Agent as HttpAgent } from "node:http";
import type { Agent as HttpsAgent } from "node:https";
import axios from "axios";
import { Bitrix24Error } from "./errors";
import { describeTransportFailure, wireCause } from "./rest-transport";
import { fingerprint, type StoredTokens, type TokenSet, type TokenStore } from "./token-store";

export interface OAuthSessionOptions {
  clientId: string;
  clientSecret: string;
  accessToken?: string;
  refreshToken?: string;
  /** Base URL, validated; the token URL is `${oauthServer}/oauth/token/`. */
  oauthServer: string;
  store?: TokenStore;
  storeKey: string;
  timeoutMs: number;
  signal: AbortSignal;
  agents: { http: HttpAgent; https: HttpsAgent };
  /** After every token change (refresh here, or adoption of another process's rotation). */
  onTokens: (tokens: TokenSet) => void;
  /** After each HTTP request to the OAuth server, for the same counters as REST requests. */
  onRequest: (info: { method: string; status: number; ms: number }) => void;
  /** The refreshed tokens could not be written: the next restart would use a spent refresh token. */
  onStoreError: (err: Bitrix24Error) => void;
}

// Refresh this long before the known expiry, so a call does not set out with a token about to die.
const EXPIRY_MARGIN_MS = 60000;
const TOKEN_METHOD = "oauth/token";

/**
 * The access/refresh token pair of one application on one portal. Refresh tokens are single-use, so every
 * refresh is single-flight in this process and, through the token store's lock and a re-read of the file,
 * across processes: whoever comes second adopts the tokens the first one obtained.
 */
export class OAuthSession {
  private tokens: TokenSet;
  /** Fingerprint written with every save: the deployed refresh token this lineage of tokens started from. */
  private lineage: string;
  private initialised: Promise<void> | undefined;
  private refreshing: Promise<void> | undefined;
  /** The refresh token the OAuth server refused, and how: asking again with it cannot succeed. */
  private refused: { refreshToken: string; error: Bitrix24Error } | undefined;

  constructor(private readonly o: OAuthSessionOptions) {
    this.tokens = { accessToken: o.accessToken ?? "", refreshToken: o.refreshToken ?? "", expiresAt: 0 };
    this.lineage = fingerprint(o.refreshToken);
  }

  get current(): TokenSet {
    return { ...this.tokens };
  }

  /** A token to send now: loads the store on first use and refreshes first when the token is missing/expired. */
  async accessToken(): Promise<string> {
    await this.init();
    if (!this.tokens.accessToken || this.knownExpired()) await this.refresh(this.tokens.accessToken);
    return this.tokens.accessToken;
  }

  /**
   * The portal rejected `failedToken`. Refreshes unless somebody already replaced that token; concurrent
   * callers share one refresh.
   */
  async refresh(failedToken: string): Promise<void> {
    await this.init();
    if (this.refreshing) return this.refreshing;
    if (this.tokens.accessToken && this.tokens.accessToken !== failedToken && !this.knownExpired()) return;
    this.refreshing = this.refreshUnderLock(failedToken).finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /** Takes the store's tokens when they are not ours (written by an installation); see Bitrix24Client.reloadTokens. */
  async reload(): Promise<void> {
    const store = this.o.store;
    if (!store) return;
    await this.init();
    await store.withLock(
      this.o.storeKey,
      async () => {
        const stored = await store.load(this.o.storeKey);
        if (stored?.refreshToken && stored.refreshToken !== this.tokens.refreshToken) this.adopt(stored, true);
      },
      this.o.signal,
    );
  }

  /** The portal refused `token`: the next accessToken() refreshes (unless the token was replaced meanwhile). */
  invalidate(token: string): void {
    if (token && this.tokens.accessToken === token) this.tokens = { ...this.tokens, expiresAt: 1 };
  }

  private knownExpired(): boolean {
    return this.tokens.expiresAt > 0 && Date.now() >= this.tokens.expiresAt - EXPIRY_MARGIN_MS;
  }

  /**
   * The fingerprint rule (DESIGN.md "Scale-out"): a file written from the same deployed refresh token holds the
   * rotated successor of that token, so the file wins; a file from another deployed token predates a
   * re-authorisation, so the deployed credentials win and are written down as the new lineage.
   */
  private init(): Promise<void> {
    this.initialised ??= this.load();
    return this.initialised;
  }

  private async load(): Promise<void> {
    const store = this.o.store;
    if (!store) return;
    const deployedFingerprint = fingerprint(this.o.refreshToken);
    await store
      .withLock(
        this.o.storeKey,
        async () => {
          const stored = await store.load(this.o.storeKey);
          if (stored && stored.deployedFingerprint === deployedFingerprint) {
            this.adopt(stored, false);
            return;
          }
          if (!this.tokens.accessToken && !this.tokens.refreshToken) return;
          await store.save(this.o.storeKey, this.toStored());
        },
        this.o.signal,
      )
      .catch((err: unknown) => {
        // Next call tries again rather than caching the failure forever.
        this.initialised = undefined;
        throw err;
      });
  }

  private adopt(stored: StoredTokens, announce: boolean): void {
    this.tokens = { accessToken: stored.accessToken, refreshToken: stored.refreshToken, expiresAt: stored.expiresAt };
    this.lineage = stored.deployedFingerprint;
    if (announce) this.o.onTokens(this.current);
  }

  private toStored(): StoredTokens {
    return { ...this.tokens, deployedFingerprint: this.lineage, updatedAt: Date.now() };
  }

  private async refreshUnderLock(failedToken: string): Promise<void> {
    const store = this.o.store;
    if (!store) return this.refreshNow();
    await store.withLock(
      this.o.storeKey,
      async () => {
        // Another process (or client) may have spent our refresh token already: its result is in the file.
        const stored = await store.load(this.o.storeKey);
        if (stored?.refreshToken && stored.refreshToken !== this.tokens.refreshToken) {
          this.adopt(stored, true);
          const usable = stored.accessToken && stored.accessToken !== failedToken && !this.knownExpired();
          if (usable) return;
        }
        await this.refreshNow();
      },
      this.o.signal,
    );
  }

  private async refreshNow(): Promise<void> {
    const refreshToken = this.tokens.refreshToken;
    if (!refreshToken) {
      throw new Bitrix24Error({ code: "NO_REFRESH_TOKEN", method: TOKEN_METHOD, retryable: false });
    }
    // A poller must not hammer the OAuth server with a dead token until someone re-authorises. A new error each
    // time: callers that report a failure once per error object (coalesced triggers) must report this one again.
    if (this.refused?.refreshToken === refreshToken) throw new Bitrix24Error(this.refused.error.toJSON());
    let fresh: TokenSet;
    try {
      fresh = await this.requestRefresh(refreshToken);
    } catch (err) {
      if (err instanceof Bitrix24Error && err.code === "invalid_grant") this.refused = { refreshToken, error: err };
      throw err;
    }
    this.tokens = fresh;
    if (this.o.store) {
      try {
        await this.o.store.save(this.o.storeKey, this.toStored());
      } catch (err) {
        const error =
          err instanceof Bitrix24Error
            ? err
            : new Bitrix24Error({ code: "TOKEN_STORE_ERROR", description: String(err) }, { cause: err });
        this.o.onStoreError(error);
      }
    }
    this.o.onTokens(this.current);
  }

  private async requestRefresh(refreshToken: string): Promise<TokenSet> {
    const started = Date.now();
    let status = 0;
    try {
      const response = await axios.get(`${this.o.oauthServer}/oauth/token/`, {
        params: {
          grant_type: "refresh_token",
          client_id: this.o.clientId,
          client_secret: this.o.clientSecret,
          refresh_token: refreshToken,
        },
        timeout: this.o.timeoutMs,
        signal: this.o.signal,
        httpAgent: this.o.agents.http,
        httpsAgent: this.o.agents.https,
        validateStatus: () => true,
        responseType: "text",
        transformResponse: [(data: unknown) => data],
        proxy: false,
      });
      status = response.status;
      return parseTokenAnswer(response.status, String(response.data ?? ""));
    } catch (err) {
      if (err instanceof Bitrix24Error) throw err;
      if (this.o.signal.aborted) {
        throw new Bitrix24Error({ code: "CLOSED", method: TOKEN_METHOD }, { cause: wireCause(err) });
      }
      throw describeTransportFailure(err, TOKEN_METHOD, `the OAuth server ${this.o.oauthServer}`).error;
    } finally {
      this.o.onRequest({ method: TOKEN_METHOD, status, ms: Date.now() - started });
    }
  }
}

export function parseTokenAnswer(status: number, text: string): TokenSet {
  let body: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === "object" && parsed !== null) body = parsed as Record<string, unknown>;
  } catch {
    // handled below
  }
  if (body && typeof body.error === "string") {
    const code = body.error;
    if (code === "invalid_grant") {
      throw new Bitrix24Error({
        code,
        status,
        method: TOKEN_METHOD,
        retryable: false,
        // The action first: a node's status shows only the first ~60 characters.
        description:
          "re-authorise the application (Authorize in the portal's configuration): the refresh token was refused " +
          `(expired, revoked or already used) - ${String(body.error_description ?? "invalid_grant")}`,
      });
    }
    throw new Bitrix24Error({
      code,
      status,
      method: TOKEN_METHOD,
      description: typeof body.error_description === "string" ? body.error_description : undefined,
    });
  }
  if (!body || typeof body.access_token !== "string" || typeof body.refresh_token !== "string") {
    throw new Bitrix24Error({
      code: "MALFORMED_ANSWER",
      status,
      method: TOKEN_METHOD,
      retryable: status >= 500,
      description: `the OAuth server answered HTTP ${status} without access_token/refresh_token: ${text.slice(0, 200)}`,
    });
  }
  const expiresIn = Number(body.expires_in);
  return {
    accessToken: body.access_token,
    refreshToken: body.refresh_token,
    expiresAt: Date.now() + (Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn : 3600) * 1000,
  };
}
