import axios from "axios";
import should from "should";
import { adminPost, helper, nodeRedPerTest } from "../kit/node-red";

interface LoadedPortal {
  client?: { portalHost: string };
  configError?: { code: string; description: string };
  portalHost: string;
  stateDir: string;
}

describe("bitrix24-portal config node", () => {
  const t = nodeRedPerTest();
  const sandbox = t.current;
  beforeEach(() => t.start());

  /** Portal "p" (named, at the default bucket) with the sandbox's credentials, `portal` and `credentials` winning. */
  function load(portal: Record<string, unknown> = {}, credentials: Record<string, string> = {}): Promise<void> {
    return t.load([], [], { portal: { name: "sandbox", rateLimit: 2, rateBurst: 50, ...portal }, credentials });
  }

  it("builds a client for a valid configuration and keeps state in the user directory", async () => {
    await load();
    const portal = helper.getNode("p") as unknown as LoadedPortal;
    should.exist(portal.client);
    should(portal.configError).be.undefined();
    should(portal.portalHost).equal(new URL(sandbox.url).host);
    should(portal.stateDir.startsWith(t.userDir)).be.true();
  });

  it("refuses a plain-http portal that is not on loopback, with a clear reason", async () => {
    await load({ portalUrl: "http://example.com" });
    const portal = helper.getNode("p") as unknown as LoadedPortal;
    should(portal.client).be.undefined();
    should(portal.configError?.code).equal("INVALID_CONFIG");
    should(portal.configError?.description).match(/https/i);
  });

  it("refuses a configuration without client credentials", async () => {
    await load({}, { clientId: "", clientSecret: "" });
    const portal = helper.getNode("p") as unknown as LoadedPortal;
    should(portal.configError?.description).match(/client id and client secret/);
  });

  it("Test connection reports reachability, auth, offline availability, extended mode and queue depth", async () => {
    sandbox.addEvents(7);
    await load();
    const c = sandbox.credentials;
    const res = await adminPost("/bitrix24-portal/test", sandbox.url, {
      oauthServer: sandbox.url,
      // the editor sends placeholders for passwords it did not change: the stored ones must be used
      credentials: {
        clientId: c.clientId,
        clientSecret: "__PWRD__",
        accessToken: "__PWRD__",
        refreshToken: "__PWRD__",
      },
    }).expect(200);
    should(res.body).match({ ok: true, reachable: true, auth: true, offline: true, extended: true, queued: 7 });
  });

  it("Test connection tells a portal without extended mode and a non-administrator token apart", async () => {
    await load();
    sandbox.setOptions({ extendedMode: false });
    const body = { id: "p", portalUrl: sandbox.url, oauthServer: sandbox.url, credentials: {} };
    const noExtended = await helper.request().post("/bitrix24-portal/test").send(body).expect(200);
    should(noExtended.body).match({ ok: true, extended: false });
    sandbox.setOptions({ admin: false });
    const notAdmin = await helper.request().post("/bitrix24-portal/test").send(body).expect(200);
    should(notAdmin.body).match({ ok: false, reachable: true, offline: false, error: { code: "ACCESS_DENIED" } });
  });

  it("Test connection names the failing step for a wrong token and an unreachable portal", async () => {
    await load();
    const wrong = await helper
      .request()
      .post("/bitrix24-portal/test")
      .send({
        portalUrl: sandbox.url,
        oauthServer: sandbox.url,
        credentials: { clientId: "x", clientSecret: "y", accessToken: "not-a-token", refreshToken: "not-a-token" },
      })
      .expect(200);
    should(wrong.body).match({ ok: false, reachable: true, auth: false });
    should.exist(wrong.body.error.code);
    const down = await helper
      .request()
      .post("/bitrix24-portal/test")
      .send({
        portalUrl: "http://127.0.0.1:9",
        credentials: { clientId: "x", clientSecret: "y", accessToken: "a", refreshToken: "r" },
      })
      .expect(200);
    should(down.body).match({ ok: false, reachable: false });
  });

  it("Authorize runs the OAuth code flow and stores working tokens in the node's credentials", async () => {
    await load({}, { accessToken: "", refreshToken: "" });
    const c = sandbox.credentials;
    // The application's handler path (its form) is the callback: the portal redirects there, whatever the
    // authorize URL says (README, "One handler path for Authorize and push").
    sandbox.setOptions({ handlerUrl: "http://127.0.0.1:1880/bitrix24-portal/callback" });
    const start = await adminPost("/bitrix24-portal/authorize", sandbox.url, {
      oauthServer: sandbox.url,
      callbackUrl: "http://127.0.0.1:1880/bitrix24-portal/callback",
      credentials: { clientId: c.clientId, clientSecret: "__PWRD__" },
    }).expect(200);
    const authorizeUrl = new URL(start.body.url);
    should(authorizeUrl.pathname).equal("/oauth/authorize/");
    should(authorizeUrl.searchParams.get("client_id")).equal(c.clientId);
    // the user approves on the portal, which redirects the browser back to the callback with a code
    const consent = await axios.get(start.body.url, { maxRedirects: 0, validateStatus: () => true });
    should(consent.status).equal(302);
    const back = new URL(consent.headers.location as string);
    should(back.searchParams.get("state")).equal(authorizeUrl.searchParams.get("state"));
    const page = await helper.request().get(`/bitrix24-portal/callback${back.search}`).expect(200);
    should(page.text).match(/bitrix24-portal-authorized/);
    const { getCredentials } = (helper as unknown as { _redNodes: { getCredentials(id: string): unknown } })._redNodes;
    const stored = getCredentials("p") as { accessToken: string; refreshToken: string; clientSecret: string };
    should(stored.clientSecret).equal(c.clientSecret);
    const probe = await axios.post(
      `${sandbox.url}/rest/event.offline.list.json`,
      { auth: stored.accessToken },
      { validateStatus: () => true },
    );
    should(probe.status).equal(200);
    // the state is single-use: replaying the redirect is refused
    await helper.request().get(`/bitrix24-portal/callback${back.search}`).expect(403);
  });

  it("refuses a callback with an unknown state without touching credentials", async () => {
    await load();
    const res = await helper.request().get("/bitrix24-portal/callback?code=abc&state=forged").expect(403);
    should(res.text).not.match(/"ok":true/);
  });
});
