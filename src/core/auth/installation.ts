import { createHash } from "node:crypto";
import { Bitrix24Error } from "../rest/errors";
import { isJsonObject } from "../rest/json-object";
import { isLoopbackHost, validatePortalUrl } from "../rest/portal-url";
import { ReplayGuard } from "../rest/replay-guard";
import type { InstalledApplication, TokenSet, TokenStore } from "../state/token-store";
import { requestToken } from "./authorization-code";
import { parseTokenAnswer } from "./oauth-session";

/**
 * The portal's installation POST to a local application's "Path for initial installation" (REFERENCE.md, "Real
 * portals"): the only place Bitrix24 hands out the application_token. Two shapes arrive: `event=ONAPPINSTALL`
 * with an `auth[...]` block (applications that use the API only), and the `AUTH_ID` / `REFRESH_ID` / `APP_SID` /
 * `DOMAIN` / `PLACEMENT=DEFAULT` fields an application with a UI gets (read the way CRest's installApp reads them).
 *
 * The endpoint is public, so nothing in the body is believed until the OAuth server has vouched for it: the
 * refresh token is spent with OUR client id and secret, which only works for a token issued to our application,
 * and the domain in the answer must be the one the body names. The new pair from that answer is what we keep.
 */

/** The vendor's OAuth servers (the PHP SDK calls them west and east): an installation may send us to these. */
export const KNOWN_OAUTH_SERVERS: readonly string[] = ["https://oauth.bitrix.info", "https://oauth.bitrix24.tech"];

export type InstallationShape = "auth" | "placement";

/** An installation body as read, nothing verified yet. */
export interface InstallationRequest {
  shape: InstallationShape;
  /** host[:port], lower case. */
  domain: string;
  refreshToken: string;
  applicationToken: string;
  memberId: string;
  clientEndpoint: string;
  serverEndpoint: string;
}

/** A refused installation and the HTTP status to answer it with; the message never holds a secret. */
export class InstallationError extends Error {
  constructor(
    readonly status: 400 | 403 | 409 | 429 | 502,
    message: string,
  ) {
    super(message);
    this.name = "InstallationError";
  }
}

const TOKEN_PATTERN = /^[\x21-\x7e]{1,512}$/;
const DOMAIN_PATTERN = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/;

function text(value: unknown): string {
  return typeof value === "string" ? value.trim() : typeof value === "number" ? String(value) : "";
}

function record(value: unknown): Record<string, unknown> | undefined {
  return isJsonObject(value) ? value : undefined;
}

/**
 * Reads either shape from the merged query and body. Throws 400 naming the first field that is missing or
 * malformed (the field, never its value).
 */
export function parseInstallation(body: Record<string, unknown>): InstallationRequest {
  const auth = record(body.auth);
  let fields: Record<string, string>;
  let shape: InstallationShape;
  if (text(body.event).toUpperCase() === "ONAPPINSTALL" && auth) {
    shape = "auth";
    fields = {
      "auth[domain]": text(auth.domain),
      "auth[refresh_token]": text(auth.refresh_token),
      "auth[application_token]": text(auth.application_token),
      "auth[member_id]": text(auth.member_id),
    };
    const domain = fields["auth[domain]"].toLowerCase();
    return finish(shape, fields, {
      domain,
      clientEndpoint: text(auth.client_endpoint) || `https://${domain}/rest/`,
      serverEndpoint: text(auth.server_endpoint),
    });
  }
  if (text(body.PLACEMENT).toUpperCase() === "DEFAULT" || text(body.AUTH_ID)) {
    shape = "placement";
    fields = {
      DOMAIN: text(body.DOMAIN),
      REFRESH_ID: text(body.REFRESH_ID),
      // Newer portals send APPLICATION_TOKEN beside APP_SID; CRest (written before) takes APP_SID.
      APP_SID: text(body.APPLICATION_TOKEN) || text(body.APP_SID),
      member_id: text(body.member_id),
    };
    const domain = fields.DOMAIN.toLowerCase();
    // PROTOCOL is 1 for https; only a loopback test portal says 0.
    const scheme = text(body.PROTOCOL) === "0" ? "http" : "https";
    return finish(shape, fields, {
      domain,
      clientEndpoint: `${scheme}://${domain}/rest/`,
      serverEndpoint: text(body.SERVER_ENDPOINT),
    });
  }
  throw new InstallationError(
    400,
    "not an installation: expected event=ONAPPINSTALL with auth[...], or PLACEMENT=DEFAULT with AUTH_ID/REFRESH_ID",
  );
}

function finish(
  shape: InstallationShape,
  fields: Record<string, string>,
  rest: Pick<InstallationRequest, "domain" | "clientEndpoint" | "serverEndpoint">,
): InstallationRequest {
  const [domainField, refreshField, appTokenField, memberField] = Object.keys(fields);
  for (const [name, value] of Object.entries(fields)) {
    if (!value && name !== memberField) throw new InstallationError(400, `the installation has no ${name}`);
  }
  if (!DOMAIN_PATTERN.test(rest.domain)) throw new InstallationError(400, `${domainField} is not a host name`);
  for (const name of [refreshField, appTokenField]) {
    if (!TOKEN_PATTERN.test(fields[name])) throw new InstallationError(400, `${name} is malformed`);
  }
  return {
    shape,
    ...rest,
    refreshToken: fields[refreshField],
    applicationToken: fields[appTokenField],
    memberId: fields[memberField],
  };
}

/**
 * Where to spend the installation's refresh token. The body names its OAuth server (`server_endpoint`), but a
 * stranger could name one of their own that says yes to anything. So the body is followed only to the vendor's
 * known servers, or to another port of the configured OAuth server's host (https, or a loopback test server);
 * anything else goes to the OAuth server configured in the portal node.
 */
export function tokenServerFor(configured: string, serverEndpoint: string): string {
  const base = configured.replace(/\/+$/, "");
  try {
    const named = new URL(serverEndpoint);
    if (KNOWN_OAUTH_SERVERS.includes(named.origin)) return named.origin;
    const sameHost = named.hostname === new URL(base).hostname;
    if (sameHost && (named.protocol === "https:" || isLoopbackHost(named.hostname))) return named.origin;
  } catch {
    // not a URL: the configured server it is
  }
  return base;
}

/** host[:port] of a `client_endpoint` URL, lower case; undefined when it is not one. */
function portalHostOf(endpoint: string): string | undefined {
  if (!endpoint) return undefined;
  try {
    return new URL(endpoint).host.toLowerCase() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * An answer without `client_endpoint` (none of the vendor's servers sends one, but an on-premise OAuth server
 * might): its `domain` is believed to be the portal only when it is not the OAuth server's own host.
 */
function legacyPortalDomain(fields: Record<string, unknown>, server: string): string | undefined {
  const domain = text(fields.domain).toLowerCase();
  if (!domain) return undefined;
  const serverHosts = [server, ...KNOWN_OAUTH_SERVERS].map((s) => new URL(s).host.toLowerCase());
  return serverHosts.includes(domain) ? undefined : domain;
}

export interface VerifiedInstallation {
  /** The NEW pair from the OAuth server (the posted refresh token is spent). */
  tokens: TokenSet;
  installation: InstalledApplication;
  /** The portal's origin, e.g. https://example.bitrix24.com. */
  portalUrl: string;
}

function answerFields(raw: string): Record<string, unknown> {
  try {
    return record(JSON.parse(raw)) ?? {};
  } catch {
    return {};
  }
}

/**
 * Proves the installation belongs to our application on the portal it names, by spending its refresh token with
 * our client id and secret. Refused (403): the OAuth server does not know that token for our client, or it says
 * the token belongs to another portal. 502: the OAuth server could not be asked.
 */
export async function verifyInstallation(
  request: InstallationRequest,
  options: { clientId: string; clientSecret: string; oauthServer: string; timeoutMs?: number; now?: () => number },
): Promise<VerifiedInstallation> {
  const server = tokenServerFor(options.oauthServer, request.serverEndpoint);
  let answer: { status: number; text: string };
  try {
    answer = await requestToken(
      server,
      {
        grant_type: "refresh_token",
        client_id: options.clientId,
        client_secret: options.clientSecret,
        refresh_token: request.refreshToken,
      },
      options.timeoutMs,
    );
  } catch (err) {
    const code = err instanceof Bitrix24Error ? err.code : String(err);
    throw new InstallationError(502, `${server} could not be asked to verify the installation (${code})`);
  }
  const fields = answerFields(answer.text);
  if (typeof fields.error === "string") {
    // The OAuth server's "no": the token was not issued to our client id, or it was spent already.
    throw new InstallationError(
      403,
      `${server} refused the refresh token for this client id (${fields.error.slice(0, 64)}): not our application, or already used`,
    );
  }
  let tokens: TokenSet;
  try {
    tokens = parseTokenAnswer(answer.status, answer.text);
  } catch (err) {
    const code = err instanceof Bitrix24Error ? err.code : String(err);
    throw new InstallationError(502, `${server} answered the verification with HTTP ${answer.status} (${code})`);
  }
  // Which portal the token belongs to, in the OAuth server's words. Its `domain` is NOT the portal: Bitrix24's
  // OAuth servers put their own host there ("oauth.bitrix.info", every token answer in the OAuth docs and the
  // SDKs' recorded answers); the portal is `client_endpoint`'s host, and `member_id` names it too.
  const confirmedPortal = portalHostOf(text(fields.client_endpoint)) ?? legacyPortalDomain(fields, server);
  const confirmedMember = text(fields.member_id);
  // A token answer that ties the token to no portal proves nothing about the POST's portal.
  if (!confirmedPortal && !(confirmedMember && request.memberId)) {
    throw new InstallationError(403, "the OAuth server's answer does not say which portal the token belongs to");
  }
  if (confirmedPortal && confirmedPortal !== request.domain) {
    throw new InstallationError(
      403,
      `the OAuth server says the token belongs to ${confirmedPortal}, not ${request.domain}`,
    );
  }
  if (confirmedMember && request.memberId && confirmedMember !== request.memberId) {
    throw new InstallationError(403, "the OAuth server says the token belongs to another member_id");
  }
  const clientEndpoint = text(fields.client_endpoint) || request.clientEndpoint;
  let portalUrl: string;
  try {
    portalUrl = validatePortalUrl(new URL(clientEndpoint).origin);
  } catch {
    throw new InstallationError(400, "client_endpoint is not a usable portal URL");
  }
  if (new URL(portalUrl).host !== request.domain) {
    throw new InstallationError(403, `client_endpoint is not on ${request.domain}`);
  }
  // Later refreshes go where this one worked, unless the answer named the portal's OAuth server itself.
  tokens.serverEndpoint ??= `${server}/rest/`;
  return {
    tokens,
    portalUrl,
    installation: {
      applicationToken: request.applicationToken,
      memberId: confirmedMember || request.memberId,
      domain: request.domain,
      clientEndpoint,
      serverEndpoint: text(fields.server_endpoint) || request.serverEndpoint,
      installedAt: (options.now ?? Date.now)(),
    },
  };
}

/**
 * What an installation endpoint checks before it spends anything: a rate cap over all POSTs (a flood is answered
 * 429 without reading further) and the refresh tokens already seen (a replay is answered 409 without asking the
 * OAuth server again). Both in memory: an installation happens once per saved form, so a restart forgetting them
 * costs nothing.
 */
export class InstallGate {
  private readonly arrivals: number[] = [];
  private readonly seen: ReplayGuard;

  constructor(
    private readonly maxPerWindow = 10,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {
    this.seen = new ReplayGuard(24 * 3600_000, 1000, now);
  }

  /** False when this POST is over the cap. */
  admit(): boolean {
    const now = this.now();
    while (this.arrivals.length > 0 && this.arrivals[0] <= now - this.windowMs) this.arrivals.shift();
    if (this.arrivals.length >= this.maxPerWindow) return false;
    this.arrivals.push(now);
    return true;
  }

  /** True when this refresh token came before; records it otherwise. */
  isReplay(refreshToken: string): boolean {
    return this.seen.isReplay(InstallGate.keyOf(refreshToken));
  }

  /** The OAuth server could not be asked: the portal's retry of the same body deserves an answer. */
  forget(refreshToken: string): void {
    this.seen.forget(InstallGate.keyOf(refreshToken));
  }

  private static keyOf(refreshToken: string): string {
    return createHash("sha256").update(refreshToken, "utf8").digest("base64");
  }
}

/**
 * Writes the verified installation where the client keeps its tokens, as a new lineage that wins like a
 * re-authorisation: `deployedFingerprint` is the one of the refresh token deployed now, so on the next start the
 * file (with the installed tokens) wins over the deployed credentials, until new credentials are deployed.
 */
export async function saveInstallation(
  store: TokenStore,
  key: string,
  verified: VerifiedInstallation,
  deployedFingerprint: string,
): Promise<void> {
  await store.withLock(key, () =>
    store.save(key, {
      ...verified.tokens,
      deployedFingerprint,
      updatedAt: verified.installation.installedAt,
      installation: verified.installation,
    }),
  );
}

// The file implementations of the installation's and the adopted portal's persistence live in the state seam.
export { adoptedPortal, rememberAdoptedPortal, storedInstallation } from "../state/file-state";
