import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import axios from "axios";
import helper from "node-red-node-test-helper";
import should from "should";
import { type Sandbox, startSandbox } from "../../src/sandbox";

// The build output, as Node-RED loads it.
const portalNode = require("../../nodes/nodes/bitrix24-portal/bitrix24-portal.js").default;

helper.init(require.resolve("node-red"));

interface LoadedPortal {
  client?: { portalHost: string };
  configError?: { code: string; description: string };
  portalHost: string;
  stateDir: string;
}

describe("bitrix24-portal config node", () => {
  let sandbox: Sandbox;
  let userDir: string;

  beforeEach(async () => {
    sandbox = await startSandbox({ rateLimit: false });
    userDir = mkdtempSync(join(tmpdir(), "b24-portal-"));
    helper.settings({ userDir });
  });

  afterEach(async () => {
    await helper.unload();
    await sandbox.close();
    rmSync(userDir, { recursive: true, force: true });
  });

  function flow(overrides: Record<string, unknown> = {}) {
    return [
      {
        id: "p",
        type: "bitrix24-portal",
        name: "sandbox",
        portalUrl: sandbox.url,
        authType: "oauth",
        oauthServer: sandbox.url,
        rateLimit: 2,
        rateBurst: 50,
        ...overrides,
      },
    ];
  }

  function credentials(overrides: Record<string, string> = {}) {
    const c = sandbox.credentials;
    return {
      p: {
        clientId: c.clientId,
        clientSecret: c.clientSecret,
        accessToken: c.accessToken,
        refreshToken: c.refreshToken,
        applicationToken: c.applicationToken,
        ...overrides,
      },
    };
  }

  it("builds a client for a valid configuration and keeps state in the user directory", async () => {
    await helper.load(portalNode, flow(), credentials());
    const portal = helper.getNode("p") as unknown as LoadedPortal;
    should.exist(portal.client);
    should(portal.configError).be.undefined();
    should(portal.portalHost).equal(new URL(sandbox.url).host);
    should(portal.stateDir.startsWith(userDir)).be.true();
  });

  it("refuses a plain-http portal that is not on loopback, with a clear reason", async () => {
    await helper.load(portalNode, flow({ portalUrl: "http://example.com" }), credentials());
    const portal = helper.getNode("p") as unknown as LoadedPortal;
    should(portal.client).be.undefined();
    should(portal.configError?.code).equal("INVALID_CONFIG");
    should(portal.configError?.description).match(/https/i);
  });

  it("refuses a configuration without client credentials", async () => {
    await helper.load(portalNode, flow(), credentials({ clientId: "", clientSecret: "" }));
    const portal = helper.getNode("p") as unknown as LoadedPortal;
    should(portal.configError?.description).match(/client id and client secret/);
  });

  it("Test connection reports reachability, auth, offline availability, extended mode and queue depth", async () => {
    sandbox.addEvents(7);
    await helper.load(portalNode, flow(), credentials());
    const c = sandbox.credentials;
    const res = await helper
      .request()
      .post("/bitrix24-portal/test")
      .send({
        id: "p",
        portalUrl: sandbox.url,
        oauthServer: sandbox.url,
        // the editor sends placeholders for passwords it did not change: the stored ones must be used
        credentials: {
          clientId: c.clientId,
          clientSecret: "__PWRD__",
          accessToken: "__PWRD__",
          refreshToken: "__PWRD__",
        },
      })
      .expect(200);
    should(res.body).match({ ok: true, reachable: true, auth: true, offline: true, extended: true, queued: 7 });
  });

  it("Test connection tells a portal without extended mode and a non-administrator token apart", async () => {
    await helper.load(portalNode, flow(), credentials());
    sandbox.setOptions({ extendedMode: false });
    const body = { id: "p", portalUrl: sandbox.url, oauthServer: sandbox.url, credentials: {} };
    const noExtended = await helper.request().post("/bitrix24-portal/test").send(body).expect(200);
    should(noExtended.body).match({ ok: true, extended: false });
    sandbox.setOptions({ admin: false });
    const notAdmin = await helper.request().post("/bitrix24-portal/test").send(body).expect(200);
    should(notAdmin.body).match({ ok: false, reachable: true, offline: false, error: { code: "ACCESS_DENIED" } });
  });

  it("Test connection names the failing step for a wrong token and an unreachable portal", async () => {
    await helper.load(portalNode, flow(), credentials());
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
    await helper.load(portalNode, flow(), credentials({ accessToken: "", refreshToken: "" }));
    const c = sandbox.credentials;
    // The application's handler path (its form) is the callback: the portal redirects there, whatever the
    // authorize URL says (README, "One handler path for Authorize and push").
    sandbox.setOptions({ handlerUrl: "http://127.0.0.1:1880/bitrix24-portal/callback" });
    const start = await helper
      .request()
      .post("/bitrix24-portal/authorize")
      .send({
        id: "p",
        portalUrl: sandbox.url,
        oauthServer: sandbox.url,
        callbackUrl: "http://127.0.0.1:1880/bitrix24-portal/callback",
        credentials: { clientId: c.clientId, clientSecret: "__PWRD__" },
      })
      .expect(200);
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
    await helper.load(portalNode, flow(), credentials());
    const res = await helper.request().get("/bitrix24-portal/callback?code=abc&state=forged").expect(403);
    should(res.text).not.match(/"ok":true/);
  });
});
