import { Bitrix24Client, type ClientOptions, type OAuthAuth } from "../../src/core/client/client";
import type { RetryPolicy } from "../../src/core/transport/backoff";
import { FakePortal, type Handler, sendResult } from "../kit/fake-portal";

/** Core tests against a fake portal: the portal per test, and webhook clients on it that close after each test. */

/**
 * A fake portal started before each test (answering `true` unless told otherwise) and closed after it; `take`
 * receives each test's portal.
 */
export function fakePortalPerTest(
  take: (portal: FakePortal) => void,
  handler: Handler = (_req, res) => sendResult(res, true),
): void {
  let portal: FakePortal | undefined;
  beforeEach(async () => {
    portal = await FakePortal.start(handler);
    take(portal);
  });
  afterEach(async () => {
    await portal?.close();
    portal = undefined;
  });
}

/**
 * Makes webhook clients on the portal at `url()`, without a rate limit and with short retry delays; each is
 * closed after the test (mocha runs this hook before those registered later, so before the portal closes).
 */
export function webhookClientsPerTest(
  url: () => string,
  retry: Partial<RetryPolicy> = {},
): (options?: Partial<ClientOptions>) => Bitrix24Client {
  const clients: Bitrix24Client[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close();
  });
  return (options = {}) => {
    const c = new Bitrix24Client({
      portalUrl: url(),
      auth: { type: "webhook", webhookUrl: `${url()}/rest/1/secret/` },
      rateLimit: false,
      retry: { maxAttempts: 2, baseDelayMs: 1, maxDelayMs: 2, ...retry },
      ...options,
    });
    clients.push(c);
    return c;
  };
}

/** The OAuth application of the fake-portal tests ("app.1" with its start tokens); `over` wins. */
export function fakeAppAuth(oauthServer: string, over: Partial<OAuthAuth> = {}): OAuthAuth {
  return {
    type: "oauth",
    clientId: "app.1",
    clientSecret: "secret",
    accessToken: "access-0",
    refreshToken: "refresh-0",
    oauthServer,
    ...over,
  };
}
