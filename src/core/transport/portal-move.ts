import { Bitrix24Error } from "../rest/errors";
import { validatePortalUrl } from "../rest/portal-url";

/** Redirects followed for one call: a rename is one hop; more than a few is a loop or somebody else's site. */
export const MAX_REDIRECT_HOPS = 5;

/**
 * Where a renamed portal's redirect points, as the new origin for every later call; or a REDIRECT_REFUSED error
 * when it points somewhere the access token must not go: not https (except loopback, like the portal URL
 * itself), not a REST path (a closed portal redirecting to a web page is not a move), or one hop too many.
 * The error shows only scheme and host: a webhook's path is a secret.
 */
export function movedOrigin(location: string, status: number, method: string, hops: number): string {
  const refuse = (why: string) =>
    new Bitrix24Error({
      code: "REDIRECT_REFUSED",
      status,
      method,
      retryable: false,
      description: `the portal answered ${status} (moved) ${why}; the call was not run. Check the portal URL`,
    });
  if (hops > MAX_REDIRECT_HOPS) throw refuse(`more than ${MAX_REDIRECT_HOPS} times in a row`);
  const target = new URL(location);
  const shown = `${target.protocol}//${target.host}`;
  if (!target.pathname.startsWith("/rest/")) throw refuse(`to ${shown}, but not to its REST API`);
  try {
    return validatePortalUrl(target.origin);
  } catch (err) {
    throw refuse(`to ${shown}: ${err instanceof Bitrix24Error ? err.description : String(err)}`);
  }
}
