import should from "should";
import type { Sandbox } from "../../src/sandbox";
import { portalConfig, triggerNode } from "../kit/flows.cjs";
import { adminPost, captureHttpNode, helper, nodeRedPerTest, nodes, startHttpNodeServer } from "../kit/node-red";
import { GET_DEFAULTS } from "../reliability/node-rig";
import { until } from "../wait";

/**
 * README "One handler path for Authorize and push", step by step as a new user follows it, against a sandbox as
 * strict as a portal: ONE handler path in the application's form (the portal node's callback), Authorize redirects
 * there whatever the authorize URL says, event handlers only on its host, tokens from an OAuth server on another
 * address whose answers name itself in `domain`.
 */
describe("one handler path serves Authorize and push (README walk-through)", function () {
  this.timeout(20000);
  const t = nodeRedPerTest({ httpNodeRoot: "/" });
  let sandbox: Sandbox;
  let nodeServer: { url: string; close(): Promise<void> };

  before(async () => {
    nodeServer = await startHttpNodeServer();
  });
  after(async () => {
    await nodeServer.close();
  });
  beforeEach(async () => {
    // Step 3, the form: *Your handler path* is the portal node's callback on the public host.
    sandbox = await t.start({ handlerUrl: `${nodeServer.url}/bitrix24-portal/callback` });
  });

  function flow(bindEvents: string, publicUrl = nodeServer.url) {
    return [
      // The vendor's OAuth server, mapped to the sandbox's own OAuth address (not the portal's).
      portalConfig(sandbox, { installPath: "/bitrix24/install", oauthServer: sandbox.oauthUrl }),
      triggerNode({
        id: "t",
        path: "/bitrix24/offline",
        bindEvents,
        publicUrl,
        followUp: 0,
        minGap: 0,
        wires: [["g"]],
      }),
      { ...GET_DEFAULTS, id: "g", mode: "auto", allowAtMostOnce: true, wires: [["events"], [], []] },
      { id: "events", type: "helper" },
    ] as Parameters<typeof helper.load>[1];
  }

  const bindings = () => (sandbox as unknown as { bindingList(): unknown[] }).bindingList();
  const card = () => ({
    p: { clientId: sandbox.credentials.clientId, clientSecret: sandbox.credentials.clientSecret },
  });

  it("installs, binds push on the handler path's host, drains on push, and Authorize lands on the same path", async () => {
    // Steps 2-3: the portal node with its installation path, the client id and secret from the card; Reinstall.
    await helper.load([nodes.portal, nodes.trigger, nodes.get, captureHttpNode], flow(""), card());
    const install = await sandbox.install(`${nodeServer.url}/bitrix24/install`, "auth");
    should(install.status).equal(200, install.body);
    const portal = helper.getNode("p") as unknown as { installation?: { portal: string } };
    await until(() => portal.installation !== undefined);
    should(portal.installation?.portal).equal(new URL(sandbox.url).host);

    // Step 4: the trigger with its endpoint on the handler path's host and the events to bind; deploy.
    await helper.unload();
    await helper.load([nodes.portal, nodes.trigger, nodes.get, captureHttpNode], flow("ONCRMDEALUPDATE"), card());
    const events: Array<{ payload: { EVENT_NAME: string } }> = [];
    helper.getNode("events").on("input", (msg: unknown) => events.push(msg as { payload: { EVENT_NAME: string } }));
    // The trigger binds on deploy (in the background): the portal's bindings show when it is done.
    await until(() => bindings().length === 2, 5000, "the trigger's bindings");
    should(bindings()).containDeep([
      { event: "ONCRMDEALUPDATE", offline: true },
      { event: "ONOFFLINEEVENT", handler: `${nodeServer.url}/bitrix24/offline`, offline: false },
    ]);

    // A change in the portal: its push is trusted (installed application_token) and the get node drains it.
    sandbox.crm.seed("deal", 1);
    sandbox.portalCall("crm.deal.update", { id: 1, fields: { TITLE: "edited" } });
    await until(() => events.length === 1);
    should(events[0].payload.EVENT_NAME).equal("ONCRMDEALUPDATE");
    should(sandbox.stats().pushes).be.aboveOrEqual(1);

    // Step 5: Authorize. The portal sends the browser to the handler path (the callback), not to a redirect_uri.
    const c = sandbox.credentials;
    const begin = await adminPost("/bitrix24-portal/authorize", sandbox.url, {
      oauthServer: sandbox.oauthUrl,
      callbackUrl: "http://127.0.0.1:9/not-the-handler-path",
      credentials: { clientId: c.clientId, clientSecret: "__PWRD__" },
    }).expect(200);
    const consent = await fetch(begin.body.url, { redirect: "manual" });
    should(consent.status).equal(302);
    const back = new URL(consent.headers.get("location") ?? "");
    should(`${back.origin}${back.pathname}`).equal(`${nodeServer.url}/bitrix24-portal/callback`);
    await helper.request().get(`/bitrix24-portal/callback${back.search}`).expect(200);
  });

  it("a trigger whose public URL is not on the handler path's host is refused by the portal, and says so", async () => {
    const wrongHost = nodeServer.url.replace("127.0.0.1", "localhost");
    await helper.load([nodes.portal, nodes.trigger, nodes.get, captureHttpNode], flow("", wrongHost), {
      p: { ...card().p, accessToken: sandbox.credentials.accessToken, refreshToken: sandbox.credentials.refreshToken },
    });
    const trigger = helper.getNode("t") as unknown as { error: { args: unknown[][] } };
    await until(() => trigger.error.args.length > 0);
    should(trigger.error.args[0][0]).match({ code: "ERROR_HANDLER_URL_MISMATCH" });
  });
});
