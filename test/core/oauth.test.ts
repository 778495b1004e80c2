import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import should from "should";
import { Bitrix24Client, type ClientOptions, type OAuthAuth, type TokenSet } from "../../src/core/client/client";
import { Bitrix24Error } from "../../src/core/rest/errors";
import { FileTokenStore, fingerprint, tokenStoreKey } from "../../src/core/state/token-store";
import { fakeAppAuth } from "../kit/clients";
import { OAuthPortal } from "../kit/fake-portal";

describe("core/client OAuth refresh and token persistence", () => {
  let portal: OAuthPortal;
  let dir: string;
  const clients: Bitrix24Client[] = [];

  function client(
    overrides: Partial<ClientOptions["auth"]> = {},
    options: Partial<ClientOptions> = {},
  ): Bitrix24Client {
    const c = new Bitrix24Client({
      portalUrl: portal.url,
      auth: fakeAppAuth(portal.url, overrides as Partial<OAuthAuth>),
      rateLimit: false,
      retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5 },
      tokenStore: new FileTokenStore(dir),
      ...options,
    });
    clients.push(c);
    return c;
  }

  function storeFile(): string {
    return join(dir, `${tokenStoreKey(new URL(portal.url).host, "app.1")}.tokens.json`);
  }

  beforeEach(async () => {
    dir = await fs.mkdtemp(join(tmpdir(), "b24-oauth-"));
    portal = await OAuthPortal.start({ accessTokens: ["access-0"], refreshTokens: ["refresh-0"], refreshDelayMs: 30 });
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await portal.portal.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("sends the access token as `auth` in the JSON body of POST /rest/<method>.json", async () => {
    const c = client();
    const answer = await c.call<boolean>("event.get", { x: 1 });
    should(answer.result).equal(true);
    const [req] = portal.portal.rest("event.get");
    should(req.httpMethod).equal("POST");
    should(req.path).equal("/rest/event.get.json");
    should(req.body).eql({ x: 1, auth: "access-0" });
  });

  it("100 concurrent calls with an expired token cause exactly one refresh, then each retries once", async () => {
    const c = client();
    const seen: TokenSet[] = [];
    c.on("tokens", (t: TokenSet) => seen.push(t));
    await c.call("event.get");
    portal.expireAccessTokens();
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => c.call<boolean>("event.get", { i })));
    should(results.every((r) => r.result === true)).be.true();
    should(portal.portal.tokenRequests()).have.length(1);
    // 1 warm-up + 100 rejected + 100 retried with the new token.
    should(portal.portal.rest("event.get")).have.length(201);
    should(seen).have.length(1);
    should(seen[0].accessToken).equal("access-1");
    should(seen[0].expiresAt).be.above(Date.now());
  });

  it("a second 401 after a successful refresh is reported, not retried again", async () => {
    const c = client();
    portal.expireAccessTokens();
    portal.refuseEveryToken = true;
    const err = await c.call("event.get").then(
      () => undefined,
      (e: unknown) => e,
    );
    should(err).be.instanceOf(Bitrix24Error);
    should((err as Bitrix24Error).code).equal("expired_token");
    should(portal.portal.tokenRequests()).have.length(1);
    should(portal.portal.rest("event.get")).have.length(2);
  });

  it("persists rotated tokens (0600, atomically) and a new client instance uses them", async () => {
    const first = client();
    portal.expireAccessTokens();
    await first.call("event.get");
    first.close();
    const stat = await fs.stat(storeFile());
    should(stat.mode & 0o777).equal(0o600);
    should((await fs.readdir(dir)).filter((f) => f.endsWith(".tmp"))).be.empty();
    const stored = JSON.parse(await fs.readFile(storeFile(), "utf8"));
    should(stored).match({
      accessToken: "access-1",
      refreshToken: "refresh-1",
      deployedFingerprint: fingerprint("refresh-0"),
    });

    // Same deployed credentials (refresh-0 is spent by now): the file wins.
    const second = client();
    await second.call("event.get");
    should(portal.portal.rest("event.get").at(-1)!.body.auth).equal("access-1");
    should(portal.portal.tokenRequests()).have.length(1);
  });

  it("the file wins for the same deployed refresh token; a redeploy with a new one wins over the file", async () => {
    const first = client();
    portal.expireAccessTokens();
    await first.call("event.get");
    first.close();

    // Re-authorised: new tokens deployed.
    portal.validAccess.add("access-new");
    portal.validRefresh.add("refresh-new");
    const redeployed = client({ accessToken: "access-new", refreshToken: "refresh-new" });
    await redeployed.call("event.get");
    should(portal.portal.rest("event.get").at(-1)!.body.auth).equal("access-new");
    const stored = JSON.parse(await fs.readFile(storeFile(), "utf8"));
    should(stored).match({ refreshToken: "refresh-new", deployedFingerprint: fingerprint("refresh-new") });

    // After a restart with the same (new) deployment, the file still wins once it rotated again.
    portal.expireAccessTokens();
    await redeployed.call("event.get");
    redeployed.close();
    const restarted = client({ accessToken: "access-new", refreshToken: "refresh-new" });
    await restarted.call("event.get");
    should(portal.portal.rest("event.get").at(-1)!.body.auth).equal("access-2");
  });

  it("two clients sharing one store directory refresh only once (the second adopts the file)", async () => {
    const a = client();
    const b = client();
    await Promise.all([a.call("event.get"), b.call("event.get")]);
    portal.expireAccessTokens();
    const tokensOfB: TokenSet[] = [];
    b.on("tokens", (t: TokenSet) => tokensOfB.push(t));
    await Promise.all([a.call("event.get"), b.call("event.get")]);
    should(portal.portal.tokenRequests()).have.length(1);
    should(tokensOfB).have.length(1);
    should(tokensOfB[0].refreshToken).equal("refresh-1");
    // And both keep working with the single rotated pair.
    portal.expireAccessTokens();
    await b.call("event.get");
    await a.call("event.get");
    should(portal.portal.tokenRequests()).have.length(2);
  });

  it("invalid_grant on refresh tells the user to re-authorise and is not retried", async () => {
    portal.validRefresh.clear();
    const c = client();
    portal.expireAccessTokens();
    const err = (await c.call("event.get").catch((e: unknown) => e)) as Bitrix24Error;
    should(err).be.instanceOf(Bitrix24Error);
    should(err.code).equal("invalid_grant");
    should(err.retryable).be.false();
    should(err.description).match(/re-authorise the application/);
    should(portal.portal.tokenRequests()).have.length(1);
    // Later calls fail the same way without asking the OAuth server again with the dead token.
    const again = (await c.call("event.get").catch((e: unknown) => e)) as Bitrix24Error;
    should(again.code).equal("invalid_grant");
    should(portal.portal.tokenRequests()).have.length(1);
  });

  it("without an access token it refreshes before the first call; without a refresh token it says so", async () => {
    const c = client({ accessToken: undefined });
    await c.call("event.get");
    should(portal.portal.tokenRequests()).have.length(1);
    should(portal.portal.rest("event.get")).have.length(1);
    should(portal.portal.rest("event.get")[0].body.auth).equal("access-1");

    const noRefresh = client({ accessToken: "access-1", refreshToken: undefined }, { tokenStore: undefined });
    portal.expireAccessTokens();
    const err = (await noRefresh.call("event.get").catch((e: unknown) => e)) as Bitrix24Error;
    should(err.code).equal("NO_REFRESH_TOKEN");
    should(err.description).match(/re-authorise/);
  });

  it("an unreachable OAuth server is retried with backoff like any network failure", async () => {
    const c = client({ oauthServer: "http://127.0.0.1:1" });
    portal.expireAccessTokens();
    const retries: unknown[] = [];
    c.on("retry", (r: unknown) => retries.push(r));
    const err = (await c.call("event.get").catch((e: unknown) => e)) as Bitrix24Error;
    should(err.code).equal("NETWORK_ERROR");
    should(err.method).equal("oauth/token");
    should(retries).have.length(2);
  });
});
