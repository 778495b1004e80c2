import { isIP } from "node:net";
import { Bitrix24Error } from "./errors";

/**
 * Loopback hosts may use plain http: that is where the sandbox (and a developer's tunnel) runs. Everything else
 * must be https, because the portal refuses http (INVALID_REQUEST) and the access token travels in the body.
 */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1" || host === "0:0:0:0:0:0:0:1";
  return false;
}

function invalid(what: string, description: string): Bitrix24Error {
  return new Bitrix24Error({ code: "INVALID_CONFIG", description: `${what}: ${description}` });
}

/**
 * The URL as an error message may show it: scheme, host and port only. A user name or password, and a webhook's
 * path (`/rest/<user>/<secret>/`), are secrets, and error messages end up in statuses, logs and the editor.
 */
function shown(url: URL): string {
  return `${url.protocol}//${url.host}`;
}

function parseHttpUrl(raw: unknown, what: string): URL {
  const text = typeof raw === "string" ? raw.trim() : "";
  if (!text) throw invalid(what, "it is empty; expected e.g. https://example.bitrix24.com");
  // People paste the bare host from the browser's address bar.
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `https://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw invalid(what, `"${text}" is not a URL; expected e.g. https://example.bitrix24.com`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw invalid(what, `"${shown(url)}" uses ${url.protocol} - only https:// is supported`);
  }
  if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
    throw invalid(
      what,
      `"${shown(url)}" uses http://; Bitrix24 requires https:// (http is allowed only for loopback hosts such as 127.0.0.1 or localhost)`,
    );
  }
  if (url.username || url.password) throw invalid(what, "it must not contain a user name or password");
  return url;
}

/** The portal's origin (scheme, host, port), or a Bitrix24Error INVALID_CONFIG that says what is wrong. */
export function validatePortalUrl(url: string): string {
  return parseHttpUrl(url, "portal URL").origin;
}

/**
 * An inbound webhook base URL (`https://<portal>/rest/<user_id>/<secret>/`), normalised to end with a slash so
 * `<base><method>.json` is the method URL.
 */
export function validateWebhookUrl(url: string): string {
  const parsed = parseHttpUrl(url, "webhook URL");
  const path = parsed.pathname.replace(/\/+$/, "");
  if (!/^\/rest\/\d+\/[^/]+$/.test(path)) {
    throw invalid("webhook URL", "expected https://<portal>/rest/<user id>/<secret>/ as Bitrix24 shows it");
  }
  return `${parsed.origin}${path}/`;
}

/** The OAuth server's base URL without a trailing slash (token URL = `<base>/oauth/token/`). */
export function validateOAuthServerUrl(url: string): string {
  const parsed = parseHttpUrl(url, "OAuth server URL");
  return `${parsed.origin}${parsed.pathname.replace(/\/+$/, "")}`;
}

/**
 * The OAuth server base URL from a token answer's `server_endpoint` (`https://oauth.bitrix.info/rest/`), or
 * undefined when it is absent or not a URL we would send the client secret to (https, or http on loopback).
 */
export function oauthServerFromEndpoint(endpoint: unknown): string | undefined {
  if (typeof endpoint !== "string" || endpoint.trim() === "") return undefined;
  try {
    return validateOAuthServerUrl(endpoint.trim().replace(/\/rest\/?$/, ""));
  } catch {
    return undefined;
  }
}

/**
 * The OAuth server base URL from the authorize redirect's `server_domain` (a bare host such as
 * `oauth.bitrix24.tech`): https, except for a loopback host (the sandbox), which is plain http.
 */
export function oauthServerFromDomain(domain: unknown): string | undefined {
  if (typeof domain !== "string" || !/^[A-Za-z0-9.:[\]-]+$/.test(domain.trim())) return undefined;
  const host = domain.trim();
  let hostname: string;
  try {
    hostname = new URL(`http://${host}`).hostname;
  } catch {
    return undefined;
  }
  return oauthServerFromEndpoint(`${isLoopbackHost(hostname) ? "http" : "https"}://${host}`);
}
