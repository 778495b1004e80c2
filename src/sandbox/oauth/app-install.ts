import { encodePhpQuery } from "../php/php-params";
import { portalFormPost } from "../server/form-post";
import { randomToken } from "./token-store";

/**
 * The installation POST a portal sends to a local application's "Path for initial installation" when its form is
 * saved (REFERENCE.md, "Real portals"), in either shape, form-encoded as a portal sends it:
 * - `auth`: `event=ONAPPINSTALL`, `data[...]`, `ts` and the `auth[...]` block (an application that uses the API
 *   only; what CRest's installApp stores);
 * - `placement`: an application with a UI is opened at that path with `DOMAIN`, `PROTOCOL`, `LANG` and `APP_SID`
 *   in the query string and `AUTH_ID`, `AUTH_EXPIRES`, `REFRESH_ID`, `SERVER_ENDPOINT`, `member_id`, `status`,
 *   `PLACEMENT=DEFAULT` and `APPLICATION_TOKEN` in the body (the current docs' example; `APP_SID` there is a
 *   per-render session id, which CRest, written earlier, takes for the application token).
 */
export type InstallShape = "auth" | "placement";

export const INSTALL_SHAPES: readonly InstallShape[] = ["auth", "placement"];

/** The answer of the installation endpoint, as received. */
export interface InstallResult {
  url: string;
  shape: InstallShape;
  status: number;
  body: string;
}

/** The `auth` block of the sandbox's events: a freshly issued pair and the application token. */
export type InstallAuth = Record<string, string | number>;

const ANSWER_LIMIT = 4096;

export function installationRequest(
  target: URL,
  shape: InstallShape,
  auth: InstallAuth,
  nowMs: number,
): { url: URL; body: string } {
  const url = new URL(target.href);
  if (shape === "auth") {
    const body = encodePhpQuery({
      event: "ONAPPINSTALL",
      data: { VERSION: "1", ACTIVE: "Y", INSTALLED: "Y", LANGUAGE_ID: "en" },
      ts: String(Math.floor(nowMs / 1000)),
      auth,
    });
    return { url, body };
  }
  const domain = String(auth.domain);
  const secure = String(auth.client_endpoint).startsWith("https:");
  url.searchParams.set("DOMAIN", domain);
  url.searchParams.set("PROTOCOL", secure ? "1" : "0");
  url.searchParams.set("LANG", "en");
  url.searchParams.set("APP_SID", randomToken());
  const body = encodePhpQuery({
    AUTH_ID: String(auth.access_token),
    AUTH_EXPIRES: String(auth.expires_in),
    REFRESH_ID: String(auth.refresh_token),
    SERVER_ENDPOINT: String(auth.server_endpoint),
    member_id: String(auth.member_id),
    status: String(auth.status),
    PLACEMENT: "DEFAULT",
    PLACEMENT_OPTIONS: "{}",
    APPLICATION_TOKEN: String(auth.application_token),
  });
  return { url, body };
}

/** Sends the installation and resolves with the endpoint's answer; rejects only when no answer came. */
export function sendInstallation(
  target: string,
  shape: InstallShape,
  auth: InstallAuth,
  timeoutMs = 10_000,
): Promise<InstallResult> {
  let parsed: URL;
  try {
    parsed = new URL(target);
  } catch {
    return Promise.reject(new Error(`not a URL: ${target}`));
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    return Promise.reject(new Error(`not an http(s) URL: ${target}`));
  }
  const { url, body } = installationRequest(parsed, shape, auth, Date.now());
  return new Promise((resolve, reject) => {
    const req = portalFormPost(url, body, timeoutMs);
    req.on("response", (res) => {
      let answer = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        if (answer.length < ANSWER_LIMIT) answer += chunk;
      });
      res.on("end", () =>
        resolve({ url: target, shape, status: res.statusCode ?? 0, body: answer.slice(0, ANSWER_LIMIT) }),
      );
    });
    req.on("error", reject);
    req.end(body);
  });
}
