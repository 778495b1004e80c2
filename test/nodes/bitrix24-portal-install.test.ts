import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import axios from "axios";
import helper from "node-red-node-test-helper";
import should from "should";
import type { InstallShape, Sandbox } from "../../src/sandbox";
import { triggerNode } from "../kit/flows.cjs";
import { nodeRedPerTest, nodes } from "../kit/node-red";
import {
  callsOf,
  captureHttpNode,
  GET_DEFAULTS,
  portalConfig,
  type SpiedNode,
  startHttpNodeServer,
  statusesOf,
} from "../reliability/node-rig";

interface LoadedPortal extends SpiedNode {
  client?: { portalUrl: string; tokens?: { accessToken: string; refreshToken: string } };
  configError?: { description: string };
  installation?: { portal: string; portalUrl: string; installedAt: number };
  applicationToken: string;
  stateDir: string;
  credentials: Record<string, string | undefined>;
}

/** A recorded installation POST: what a portal sent, to send again (replays) or to mutate. */
interface Recorded {
  query: string;
  body: string;
}

const INSTALL = "/b24/install";
const PUSH = "/b24/offline";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("bitrix24-portal installation endpoint", function () {
  this.timeout(20000);
  const t = nodeRedPerTest({ httpNodeRoot: "/" });
  let sandbox: Sandbox;
  let nodeServer: { url: string; close(): Promise<void> };
  let serverUrl: string;
  let recorder: Server;
  let recorderUrl: string;
  let recorded: Recorded[] = [];

  before(async () => {
    nodeServer = await startHttpNodeServer();
    serverUrl = nodeServer.url;
    // Stands in for the installation endpoint to capture exactly what the sandbox (the portal) sends.
    recorder = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk: Buffer) => {
        body += chunk.toString();
      });
      req.on("end", () => {
        recorded.push({ query: new URL(req.url ?? "/", "http://x").search, body });
        res.end("recorded");
      });
    });
    await new Promise<void>((r) => recorder.listen(0, "127.0.0.1", r));
    recorderUrl = `http://127.0.0.1:${(recorder.address() as AddressInfo).port}/install`;
  });

  after(async () => {
    await nodeServer.close();
    recorder.closeAllConnections();
    await new Promise<void>((r) => recorder.close(() => r()));
  });

  beforeEach(async () => {
    sandbox = await t.start();
    recorded = [];
  });

  function flow(portal: Record<string, unknown> = {}) {
    return [
      portalConfig(sandbox, { installPath: INSTALL, ...portal }),
      triggerNode({ id: "t", path: PUSH, followUp: 0, minGap: 0, wires: [["pushed"]] }),
      { ...GET_DEFAULTS, id: "g", mode: "auto", allowAtMostOnce: true, wires: [["events"], [], []] },
      { id: "pushed", type: "helper" },
      { id: "events", type: "helper" },
    ];
  }

  /** Only what a user copies from the application card: no tokens, no application token. */
  function cardCredentials(overrides: Record<string, string> = {}) {
    return {
      p: { clientId: sandbox.credentials.clientId, clientSecret: sandbox.credentials.clientSecret, ...overrides },
    };
  }

  async function load(
    portal: Record<string, unknown> = {},
    creds: Record<string, Record<string, string>> = cardCredentials(),
  ) {
    const flows = flow(portal) as Parameters<typeof helper.load>[1];
    await helper.load([nodes.portal, nodes.trigger, nodes.get, captureHttpNode], flows, creds);
    const pushed: unknown[] = [];
    const events: Array<{ payload: { ID: string } }> = [];
    helper.getNode("pushed").on("input", (msg: unknown) => pushed.push(msg));
    helper.getNode("events").on("input", (msg: unknown) => events.push(msg as { payload: { ID: string } }));
    return {
      portal: helper.getNode("p") as unknown as LoadedPortal,
      trigger: helper.getNode("t") as unknown as SpiedNode,
      get: helper.getNode("g") as unknown as SpiedNode,
      pushed,
      events,
    };
  }

  function post(path: string, body: string, query = "") {
    return axios.post(`${serverUrl}${path}${query}`, body, {
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      validateStatus: () => true,
      transformRequest: [(data) => data],
    });
  }

  function pushBody(applicationToken: string): string {
    return new URLSearchParams({
      event: "ONOFFLINEEVENT",
      ts: "1700000000",
      "auth[application_token]": applicationToken,
    }).toString();
  }

  /** What the sandbox sends for this shape, recorded (its refresh token is one the OAuth server accepts). */
  async function recordInstallation(shape: InstallShape): Promise<Recorded> {
    const result = await sandbox.install(recorderUrl, shape);
    should(result.status).equal(200);
    return recorded[recorded.length - 1];
  }

  function tokenFiles(): string[] {
    const dir = join(t.userDir, ".bitrix24-offline-events");
    return existsSync(dir)
      ? readdirSync(dir)
          .filter((f) => f.endsWith(".tokens.json"))
          .map((f) => join(dir, f))
      : [];
  }

  async function until(check: () => boolean, ms = 5000): Promise<void> {
    const end = Date.now() + ms;
    while (!check()) {
      if (Date.now() > end) throw new Error("timed out waiting");
      await sleep(10);
    }
  }

  /** Everything the nodes said, and every msg they sent, as one text: no secret may be in it. */
  function everythingSaid(nodes: SpiedNode[], msgs: unknown[]): string {
    const said = nodes.flatMap((n) => [...n.log.args, ...n.warn.args, ...n.error.args, ...n.status.args]);
    return JSON.stringify([said.map((args) => args.map((a) => (a instanceof Error ? a.message : a))), msgs]);
  }

  function secretsOf(recordedInstall: Recorded): string[] {
    const params = new URLSearchParams(recordedInstall.body);
    return [
      params.get("auth[access_token]"),
      params.get("auth[refresh_token]"),
      params.get("AUTH_ID"),
      params.get("REFRESH_ID"),
      sandbox.credentials.applicationToken,
      sandbox.credentials.clientSecret,
    ].filter((s): s is string => Boolean(s));
  }

  for (const shape of ["auth", "placement"] as const) {
    it(`accepts the ${shape} shape: tokens and application token land in the 0600 token file, pushes are trusted, the get node drains`, async () => {
      const { portal, trigger, get, pushed, events } = await load();
      should(portal.configError).be.undefined();
      should(statusesOf(trigger).at(-1)).match({
        fill: "yellow",
        text: "bitrix24-offline-trigger.status.waitingInstall",
      });
      // Waiting for an installation is not a warning.
      should(callsOf(trigger, "warn")).be.empty();
      should((await post(PUSH, pushBody(sandbox.credentials.applicationToken))).status).equal(401);

      const sent = await recordInstallation(shape);
      const answer = await post(INSTALL, sent.body, sent.query);
      should(answer.status).equal(200, String(answer.data));
      await until(() => portal.installation !== undefined);

      // Stored where the config node keeps its tokens: 0600, with the NEW pair (the posted refresh token is spent).
      const files = tokenFiles();
      should(files).have.length(1);
      should(statSync(files[0]).mode & 0o777).equal(0o600);
      const stored = JSON.parse(readFileSync(files[0], "utf8"));
      const posted = new URLSearchParams(sent.body);
      const postedRefresh = posted.get("auth[refresh_token]") ?? posted.get("REFRESH_ID");
      should(stored.refreshToken).be.a.String().and.not.equal(postedRefresh);
      should(stored.installation).match({
        applicationToken: sandbox.credentials.applicationToken,
        domain: new URL(sandbox.url).host,
        clientEndpoint: `${sandbox.url}/rest/`,
      });
      should(stored.installation.memberId).be.a.String().and.not.be.empty();
      // Never in the node's credentials (flows_cred.json) either.
      should(portal.credentials.accessToken).be.undefined();
      should(portal.credentials.applicationToken).be.undefined();
      should(portal.installation).match({ portal: new URL(sandbox.url).host, portalUrl: sandbox.url });
      should(callsOf(portal, "log").map((a) => String(a[0]))).containEql("bitrix24-portal.install.done");
      should(statusesOf(trigger).at(-1)).match({
        fill: "green",
        text: "bitrix24-offline-trigger.status.installed",
      });

      // The installed application token signs the portal's pushes.
      should((await post(PUSH, pushBody(sandbox.credentials.applicationToken))).status).equal(200);
      await until(() => pushed.length === 1);

      // The installed tokens drive a get node.
      sandbox.addEvents(3);
      get.receive({});
      await until(() => events.length === 3);
      should(events.map((e) => e.payload.ID)).eql(["1", "2", "3"]);
      should(sandbox.stats().queue.total).equal(0);
      should(portal.client?.tokens?.refreshToken).equal(stored.refreshToken);

      const text = everythingSaid([portal, trigger, get], [...pushed, ...events]);
      for (const secret of secretsOf(sent)) should(text).not.containEql(secret);
      should(text).not.containEql(stored.refreshToken);
      should(text).not.containEql(stored.accessToken);
    });
  }

  it("follows the installation to the portal's own OAuth server when that is another port of the configured host", async () => {
    const { portal, get, events } = await load();
    const second = await sandbox.useSecondOAuthServer();
    const sent = await recordInstallation("auth");
    should(new URLSearchParams(sent.body).get("auth[server_endpoint]")).equal(`${second}/rest/`);
    should((await post(INSTALL, sent.body)).status).equal(200);
    await until(() => portal.installation !== undefined);
    const stored = JSON.parse(readFileSync(tokenFiles()[0], "utf8"));
    should(stored.serverEndpoint).equal(`${second}/rest/`);
    // Later refreshes go there too: the first server would refuse this lineage's refresh token.
    sandbox.expireTokens();
    sandbox.addEvents(2);
    get.receive({});
    await until(() => events.length === 2);
  });

  it("takes the installation of a renamed portal (its new host) into the client's own token file", async () => {
    const c = sandbox.credentials;
    const { portal, get, events } = await load(
      {},
      cardCredentials({ accessToken: c.accessToken, refreshToken: c.refreshToken }),
    );
    const moved = await sandbox.rename(302);
    sandbox.addEvents(1);
    get.receive({});
    await until(() => events.length === 1);
    should(portal.client?.portalUrl).equal(moved.from);
    const sent = await recordInstallation("auth");
    should(new URLSearchParams(sent.body).get("auth[domain]")).equal(new URL(moved.to).host);
    should((await post(INSTALL, sent.body)).status).equal(200);
    await until(() => portal.installation !== undefined);
    const files = tokenFiles();
    should(files).have.length(1);
    should(JSON.parse(readFileSync(files[0], "utf8")).installation.domain).equal(new URL(moved.to).host);
    sandbox.addEvents(1);
    get.receive({});
    await until(() => events.length === 2);
  });

  it("the dialog's admin endpoint says where and when it was installed, and nothing secret", async () => {
    const { portal } = await load();
    const before = await helper.request().get("/bitrix24-portal/p/installation").expect(200);
    should(before.body).eql({ deployed: true, installPath: INSTALL, installation: null, refusal: null });
    const sent = await recordInstallation("auth");
    should((await post(INSTALL, sent.body)).status).equal(200);
    await until(() => portal.installation !== undefined);
    const after = await helper.request().get("/bitrix24-portal/p/installation").expect(200);
    should(after.body.installation).match({ portal: new URL(sandbox.url).host, portalUrl: sandbox.url });
    should(after.body.installation.installedAt).be.a.Number();
    for (const secret of secretsOf(sent)) should(JSON.stringify(after.body)).not.containEql(secret);
    const unknown = await helper.request().get("/bitrix24-portal/nope/installation").expect(200);
    should(unknown.body).eql({ deployed: false });
  });

  it("refuses an installation for another portal: 403, nothing stored, one line without secrets", async () => {
    // Same sandbox, but configured under another host name: the POST's domain is not ours.
    const port = new URL(sandbox.url).port;
    const { portal } = await load({ portalUrl: `http://localhost:${port}`, oauthServer: `http://localhost:${port}` });
    const sent = await recordInstallation("auth");
    const answer = await post(INSTALL, sent.body);
    should(answer.status).equal(403);
    should(String(answer.data)).match(/but this node is for localhost/);
    should(tokenFiles()).be.empty();
    should(portal.installation).be.undefined();
    const refusals = callsOf(portal, "warn").filter((a) => String(a[0]) === "bitrix24-portal.install.refused");
    should(refusals).have.length(1);
    const text = everythingSaid([portal], []);
    for (const secret of secretsOf(sent)) should(text).not.containEql(secret);
    // The refresh token was never spent: the OAuth server still accepts it.
    const refresh = new URLSearchParams(sent.body).get("auth[refresh_token]") ?? "";
    const spend = await axios.get(`${sandbox.oauthUrl}/oauth/token/`, {
      params: {
        grant_type: "refresh_token",
        client_id: sandbox.credentials.clientId,
        client_secret: sandbox.credentials.clientSecret,
        refresh_token: refresh,
      },
      validateStatus: () => true,
    });
    should(spend.status).equal(200);
  });

  it("refuses every installation while the configured portal URL is unusable (it does not mean 'none yet')", async () => {
    const { portal } = await load({ portalUrl: "http://portal.example.com" });
    should(portal.client).be.undefined();
    const sent = await recordInstallation("auth");
    const answer = await post(INSTALL, sent.body);
    should(answer.status).equal(403);
    should(String(answer.data)).match(/invalid portal url/i);
    should(tokenFiles()).be.empty();
  });

  it("refuses a refresh token that is not our application's: 403 from the OAuth server's no, nothing stored", async () => {
    const { portal } = await load();
    const sent = await recordInstallation("auth");
    const forged = new URLSearchParams(sent.body);
    forged.set("auth[refresh_token]", "f".repeat(32));
    const answer = await post(INSTALL, forged.toString());
    should(answer.status).equal(403);
    should(String(answer.data)).match(/refused the refresh token for this client id \(invalid_grant\)/);
    should(tokenFiles()).be.empty();
    should(portal.installation).be.undefined();
    should(portal.applicationToken).equal("");
    // The refusal is what the dialog shows.
    const state = await helper.request().get("/bitrix24-portal/p/installation").expect(200);
    should(state.body.refusal).match({ status: 403 });
  });

  it("refuses a real installation when our client secret is not the application's (another app's token)", async () => {
    const { portal } = await load({}, cardCredentials({ clientSecret: "not-the-secret" }));
    const sent = await recordInstallation("placement");
    const answer = await post(INSTALL, sent.body, sent.query);
    should(answer.status).equal(403);
    should(String(answer.data)).match(/invalid_client/);
    should(tokenFiles()).be.empty();
    should(portal.installation).be.undefined();
  });

  it("refuses bodies with missing fields or of another kind with 400 and asks nothing of the OAuth server", async () => {
    const { portal } = await load();
    const sent = await recordInstallation("auth");
    for (const field of ["auth[refresh_token]", "auth[application_token]", "auth[domain]"]) {
      const partial = new URLSearchParams(sent.body);
      partial.delete(field);
      const answer = await post(INSTALL, partial.toString());
      should(answer.status).equal(400);
      should(String(answer.data)).equal(`the installation has no ${field}`);
    }
    should((await post(INSTALL, pushBody("x"))).status).equal(400);
    should(tokenFiles()).be.empty();
    should(portal.installation).be.undefined();
    // None of it spent the real refresh token: the complete body still installs.
    should((await post(INSTALL, sent.body)).status).equal(200);
  });

  it("answers a replay 409 without touching the store, and a flood 429", async () => {
    const { portal } = await load();
    const sent = await recordInstallation("auth");
    should((await post(INSTALL, sent.body)).status).equal(200);
    await until(() => portal.installation !== undefined);
    const [file] = tokenFiles();
    const before = readFileSync(file, "utf8");
    const mtime = statSync(file).mtimeMs;
    const replay = await post(INSTALL, sent.body);
    should(replay.status).equal(409);
    should(readFileSync(file, "utf8")).equal(before);
    should(statSync(file).mtimeMs).equal(mtime);

    // A flood: the cap (10 a minute, counting the two above) answers 429 without reading further.
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await post(INSTALL, sent.body)).status);
    should(statuses.slice(0, 8)).eql(Array(8).fill(409));
    should(statuses.slice(8)).eql(Array(4).fill(429));
    should(readFileSync(file, "utf8")).equal(before);
    // Reported, but throttled: a flood does not flood the log.
    should(callsOf(portal, "warn").filter((a) => String(a[0]) === "bitrix24-portal.install.refused")).have.length(1);
  });

  it("refuses an installation before the client id and secret are deployed, saying what to do", async () => {
    const { portal } = await load({}, { p: {} });
    const sent = await recordInstallation("auth");
    const answer = await post(INSTALL, sent.body);
    should(answer.status).equal(403);
    should(String(answer.data)).match(/no client id and secret yet.*Reinstall/);
    should(tokenFiles()).be.empty();
    should(portal.installation).be.undefined();
  });

  it("installed tokens win over pasted ones, and the file keeps winning after a restart", async () => {
    const c = sandbox.credentials;
    const pasted = cardCredentials({ accessToken: c.accessToken, refreshToken: c.refreshToken });
    const first = await load({}, pasted);
    const sent = await recordInstallation("auth");
    should((await post(INSTALL, sent.body)).status).equal(200);
    await until(() => first.portal.installation !== undefined);
    const stored = JSON.parse(readFileSync(tokenFiles()[0], "utf8"));
    should(first.portal.client?.tokens?.refreshToken).equal(stored.refreshToken);
    should(stored.refreshToken).not.equal(c.refreshToken);

    await helper.unload();
    const again = await load({}, pasted);
    should(again.portal.applicationToken).equal(c.applicationToken);
    should(again.portal.installation?.portal).equal(new URL(sandbox.url).host);
    sandbox.addEvents(2);
    again.get.receive({});
    await until(() => again.events.length === 2);
    // The session took the file (the installed lineage), not the pasted pair.
    should(again.portal.client?.tokens?.refreshToken).equal(stored.refreshToken);
  });

  it("a node without a portal URL takes the first verified installation's portal and keeps it across restarts", async () => {
    const first = await load({ portalUrl: "" });
    should(first.portal.client).be.undefined();
    should(first.portal.configError?.description).equal("bitrix24-portal.install.noPortalYet");
    const sent = await recordInstallation("auth");
    should((await post(INSTALL, sent.body)).status).equal(200);
    await until(() => first.portal.installation !== undefined);
    should(callsOf(first.portal, "warn").map((a) => String(a[0]))).containEql("bitrix24-portal.install.doneRedeploy");

    await helper.unload();
    const again = await load({ portalUrl: "" });
    should(again.portal.configError).be.undefined();
    should(again.portal.client?.portalUrl).equal(sandbox.url);
    should(again.portal.applicationToken).equal(sandbox.credentials.applicationToken);
    sandbox.addEvents(1);
    again.get.receive({});
    await until(() => again.events.length === 1);
  });
});
