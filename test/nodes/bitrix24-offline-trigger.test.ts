import axios from "axios";
import should from "should";
import type { Sandbox } from "../../src/sandbox";
import { triggerNode } from "../kit/flows.cjs";
import { captureHttpNode, collect, helper, nodeRedPerTest, nodes, spied, startHttpNodeServer } from "../kit/node-red";

interface TriggerMsg {
  payload: Record<string, unknown>;
  topic: string;
  trigger: string;
}

const PATH = "/b24/offline";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("bitrix24-offline-trigger node", () => {
  const t = nodeRedPerTest({ httpNodeRoot: "/" });
  let sandbox: Sandbox;
  let server: { url: string; close(): Promise<void> };
  let serverUrl: string;

  before(async () => {
    server = await startHttpNodeServer();
    serverUrl = server.url;
  });

  after(async () => {
    await server.close();
  });

  beforeEach(async () => {
    sandbox = await t.start();
  });

  async function load(trigger: Record<string, unknown> = {}, credentials: Record<string, string> = {}) {
    const flow = [
      triggerNode({ id: "t", path: PATH, followUp: 0, minGap: 0, ...trigger, wires: [["out"]] }),
      { id: "out", type: "helper" },
    ];
    await t.load([nodes.trigger, captureHttpNode], flow, { portal: { rateLimit: 2, rateBurst: 50 }, credentials });
    return { received: collect<TriggerMsg>("out"), node: spied("t") };
  }

  function form(token: string | undefined, ts = "1700000000"): string {
    const params = new URLSearchParams();
    params.set("event", "ONOFFLINEEVENT");
    params.set("data[minTimeout]", "1");
    params.set("ts", ts);
    params.set("auth[access_token]", "secret-access");
    params.set("auth[refresh_token]", "secret-refresh");
    if (token !== undefined) params.set("auth[application_token]", token);
    return params.toString();
  }

  function post(body: string, contentType = "application/x-www-form-urlencoded", path = PATH) {
    return axios.post(`${serverUrl}${path}`, body, {
      headers: { "Content-Type": contentType },
      validateStatus: () => true,
      transformRequest: [(data) => data],
    });
  }

  async function waitFor(check: () => boolean, ms = 3000): Promise<void> {
    const until = Date.now() + ms;
    while (!check()) {
      if (Date.now() > until) throw new Error("timed out waiting");
      await sleep(10);
    }
  }

  it("emits a push with the right token, form-encoded, without the auth block", async () => {
    const { received, node } = await load();
    const answer = await post(form(sandbox.credentials.applicationToken));
    should(answer.status).equal(200);
    await waitFor(() => received.length === 1);
    const msg = received[0];
    should(msg.topic).equal("ONOFFLINEEVENT");
    should(msg.trigger).equal("push");
    should(msg.payload).eql({ event: "ONOFFLINEEVENT", ts: 1700000000, data: { minTimeout: "1" } });
    const text = JSON.stringify(msg);
    should(text).not.containEql("secret-refresh");
    should(text).not.containEql("secret-access");
    should(text).not.containEql(sandbox.credentials.applicationToken);
    const status = node.status.args[node.status.args.length - 1][0];
    should(status).match({ fill: "green", shape: "dot", text: "bitrix24-offline-trigger.status.fired" });
  });

  it("accepts a JSON body", async () => {
    const { received } = await load();
    const body = JSON.stringify({
      event: "ONOFFLINEEVENT",
      data: {},
      ts: "1700000005",
      auth: { application_token: sandbox.credentials.applicationToken, refresh_token: "secret-refresh" },
    });
    should((await post(body, "application/json")).status).equal(200);
    await waitFor(() => received.length === 1);
    should(received[0].payload).eql({ event: "ONOFFLINEEVENT", ts: 1700000005, data: {} });
  });

  it("answers 401 to a wrong or missing token and emits nothing", async () => {
    const { received, node } = await load();
    should((await post(form("wrong-token"))).status).equal(401);
    should((await post(form(undefined))).status).equal(401);
    should((await post(JSON.stringify({ event: "ONOFFLINEEVENT" }), "application/json")).status).equal(401);
    await sleep(100);
    should(received).be.empty();
    // Reported, but throttled: a scanned endpoint must not flood the log.
    should(node.warn.args.filter((a) => String(a[0]) === "bitrix24-offline-trigger.errors.refused").length).equal(1);
  });

  it("answers 413 to an oversized body and 400 to a malformed one", async () => {
    const { received } = await load();
    const big = `${form(sandbox.credentials.applicationToken)}&pad=${"x".repeat(200 * 1024)}`;
    should((await post(big)).status).equal(413);
    should((await post("{broken", "application/json")).status).equal(400);
    const token = sandbox.credentials.applicationToken;
    should((await post(`ts=1&auth[application_token]=${token}`)).status).equal(400);
    await sleep(50);
    should(received).be.empty();
  });

  it("refuses every push when the portal has no application token", async () => {
    const { received, node } = await load({}, { applicationToken: "" });
    should((await post(form(""))).status).equal(401);
    should((await post(form("anything"))).status).equal(401);
    should(received).be.empty();
    should(node.status.args[0][0]).match({ fill: "yellow", text: "bitrix24-offline-trigger.status.noToken" });
  });

  it("triggers once more followUp seconds after a push", async () => {
    const { received } = await load({ followUp: 0.2 });
    const started = Date.now();
    await post(form(sandbox.credentials.applicationToken));
    await waitFor(() => received.length === 2);
    should(received.map((m) => m.trigger)).eql(["push", "follow-up"]);
    should(Date.now() - started).be.aboveOrEqual(190);
    should(received[1].topic).equal("follow-up");
  });

  it("drops a pending follow-up on close", async () => {
    const { received } = await load({ followUp: 0.15 });
    await post(form(sandbox.credentials.applicationToken));
    await waitFor(() => received.length === 1);
    await helper.unload();
    await sleep(250);
    should(received.map((m) => m.trigger)).eql(["push"]);
  });

  it("suppresses a replayed notification (same ts and body)", async () => {
    const { received } = await load();
    const body = form(sandbox.credentials.applicationToken, "1700000100");
    should((await post(body)).status).equal(200);
    should((await post(body)).status).equal(200);
    should((await post(form(sandbox.credentials.applicationToken, "1700000101"))).status).equal(200);
    await sleep(100);
    should(received.map((m) => m.payload.ts)).eql([1700000100, 1700000101]);
  });

  it("coalesces triggers inside minGap into one trailing emission", async () => {
    const { received } = await load({ minGap: 150 });
    const token = sandbox.credentials.applicationToken;
    await Promise.all([post(form(token, "1")), post(form(token, "2")), post(form(token, "3"))]);
    await sleep(250);
    should(received.length).equal(2);
    should(received.every((m) => m.trigger === "push")).be.true();
  });

  it("polls on the interval", async () => {
    const { received } = await load({ interval: 0.05, path: "" });
    await waitFor(() => received.length >= 3);
    should(received.every((m) => m.trigger === "poll" && m.topic === "poll")).be.true();
    should(received[0].payload.time).be.a.Number();
    // Close stops the interval.
    await helper.unload();
    const count = received.length;
    await sleep(150);
    should(received.length).equal(count);
  });

  it("fires once on deploy", async () => {
    const { received, node } = await load({ onDeploy: true, path: "" });
    await waitFor(() => received.length === 1);
    should(received[0].trigger).equal("deploy");
    await sleep(150);
    should(received.length).equal(1);
    const status = node.status.args[node.status.args.length - 1][0];
    should(status.text).equal("bitrix24-offline-trigger.status.fired");
  });

  it("removes its route on close (404 after)", async () => {
    await load();
    should((await post(form(sandbox.credentials.applicationToken))).status).equal(200);
    await helper.unload();
    should((await post(form(sandbox.credentials.applicationToken))).status).equal(404);
  });

  it("registers nothing when httpNodeRoot is false", async () => {
    helper.settings({ userDir: t.userDir, httpNodeRoot: false });
    const { received, node } = await load();
    should((await post(form(sandbox.credentials.applicationToken))).status).equal(404);
    should(received).be.empty();
    should(node.warn.args.map((a) => String(a[0]))).containEql("bitrix24-offline-trigger.errors.noHttp");
  });

  it("binds only the missing subscriptions, and the portal's push reaches the endpoint", async () => {
    // ONCRMDEALUPDATE is already bound: only the others may be bound.
    await axios.post(`${sandbox.url}/rest/event.bind.json`, {
      auth: sandbox.credentials.accessToken,
      event: "ONCRMDEALUPDATE",
      event_type: "offline",
    });
    const bindsBefore = sandbox.stats().requests.byMethod["event.bind"] ?? 0;
    const { received, node } = await load({
      bindEvents: "ONCRMDEALUPDATE, ONTASKADD",
      publicUrl: serverUrl,
      followUp: 0,
    });
    await waitFor(() => node.log.args.length > 0);
    should(sandbox.stats().requests.byMethod["event.bind"] - bindsBefore).equal(2);
    const { data } = await axios.post(`${sandbox.url}/rest/event.get.json`, { auth: sandbox.credentials.accessToken });
    const bindings = data.result as Array<{ event: string; handler?: string; offline: number }>;
    should(bindings.filter((b) => Number(b.offline) === 1).map((b) => b.event)).containDeep([
      "ONCRMDEALUPDATE",
      "ONTASKADD",
    ]);
    should(bindings.find((b) => b.event === "ONOFFLINEEVENT")?.handler).equal(`${serverUrl}${PATH}`);
    should(String(node.log.args[0][0])).equal("bitrix24-offline-trigger.log.bound");
    should(node.status.args[node.status.args.length - 1][0]).match({
      fill: "green",
      text: "bitrix24-offline-trigger.status.bound",
    });

    // End to end: a new record makes the sandbox push ONOFFLINEEVENT to the trigger.
    sandbox.addEvents(1, { name: "ONTASKADD" });
    await waitFor(() => received.length === 1);
    should(received[0].trigger).equal("push");
    should(JSON.stringify(received[0])).not.containEql(sandbox.credentials.refreshToken);

    // A redeploy finds everything bound and binds nothing.
    await helper.unload();
    const bindsAfterFirst = sandbox.stats().requests.byMethod["event.bind"];
    const second = await load({ bindEvents: "ONCRMDEALUPDATE, ONTASKADD", publicUrl: serverUrl });
    await waitFor(() => second.node.log.args.length > 0);
    should(sandbox.stats().requests.byMethod["event.bind"]).equal(bindsAfterFirst);
    should(String(second.node.log.args[0][0])).equal("bitrix24-offline-trigger.log.allBound");
  });

  it("says clearly when binding needs an administrator", async () => {
    sandbox.setOptions({ admin: false });
    const { node } = await load({ bindEvents: "ONTASKADD" });
    await waitFor(() => node.error.args.length > 0);
    should(node.status.args[node.status.args.length - 1][0]).match({
      fill: "red",
      text: "bitrix24-offline-trigger.errors.bindAdmin",
    });
    should((node.error.args[0][0] as { code: string }).code).equal("ACCESS_DENIED");
  });

  it("shows a red status and errors when the portal is missing", async () => {
    const orphan = [{ id: "t", type: "bitrix24-offline-trigger", portal: "nope", path: PATH, interval: 1, wires: [] }];
    await helper.load([nodes.portal, nodes.trigger, captureHttpNode], orphan);
    const node = spied("t");
    should(node.status.args[0][0]).match({ fill: "red" });
    should(node.error.args.length).equal(1);
    should((await post(form(sandbox.credentials.applicationToken))).status).equal(404);
  });
});
