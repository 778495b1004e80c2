import { promises as fs, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import should from "should";
import {
  Bitrix24Client,
  type ClientOptions,
  DEFAULT_TIMEOUT_MS,
  type MethodPause,
  type PortalMove,
} from "../../src/core/client/client";
import { oauthServerFromDomain, oauthServerFromEndpoint } from "../../src/core/rest/portal-url";
import { FileTokenStore, fingerprint, tokenStoreKey } from "../../src/core/state/token-store";
import { MethodPauses } from "../../src/core/transport/method-pauses";
import { MAX_REDIRECT_HOPS } from "../../src/core/transport/portal-move";
import { fakeAppClient } from "../kit/clients";
import {
  FakePortal,
  type SeenRequest,
  sendError,
  sendJson,
  sendOperationTimeLimit,
  sendResult,
} from "../kit/fake-portal";
import { rejection } from "../kit/rejection";
import { sleep, until } from "../wait";

/** What a real portal does beyond the method pages (REFERENCE.md "Real portals"), against the core client. */
describe("core/client against what real portals do (renames, OAuth regions, limits)", () => {
  const clients: Bitrix24Client[] = [];
  const servers: FakePortal[] = [];
  let dir: string;

  async function fake(handler: Parameters<typeof FakePortal.start>[0]): Promise<FakePortal> {
    const f = await FakePortal.start(handler);
    servers.push(f);
    return f;
  }

  function webhookClient(url: string, options: Partial<ClientOptions> = {}): Bitrix24Client {
    const c = new Bitrix24Client({
      portalUrl: url,
      auth: { type: "webhook", webhookUrl: `${url}/rest/1/secret/` },
      rateLimit: false,
      retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 },
      ...options,
    });
    clients.push(c);
    return c;
  }

  function oauthClient(
    url: string,
    auth: Partial<Extract<ClientOptions["auth"], { type: "oauth" }>> = {},
    options: Partial<ClientOptions> = {},
  ): Bitrix24Client {
    const c = fakeAppClient(url, dir, auth, options);
    clients.push(c);
    return c;
  }

  /** A token answer as oauth.bitrix.info gives one, naming `server` as the portal's OAuth server. */
  function tokenAnswer(n: number, server: string): Record<string, unknown> {
    return {
      access_token: `access-${n}`,
      refresh_token: `refresh-${n}`,
      expires_in: 3600,
      server_endpoint: `${server}/rest/`,
      client_endpoint: "https://example.bitrix24.com/rest/",
    };
  }

  const redirectTo =
    (target: () => string, status = 302) =>
    (req: SeenRequest, res: import("node:http").ServerResponse) => {
      res.writeHead(status, { Location: `${target()}${req.path}`, "Content-Length": 0 });
      res.end();
    };

  beforeEach(async () => {
    dir = await fs.mkdtemp(join(tmpdir(), "b24-real-"));
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close();
    for (const s of servers.splice(0)) await s.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("the default request timeout is above the portal's own 60 s cut-off", () => {
    should(DEFAULT_TIMEOUT_MS).be.above(60_000);
  });

  it("names itself in a User-Agent on REST and OAuth requests", async () => {
    const portal = await fake((req, res) => {
      if (req.path === "/oauth/token/") sendJson(res, 200, tokenAnswer(1, portal.url));
      else sendResult(res, true);
    });
    await oauthClient(portal.url, { accessToken: undefined }).call("event.get");
    should(portal.requests).have.length(2);
    for (const req of portal.requests) {
      should(req.headers["user-agent"]).match(/^node-red-contrib-bitrix24-offline-events\/\d+\.\d+\.\d+ /);
    }
  });

  describe("a renamed portal (301/302/307/308)", () => {
    for (const status of [301, 302, 307, 308]) {
      it(`${status}: the same POST is repeated at the new address, which every later call uses`, async () => {
        const renamed = await fake((_req, res) => sendResult(res, "from the new address"));
        const old = await fake(redirectTo(() => renamed.url, status));
        const c = webhookClient(old.url);
        const moves: PortalMove[] = [];
        c.on("portal-moved", (m: PortalMove) => moves.push(m));
        const answer = await c.call<string>("crm.lead.add", { fields: { TITLE: "x" } });
        should(answer.result).equal("from the new address");
        await c.call("crm.lead.list");
        await c.call("crm.lead.list");
        should(old.requests).have.length(1);
        should(renamed.requests.map((r) => [r.httpMethod, r.path])).eql([
          ["POST", "/rest/1/secret/crm.lead.add.json"],
          ["POST", "/rest/1/secret/crm.lead.list.json"],
          ["POST", "/rest/1/secret/crm.lead.list.json"],
        ]);
        should(renamed.requests[0].body).eql({ fields: { TITLE: "x" } });
        should(moves).eql([{ from: old.url, to: renamed.url, status }]);
        should(c.currentPortalUrl).equal(renamed.url);
      });
    }

    it("a redirected clear=1 get did not run: its events arrive, no EVENTS_MAY_BE_LOST", async () => {
      const renamed = await fake((_req, res) => sendResult(res, { process_id: "", events: [{ ID: "1" }] }));
      const old = await fake(redirectTo(() => renamed.url));
      const c = webhookClient(old.url, { retry: { maxAttempts: 1 } });
      const answer = await c.call<{ events: unknown[] }>("event.offline.get", { clear: 1 });
      should(answer.result.events).have.length(1);
      should(old.requests).have.length(1);
      should(renamed.requests).have.length(1);
    });

    it("OAuth: the new address is kept beside the tokens; a restarted client goes there at once", async () => {
      const renamed = await fake((req, res) => {
        should(req.body.auth).equal("access-0");
        sendResult(res, true);
      });
      const old = await fake(redirectTo(() => renamed.url));
      await oauthClient(old.url).call("event.get");
      const file = join(dir, `${tokenStoreKey(new URL(old.url).host, "app.1")}.tokens.json`);
      // The move is written in the background, under the token file's lock: wait for it (a fixed 50 ms pause was
      // too short once in a CI run on the busy machine).
      const storedEndpoint = async () =>
        (JSON.parse(await fs.readFile(file, "utf8").catch(() => "{}")) as Record<string, unknown>).clientEndpoint;
      await until(async () => (await storedEndpoint()) !== undefined, 5000, "the adopted address in the token file");
      should(await storedEndpoint()).equal(`${renamed.url}/rest/`);
      const restarted = oauthClient(old.url);
      await restarted.call("event.get");
      should(old.requests).have.length(1);
      should(renamed.requests).have.length(2);
      should(restarted.currentPortalUrl).equal(renamed.url);
    });

    it("close() resolves only once the background write of the new address ended: nothing is written after it", async () => {
      // Found behind ENOTEMPTY in a node test's clean-up: Test connection's client followed a rename, saved the new
      // address in the background and was closed without waiting, so the write landed in a folder being removed.
      const renamed = await fake((_req, res) => sendResult(res, true));
      const old = await fake(redirectTo(() => renamed.url));
      // Saves that take a while, so the background write is surely still running when close() is called.
      class SlowStore extends FileTokenStore {
        override async save(key: string, t: Parameters<FileTokenStore["save"]>[1]): Promise<void> {
          await sleep(150);
          return super.save(key, t);
        }
      }
      const c = oauthClient(old.url, {}, { tokenStore: new SlowStore(dir) });
      await c.call("event.get");
      // The write holds the token file's lock (it has started: close() must let it finish, not cut it off).
      await until(() => readdirSync(dir).some((f) => f.endsWith(".lock")), 2000, "the lock of the background write");
      await c.close();
      const files = (await fs.readdir(dir)).sort();
      should(files.filter((f) => !f.endsWith(".tokens.json"))).eql([]); // no lock file, no half-written file
      const file = join(dir, `${tokenStoreKey(new URL(old.url).host, "app.1")}.tokens.json`);
      const stored = JSON.parse(await fs.readFile(file, "utf8")) as Record<string, unknown>;
      should(stored.clientEndpoint).equal(`${renamed.url}/rest/`);
      await sleep(300);
      should((await fs.readdir(dir)).sort()).eql(files);
      should(JSON.parse(await fs.readFile(file, "utf8"))).eql(stored);
    });

    it("refuses a redirect to plain http on a public host, to a web page, and a loop; none counts as 'may have run'", async () => {
      const toHttp = await fake((_req, res) => {
        res.writeHead(302, { Location: "http://example.com/rest/event.offline.get.json" });
        res.end();
      });
      let err = await rejection(webhookClient(toHttp.url).call("event.offline.get", { clear: 1 }));
      should(err).match({ code: "REDIRECT_REFUSED", status: 302, retryable: false });
      should(err.description).match(/http:\/\/example\.com/);
      should(toHttp.requests).have.length(1);

      const toPage = await fake((_req, res) => {
        res.writeHead(301, { Location: "https://www.bitrix24.com/closed/" });
        res.end();
      });
      err = await rejection(webhookClient(toPage.url).call("event.offline.get", { clear: 1 }));
      should(err.code).equal("REDIRECT_REFUSED");
      should(err.description).match(/not to its REST API/);

      const loop = await fake(redirectTo(() => loop.url, 307));
      err = await rejection(webhookClient(loop.url).call("event.offline.get", { clear: 1 }));
      should(err.code).equal("REDIRECT_REFUSED");
      should(loop.requests).have.length(MAX_REDIRECT_HOPS + 1); // the first request, then the hops followed
    });
  });

  describe("the portal's own OAuth server", () => {
    it("refreshes where server_endpoint says, and remembers it beside the tokens across a restart", async () => {
      let issued = 0;
      let expireOnce = false;
      const east = await fake((req, res) => {
        should(req.query.get("refresh_token")).equal(`refresh-${issued}`);
        sendJson(res, 200, tokenAnswer(++issued, east.url));
      });
      const firstGuess = await fake((_req, res) => sendJson(res, 200, tokenAnswer(++issued, east.url)));
      const portal = await fake((req, res) => {
        if (!expireOnce && req.body.auth === `access-${issued}`) sendResult(res, true);
        else sendError(res, 401, "expired_token");
        expireOnce = false;
      });
      const c = oauthClient(portal.url, { oauthServer: firstGuess.url, accessToken: undefined });
      await c.call("event.get"); // no access token yet: refresh at the first guess, whose answer names east
      should(c.tokens?.serverEndpoint).equal(`${east.url}/rest/`);
      expireOnce = true;
      await c.call("event.get");
      should([firstGuess.requests.length, east.requests.length]).eql([1, 1]);
      const file = join(dir, `${tokenStoreKey(new URL(portal.url).host, "app.1")}.tokens.json`);
      const stored = JSON.parse(await fs.readFile(file, "utf8")) as Record<string, unknown>;
      should(stored.serverEndpoint).equal(`${east.url}/rest/`);

      const restarted = oauthClient(portal.url, { oauthServer: firstGuess.url, accessToken: undefined });
      expireOnce = true;
      await restarted.call("event.get");
      should([firstGuess.requests.length, east.requests.length]).eql([1, 2]);
    });

    it("a server_endpoint handed over with the credentials beats the configured guess", async () => {
      const east = await fake((_req, res) => sendJson(res, 200, tokenAnswer(1, east.url)));
      const firstGuess = await fake((_req, res) => sendError(res, 400, "invalid_grant"));
      const portal = await fake((_req, res) => sendResult(res, true));
      const c = oauthClient(portal.url, {
        oauthServer: firstGuess.url,
        serverEndpoint: `${east.url}/rest/`,
        accessToken: undefined,
      });
      await c.call("event.get");
      should(east.requests).have.length(1);
      should(firstGuess.requests).have.length(0);
    });

    it("ignores a server_endpoint it would not send the secret to (plain http on a public host)", () => {
      should(oauthServerFromEndpoint("http://oauth.example.com/rest/")).be.undefined();
      should(oauthServerFromEndpoint("https://oauth.bitrix24.tech/rest/")).equal("https://oauth.bitrix24.tech");
      should(oauthServerFromEndpoint(42)).be.undefined();
      should(oauthServerFromDomain("oauth.bitrix.info")).equal("https://oauth.bitrix.info");
      should(oauthServerFromDomain("127.0.0.1:8080")).equal("http://127.0.0.1:8080");
      should(oauthServerFromDomain("evil.example/path?x")).be.undefined();
    });

    it("an old token file without the endpoint fields still loads", async () => {
      const portal = await fake((req, res) => {
        if (req.path === "/oauth/token/") sendJson(res, 200, tokenAnswer(9, portal.url));
        else if (req.body.auth === "access-stored") sendResult(res, true);
        else sendError(res, 401, "invalid_token");
      });
      const store = new FileTokenStore(dir);
      const key = tokenStoreKey(new URL(portal.url).host, "app.1");
      await fs.writeFile(
        store.fileFor(key),
        JSON.stringify({
          accessToken: "access-stored",
          refreshToken: "refresh-stored",
          expiresAt: Date.now() + 3_600_000,
          deployedFingerprint: fingerprint("refresh-0"),
          updatedAt: 1,
        }),
      );
      await oauthClient(portal.url).call("event.get");
      should(portal.requests.map((r) => r.path)).eql(["/rest/event.get.json"]);
    });
  });

  describe("limits and error codes as real portals send them", () => {
    it("NO_AUTH_FOUND on an OAuth call refreshes once and resends; a second one is reported", async () => {
      let issued = 0;
      const portal = await fake((req, res) => {
        if (req.path === "/oauth/token/") sendJson(res, 200, tokenAnswer(++issued, portal.url));
        else if (req.body.auth === "access-1") sendResult(res, true);
        else sendError(res, 401, "NO_AUTH_FOUND", "Wrong authorization data");
      });
      const c = oauthClient(portal.url);
      should((await c.call<boolean>("event.get")).result).be.true();
      should(portal.requests.map((r) => r.path)).eql(["/rest/event.get.json", "/oauth/token/", "/rest/event.get.json"]);
      portal.handler = (req, res) => {
        if (req.path === "/oauth/token/") sendJson(res, 200, tokenAnswer(++issued, portal.url));
        else sendError(res, 401, "NO_AUTH_FOUND", "Wrong authorization data");
      };
      const err = await rejection(c.call("event.get"));
      should(err.code).equal("NO_AUTH_FOUND");
      should(portal.requests.filter((r) => r.path === "/oauth/token/")).have.length(2);
    });

    it("OVERLOAD_LIMIT is not retried and says the block is Bitrix24 support's; a clear=1 get was not run", async () => {
      const portal = await fake((_req, res) =>
        sendError(res, 503, "OVERLOAD_LIMIT", "REST API is blocked due to overload."),
      );
      const err = await rejection(webhookClient(portal.url).call("event.offline.get", { clear: 1 }));
      should(err).match({ code: "OVERLOAD_LIMIT", status: 503, retryable: false });
      should(err.description).startWith("Blocked by Bitrix24 support");
      should(err.description).endWith("REST API is blocked due to overload.");
      should(portal.requests).have.length(1);
    });

    it("OPERATION_TIME_LIMIT pauses that method until operating_reset_at; other methods keep going", async () => {
      let resetAt = 0;
      let refusals = 1;
      const portal = await fake((req, res) => {
        if (req.restMethod === "event.offline.get" && refusals-- > 0) {
          resetAt = Date.now() + 400;
          sendOperationTimeLimit(res, 480.1, resetAt);
        } else sendResult(res, req.restMethod);
      });
      const c = webhookClient(portal.url, { retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 } });
      const pauses: MethodPause[] = [];
      c.on("method-paused", (p: MethodPause) => pauses.push(p));
      const get = c.call("event.offline.get", { clear: 0 });
      await new Promise((r) => setTimeout(r, 100));
      // Paused: a second get waits too (no request), while list answers at once.
      const secondGet = c.call("event.offline.get", { clear: 0 });
      const listStarted = Date.now();
      should((await c.call("event.offline.list")).result).equal("event.offline.list");
      should(Date.now() - listStarted).be.below(200);
      should(portal.rest("event.offline.get")).have.length(1);
      await Promise.all([get, secondGet]);
      const gets = portal.rest("event.offline.get");
      should(gets).have.length(3);
      should(pauses).have.length(1);
      should(pauses[0].method).equal("event.offline.get");
      should(Math.abs(pauses[0].until - resetAt)).be.below(2);
      // Every get after the refusal went out at the reset time, not before.
      const refusedAt = gets[0].at;
      for (const later of gets.slice(1)) should(later.at - refusedAt).be.aboveOrEqual(250);
    });

    it("a call that gives up on OPERATION_TIME_LIMIT leaves the pause: the next call waits instead of asking again", async () => {
      let resetAt = 0;
      let refusals = 1;
      const portal = await fake((req, res) => {
        if (refusals-- > 0) {
          resetAt = Date.now() + 300;
          sendOperationTimeLimit(res, 480, resetAt);
        } else sendResult(res, req.restMethod);
      });
      const c = webhookClient(portal.url, { retry: { maxAttempts: 1 } });
      const err = await rejection(c.call("event.offline.get", { clear: 0 }));
      should(err.code).equal("OPERATION_TIME_LIMIT");
      await c.call("event.offline.get", { clear: 0 });
      should(portal.requests).have.length(2);
      should(portal.requests[1].at - portal.requests[0].at).be.aboveOrEqual(250);
    });

    it("MethodPauses: the reset time of the error in full, else the method's last answer or a minute, capped", () => {
      const pauses = new MethodPauses();
      should(pauses.pause("event.offline.get", 500_000, 30_000, 1_000)).equal(500_000);
      should(pauses.waitFor("EVENT.OFFLINE.GET", 2_000)).equal(498_000);
      should(pauses.waitFor("event.offline.list", 2_000)).equal(0);
      should(pauses.waitFor("event.offline.get", 500_000)).equal(0);
      pauses.noteReset("crm.deal.list", 9_000);
      should(pauses.pause("crm.deal.list", undefined, 30_000, 1_000)).equal(9_000);
      should(pauses.pause("crm.lead.list", undefined, 120_000, 1_000)).equal(61_000);
      // A guess (last answer's reset ten minutes out, or none) waits at most the cap.
      pauses.noteReset("crm.item.list", 600_000);
      should(pauses.pause("crm.item.list", undefined, 30_000, 1_000)).equal(31_000);
      should(pauses.pause("crm.contact.list", undefined, 30_000, 1_000)).equal(31_000);
      // A reset in the past (clock skew) is no reset time.
      should(pauses.pause("crm.company.list", 500, 30_000, 1_000)).equal(31_000);
    });

    for (const [status, code] of [
      [401, "invalid_client"],
      [200, "PAYMENT_REQUIRED"],
      [400, "invalid_grant"],
      [403, "unauthorized_client"],
    ] as const) {
      it(`an OAuth refusal a retry cannot fix (${status} ${code}) is remembered: no second token request`, async () => {
        const portal = await fake((req, res) => {
          if (req.path === "/oauth/token/") sendError(res, status, code, `refused: ${code}`);
          else sendError(res, 401, "expired_token");
        });
        const c = oauthClient(portal.url, { accessToken: undefined });
        const first = await rejection(c.call("event.get"));
        should(first).match({ code, retryable: false });
        const second = await rejection(c.call("event.get"));
        should(second.code).equal(code);
        should(second).not.equal(first);
        should(portal.requests.filter((r) => r.path === "/oauth/token/")).have.length(1);
      });
    }

    it("an OAuth server's 5xx is not remembered: the next call asks again", async () => {
      const portal = await fake((req, res) => {
        if (req.path === "/oauth/token/") sendError(res, 502, "bad_gateway");
        else sendResult(res, true);
      });
      const c = oauthClient(portal.url, { accessToken: undefined }, { retry: { maxAttempts: 1 } });
      await rejection(c.call("event.get"));
      await rejection(c.call("event.get"));
      should(portal.requests.filter((r) => r.path === "/oauth/token/")).have.length(2);
    });
  });
});
