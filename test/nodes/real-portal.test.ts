import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import should from "should";
import type { RetryInfo } from "../../src/core/client/client";
import { fileStateStores } from "../../src/core/state/file-state";
import { clientOptionsFor, type PortalNode } from "../../src/nodes/bitrix24-portal/bitrix24-portal";
import type { Sandbox, SandboxOptions } from "../../src/sandbox";
import { adminPost, nodeRedPerTest } from "../kit/node-red";
import {
  callsOf,
  GET_DEFAULTS,
  helper,
  type LoadedFlow,
  loadFlow,
  type SpiedNode,
  statusesOf,
} from "../reliability/node-rig";
import { sleep, until as waitUntil } from "../wait";

// Node-level waits here span a rename or a method pause: longer than the default.
const until = (check: () => boolean) => waitUntil(check, 8000);

/** What real portals do beyond the method pages, proven through the nodes against the sandbox. */
describe("nodes against what real portals do (renames, OAuth regions, limits)", function () {
  this.timeout(20000);
  let sandbox: Sandbox;
  const t = nodeRedPerTest({ httpNodeRoot: "/" }, () => sandbox);

  async function start(options: SandboxOptions = {}): Promise<void> {
    sandbox = await t.start(options);
  }

  /** Portal "p", get "g" (wired to a real clear node "c" in ack mode), list "l"; helpers collect the outputs. */
  async function load(
    opts: {
      get?: Record<string, unknown>;
      portal?: Record<string, unknown>;
      credentials?: Record<string, string>;
    } = {},
  ) {
    const auto = opts.get?.mode === "auto";
    const flow = [
      { ...GET_DEFAULTS, id: "g", limit: 10, ...opts.get, wires: [auto ? ["out"] : ["out", "c"], ["empty"], ["dead"]] },
      { id: "c", type: "bitrix24-offline-clear", portal: "p", wires: [[]] },
      {
        id: "l",
        type: "bitrix24-offline-list",
        portal: "p",
        filter: "",
        order: "",
        allPages: false,
        wires: [["listed"]],
      },
      { id: "out", type: "helper" },
      { id: "empty", type: "helper" },
      { id: "dead", type: "helper" },
      { id: "listed", type: "helper" },
    ];
    const loaded: LoadedFlow = await loadFlow(sandbox, flow, { portal: opts.portal, credentials: opts.credentials });
    return {
      portal: helper.getNode("p") as unknown as SpiedNode,
      get: loaded.get,
      list: helper.getNode("l") as unknown as SpiedNode,
      out: loaded.seen.out,
      empty: loaded.seen.empty,
      listed: loaded.seen.listed,
    };
  }

  /** The portal address kept beside the tokens (written in the background after a move). */
  function storedEndpoint(): string | undefined {
    const dir = join(t.userDir, ".bitrix24-offline-events");
    const file = readdirSync(dir).find((f) => f.endsWith(".tokens.json"));
    return file ? JSON.parse(readFileSync(join(dir, file), "utf8")).clientEndpoint : undefined;
  }

  const movedWarnings = (portal: SpiedNode) =>
    callsOf(portal, "warn").filter((a) => /bitrix24-portal\.moved\.log/.test(String(a[0])));
  const errorsOf = (node: SpiedNode) => callsOf(node, "error");

  it("a rename mid-drain: the get node keeps draining at the new address, every event once, the move reported once", async () => {
    await start({ events: 60 });
    const { portal, get, out, empty } = await load();
    get.receive({});
    await until(() => out.length >= 10);
    await sandbox.rename();
    await until(() => empty.length === 1);
    should(new Set(out.map((m) => (m.payload as { ID: string }).ID)).size).equal(60);
    should(out).have.length(60);
    should(sandbox.stats().queue.total).equal(0);
    should(errorsOf(get)).have.length(0);
    should(movedWarnings(portal)).have.length(1);
    should(statusesOf(get).some((a) => /bitrix24-portal\.moved\.status/.test(a.text ?? ""))).be.true();
    // Later drains go straight to the new address: no second report.
    sandbox.addEvents(5);
    get.receive({});
    await until(() => empty.length === 2);
    should(out).have.length(65);
    should(movedWarnings(portal)).have.length(1);
    // The new address is kept beside the tokens.
    await until(() => storedEndpoint() === `${sandbox.currentUrl}/rest/`);
  });

  it("a restarted flow with the old URL calls the new address at once (no redirect, no report)", async () => {
    await start({ events: 5 });
    await sandbox.rename();
    let loaded = await load({ get: { mode: "auto" } });
    loaded.get.receive({});
    await until(() => loaded.empty.length === 1);
    should(movedWarnings(loaded.portal)).have.length(1);
    await until(() => storedEndpoint() === `${sandbox.currentUrl}/rest/`);
    await helper.unload();
    sandbox.addEvents(5);
    loaded = await load({ get: { mode: "auto" } });
    loaded.get.receive({});
    await until(() => loaded.empty.length === 1);
    should(loaded.out).have.length(5);
    should(movedWarnings(loaded.portal)).have.length(0);
  });

  it("auto mode (clear=1) across a rename: no EVENTS_MAY_BE_LOST, nothing lost", async () => {
    await start({ events: 30 });
    await sandbox.rename(307);
    const { get, out, empty } = await load({ get: { mode: "auto" } });
    get.receive({});
    await until(() => empty.length === 1);
    should(out).have.length(30);
    should(errorsOf(get)).have.length(0);
    should(sandbox.stats().deleted).equal(30);
  });

  it("OPERATION_TIME_LIMIT on event.offline.get pauses the get node, one refusal and no retry storm, while list works", async () => {
    await start({ events: 30 });
    const { get, list, out, empty, listed } = await load({ get: { mode: "auto" } });
    sandbox.spendBudget("event.offline.get", 1500);
    const started = Date.now();
    get.receive({});
    await sleep(700);
    const gets = () => sandbox.stats().requests.byMethod["event.offline.get"] ?? 0;
    should(gets()).equal(1);
    should(out).have.length(0);
    should(statusesOf(get).some((a) => a.fill === "yellow")).be.true();
    // Another method of the same portal and application goes on meanwhile.
    const listStarted = Date.now();
    list.receive({});
    await until(() => listed.length === 1);
    should(Date.now() - listStarted).be.below(500);
    should(errorsOf(list)).have.length(0);
    await until(() => empty.length === 1);
    should(Date.now() - started).be.aboveOrEqual(1400);
    should(out).have.length(30);
    should(gets()).equal(1 + 4); // the refusal, then three pages and the empty one
    should(errorsOf(get)).have.length(0);
  });

  it("refreshes at the OAuth server the token answers name (a second region), through the nodes", async () => {
    await start({ secondOAuthServer: true });
    const { list, listed } = await load();
    for (let round = 1; round <= 3; round++) {
      sandbox.expireTokens();
      list.receive({});
      await until(() => listed.length === round);
    }
    // The first refresh (start tokens) went to the configured guess; its answer named the second server, which
    // alone takes the refresh tokens it issues: the later rounds prove the node followed server_endpoint.
    should(errorsOf(list)).have.length(0);
  });

  it("Authorize exchanges the code at the redirect's server_domain and keeps server_endpoint with the credentials", async () => {
    await start({ secondOAuthServer: true });
    await load({ credentials: { accessToken: "", refreshToken: "" } });
    const c = sandbox.credentials;
    sandbox.setOptions({ handlerUrl: "http://127.0.0.1:1880/bitrix24-portal/callback" });
    const begin = await adminPost("/bitrix24-portal/authorize", sandbox.url, {
      oauthServer: sandbox.url, // the first guess, which refuses codes of the second region
      callbackUrl: "http://127.0.0.1:1880/bitrix24-portal/callback",
      credentials: { clientId: c.clientId, clientSecret: "__PWRD__" },
    }).expect(200);
    const consent = await fetch(begin.body.url, { redirect: "manual" });
    const back = new URL(consent.headers.get("location") ?? "");
    should(back.searchParams.get("server_domain")).equal(new URL(String(sandbox.secondOAuthUrl)).host);
    await helper.request().get(`/bitrix24-portal/callback${back.search}`).expect(200);
    const { getCredentials } = (helper as unknown as { _redNodes: { getCredentials(id: string): unknown } })._redNodes;
    const stored = getCredentials("p") as { refreshToken: string; serverEndpoint: string };
    should(stored.serverEndpoint).equal(`${sandbox.secondOAuthUrl}/rest/`);
    should(stored.refreshToken).not.equal("");
  });

  it("NO_AUTH_FOUND for a wrong access token: one refresh, then the call succeeds", async () => {
    await start({ wrongTokenError: "NO_AUTH_FOUND" });
    const { list, listed } = await load({ credentials: { accessToken: "wrong" } });
    list.receive({});
    await until(() => listed.length === 1 || errorsOf(list).length > 0);
    should(errorsOf(list)).have.length(0);
    should(listed).have.length(1);
  });

  it("OVERLOAD_LIMIT: one request, a red status saying Bitrix24 support blocked it, no retry", async () => {
    await start({ events: 5 });
    sandbox.setFaults({ errorRate: 1, errorCode: "OVERLOAD_LIMIT" });
    const { get } = await load({ get: { mode: "auto" } });
    get.receive({});
    await until(() => errorsOf(get).length > 0);
    await sleep(200);
    should(sandbox.stats().requests.byMethod["event.offline.get"]).equal(1);
    const err = errorsOf(get)[0][0] as { code: string; description: string };
    should(err.code).equal("OVERLOAD_LIMIT");
    should(err.description).startWith("Blocked by Bitrix24 support");
    const last = statusesOf(get).at(-1) ?? {};
    should(last.fill).equal("red");
    should(last.text).match(/^OVERLOAD_LIMIT: Blocked by Bitrix24 support/);
  });

  it("Test connection reads the plan and suggests 5/s, burst 250 on Enterprise with the default bucket", async () => {
    await start({ licenseFamily: "ent" });
    await load();
    const body = (rate: Record<string, unknown>) => ({
      id: "p",
      portalUrl: sandbox.url,
      oauthServer: sandbox.url,
      credentials: {},
      ...rate,
    });
    const onDefault = await helper.request().post("/bitrix24-portal/test").send(body({})).expect(200);
    should(onDefault.body).match({ ok: true, plan: { family: "ent", license: "en_ent" } });
    should(onDefault.body.suggestedRate).eql({ perSecond: 5, burst: 250 });
    const tuned = await helper
      .request()
      .post("/bitrix24-portal/test")
      .send(body({ rateLimit: 5, rateBurst: 250 }))
      .expect(200);
    should(tuned.body.suggestedRate).be.undefined();
    sandbox.setOptions({ licenseFamily: "project" });
    const project = await helper.request().post("/bitrix24-portal/test").send(body({})).expect(200);
    should(project.body.plan.family).equal("project");
    should(project.body.suggestedRate).be.undefined();
  });

  it("Test connection names the new address of a renamed portal", async () => {
    await start();
    await load();
    await sandbox.rename();
    const res = await helper
      .request()
      .post("/bitrix24-portal/test")
      .send({ id: "p", portalUrl: sandbox.url, oauthServer: sandbox.url, credentials: {} })
      .expect(200);
    should(res.body).match({ ok: true, movedTo: sandbox.currentUrl });
  });

  it("a timeout above the portal's cut-off: a slow call answers, one past the cut-off gets the portal's 504 and is retried", async () => {
    // Scaled down: the portal cuts at 300 ms, the node waits 1 s (as 60 s against the default 75 s).
    await start({ cutoffMs: 300 });
    const { list, listed } = await load({ portal: { timeout: 1 } });
    sandbox.setFaults({ latencyMs: 200, methods: ["event.offline.list"] });
    list.receive({});
    await until(() => listed.length === 1);
    const retried: Array<{ code: string; status: number }> = [];
    const client = (helper.getNode("p") as unknown as PortalNode).client;
    client?.on("retry", (r: RetryInfo) => retried.push({ code: r.error.code, status: r.error.status }));
    sandbox.setFaults({ latencyMs: 500, methods: ["event.offline.list"] });
    const before = sandbox.stats().requests.byMethod["event.offline.list"] ?? 0;
    list.receive({});
    await until(() => (sandbox.stats().requests.byMethod["event.offline.list"] ?? 0) > before);
    await sleep(350); // cut off by the portal at 300 ms, well before our own timeout
    sandbox.setFaults({});
    await until(() => listed.length === 2);
    should(errorsOf(list)).have.length(0);
    should(retried[0]).eql({ code: "MALFORMED_ANSWER", status: 504 });
  });

  it("the request timeout defaults above the portal's 60 s cut-off; a saved value is kept", () => {
    const config = { portalUrl: "https://example.bitrix24.com", oauthServer: "", rateLimit: 2, rateBurst: 50 };
    const credentials = { clientId: "a", clientSecret: "b", refreshToken: "r" };
    should(clientOptionsFor(config, credentials, fileStateStores(t.userDir)).timeoutMs).equal(75_000);
    should(clientOptionsFor({ ...config, timeout: 30 }, credentials, fileStateStores(t.userDir)).timeoutMs).equal(
      30_000,
    );
  });
});
