import should from "should";
import type { Sandbox } from "../../src/sandbox";
import { rest, sandboxPerTest } from "./rest-call";

async function control(sandbox: Sandbox, action: string, body: unknown = {}) {
  const res = await fetch(`${sandbox.url}/_sandbox/${action}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function refresh(server: string, sandbox: Sandbox, refreshToken: string) {
  const c = sandbox.credentials;
  const query = new URLSearchParams({
    grant_type: "refresh_token",
    client_id: c.clientId,
    client_secret: c.clientSecret,
    refresh_token: refreshToken,
  });
  const res = await fetch(`${server}/oauth/token/?${query}`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function post(url: string, body: unknown) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    redirect: "manual",
  });
  const text = await res.text();
  return { status: res.status, location: res.headers.get("location"), text };
}

describe("sandbox: what real portals do beyond the method pages", () => {
  let sandbox: Sandbox;

  sandboxPerTest((s) => {
    sandbox = s;
  });

  it("rename (control API): the old address answers 302 to the new one for /rest/, the new one serves the portal", async () => {
    const old = sandbox.url;
    const moved = await control(sandbox, "rename", {});
    should(moved.status).equal(200);
    const to = String(moved.body.to);
    should(moved.body.from).equal(old);
    should(to).not.equal(old);
    should(sandbox.currentUrl).equal(to);

    const auth = sandbox.credentials.accessToken;
    const redirected = await post(`${old}/rest/event.offline.list.json`, { auth });
    should(redirected.status).equal(302);
    should(redirected.location).equal(`${to}/rest/event.offline.list.json`);
    const served = await post(`${to}/rest/event.offline.list.json`, { auth });
    should(served.status).equal(200);
    should(JSON.parse(served.text).total).equal(0);
    // The webhook moves too; the control API and the OAuth server stay where they were.
    should(sandbox.credentials.webhookUrl.startsWith(`${to}/rest/1/`)).be.true();
    should((await fetch(`${old}/_sandbox/stats`)).status).equal(200);
    const tokens = await refresh(old, sandbox, sandbox.credentials.refreshToken);
    should(tokens.status).equal(200);
    should(tokens.body.client_endpoint).equal(`${to}/rest/`);
    should(tokens.body.server_endpoint).equal(`${sandbox.oauthUrl}/rest/`);
    // The redirect status is the caller's choice (301/302/307/308 only).
    await sandbox.rename(307);
    should((await post(`${old}/rest/event.offline.list.json`, { auth })).status).equal(307);
    should((await control(sandbox, "rename", { status: 200 })).status).equal(400);
  });

  it("a second OAuth server: token answers name it, and only it takes the refresh tokens they carry", async () => {
    const first = sandbox.url;
    const second = String((await control(sandbox, "second-oauth")).body.url);
    should(second).not.equal(first);
    // The start credentials are refreshable at the first guess; the answer names the second server.
    const a = await refresh(first, sandbox, sandbox.credentials.refreshToken);
    should(a.status).equal(200);
    should(a.body.server_endpoint).equal(`${second}/rest/`);
    const refused = await refresh(first, sandbox, String(a.body.refresh_token));
    should(refused.status).equal(400);
    should(refused.body.error).equal("invalid_grant");
    const b = await refresh(second, sandbox, String(a.body.refresh_token));
    should(b.status).equal(200);
    should(b.body.server_endpoint).equal(`${second}/rest/`);
    // The authorize redirect names it as server_domain.
    const c = sandbox.credentials;
    const res = await fetch(`${first}/oauth/authorize/?client_id=${c.clientId}&state=s`, { redirect: "manual" });
    should((await res.json()).server_domain).equal(new URL(second).host);
    // It serves OAuth only.
    should((await post(`${second}/rest/event.offline.list.json`, {})).status).equal(404);
  });

  it("cuts off a request that runs past cutoffMs with a 504 page; a shorter one answers", async () => {
    sandbox.setOptions({ cutoffMs: 150 });
    sandbox.setFaults({ latencyMs: 400, methods: ["event.offline.list"] });
    const started = Date.now();
    const cut = await post(`${sandbox.url}/rest/event.offline.list.json`, { auth: sandbox.credentials.accessToken });
    should(cut.status).equal(504);
    should(cut.text).match(/Gateway Time-out/);
    should(Date.now() - started).be.within(140, 390);
    sandbox.setFaults({ latencyMs: 100, methods: ["event.offline.list"] });
    should((await rest(sandbox, "event.offline.list")).status).equal(200);
  });

  it("answers an unknown token with NO_AUTH_FOUND when asked to", async () => {
    should((await rest(sandbox, "event.offline.list", {}, { auth: "nope" })).body.error).equal("invalid_token");
    sandbox.setOptions({ wrongTokenError: "NO_AUTH_FOUND" });
    const answer = await rest(sandbox, "event.offline.list", {}, { auth: "nope" });
    should(answer.status).equal(401);
    should(answer.body).match({ error: "NO_AUTH_FOUND", error_description: "Wrong authorization data" });
  });

  it("spend-budget: that method answers 429 OPERATION_TIME_LIMIT with operating_reset_at, the others work", async () => {
    const spent = await control(sandbox, "spend-budget", { method: "event.offline.get", ms: 300 });
    const resetAt = Number(spent.body.resetAt);
    const blocked = await rest(sandbox, "event.offline.get", { clear: 0 });
    should(blocked.status).equal(429);
    should(blocked.body.error).equal("OPERATION_TIME_LIMIT");
    should(blocked.body.time.operating_reset_at).equal(Math.ceil(resetAt / 1000));
    should(blocked.body.time.operating).be.aboveOrEqual(480);
    should((await rest(sandbox, "event.offline.list")).status).equal(200);
    // Inside a batch too.
    const batch = await rest(sandbox, "batch", { cmd: { g: "event.offline.get?clear=0", l: "event.offline.list" } });
    should(batch.body.result.result_error.g.error).equal("OPERATION_TIME_LIMIT");
    should(batch.body.result.result.l).be.an.Array();
    await new Promise((r) => setTimeout(r, resetAt - Date.now() + 20));
    should((await rest(sandbox, "event.offline.get", { clear: 0 })).status).equal(200);
    should((await control(sandbox, "spend-budget", { method: "" })).status).equal(400);
  });

  it("OVERLOAD_LIMIT is a fault: 503 with the portal's words", async () => {
    sandbox.setFaults({ errorRate: 1, errorCode: "OVERLOAD_LIMIT" });
    const answer = await rest(sandbox, "event.offline.list");
    should(answer.status).equal(503);
    should(answer.body).match({ error: "OVERLOAD_LIMIT", error_description: "REST API is blocked due to overload." });
  });

  it("app.info tells the plan (licenseFamily)", async () => {
    const project = await rest(sandbox, "app.info");
    should(project.body.result).match({
      LICENSE_FAMILY: "project",
      INSTALLED: true,
      CODE: sandbox.credentials.clientId,
    });
    sandbox.setOptions({ licenseFamily: "ent" });
    should((await rest(sandbox, "app.info")).body.result).match({ LICENSE: "en_ent", LICENSE_FAMILY: "ent" });
  });
});
