import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import should from "should";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { parsePhpQuery } from "../../src/sandbox/php/php-params";
import { rest } from "./rest-call";

async function tokenCall(sandbox: Sandbox, params: Record<string, string>, method: "GET" | "POST" = "GET") {
  const query = new URLSearchParams(params).toString();
  const res =
    method === "GET"
      ? await fetch(`${sandbox.oauthUrl}/oauth/token/?${query}`)
      : await fetch(`${sandbox.oauthUrl}/oauth/token/`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: query,
        });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe("sandbox: OAuth", () => {
  let sandbox: Sandbox;

  before(async () => {
    sandbox = await startSandbox({ rateLimit: false, tokenTtlSec: 1 });
  });
  after(async () => {
    await sandbox.close();
  });

  it("authorize redirects to the REGISTERED handler path (never to redirect_uri) with code, state, domain, member_id, scope, server_domain; the code buys tokens once", async () => {
    const c = sandbox.credentials;
    const authorizeUrl = `${sandbox.url}/oauth/authorize/?client_id=${c.clientId}&state=s1&redirect_uri=${encodeURIComponent("http://127.0.0.1:1/elsewhere")}`;
    // No handler path in the application's form: the portal shows the code, it redirects nowhere.
    const shown = await fetch(authorizeUrl, { redirect: "manual" });
    should(shown.status).equal(200);
    should(await shown.json()).have.properties(["code", "state", "domain", "member_id", "server_domain"]);
    sandbox.setOptions({ handlerUrl: "http://127.0.0.1:1/cb?x=1" });
    const res = await fetch(authorizeUrl, { redirect: "manual" });
    sandbox.setOptions({ handlerUrl: "" });
    should(res.status).equal(302);
    const location = new URL(res.headers.get("location") ?? "");
    should(location.pathname).equal("/cb");
    should(location.searchParams.get("x")).equal("1");
    should(location.searchParams.get("state")).equal("s1");
    should(location.searchParams.get("domain")).equal(new URL(sandbox.url).host);
    // server_domain is the OAuth server, not the portal (settings/oauth/index.md).
    should(location.searchParams.get("server_domain")).equal(new URL(sandbox.oauthUrl).host);
    should(location.searchParams.get("server_domain")).not.equal(new URL(sandbox.url).host);
    should(location.searchParams.get("scope")).equal("crm,task,user");
    for (const key of ["code", "member_id"]) should(location.searchParams.get(key)).be.ok();
    const code = location.searchParams.get("code")!;
    const grant = { grant_type: "authorization_code", client_id: c.clientId, client_secret: c.clientSecret, code };
    const tokens = await tokenCall(sandbox, grant, "POST");
    should(tokens.status).equal(200);
    should(tokens.body).have.properties([
      "access_token",
      "refresh_token",
      "expires_in",
      "domain",
      "server_endpoint",
      "client_endpoint",
      "member_id",
      "scope",
      "status",
    ]);
    should(tokens.body.client_endpoint).equal(`${sandbox.url}/rest/`);
    // As oauth.bitrix.info answers: `domain` is the OAuth server's own host, never the portal's.
    should(tokens.body.domain).equal(new URL(sandbox.oauthUrl).host);
    should(tokens.body.domain).not.equal(new URL(sandbox.url).host);
    const ok = await rest(sandbox, "feature.get", { CODE: "x" }, { auth: String(tokens.body.access_token) });
    should(ok.status).equal(200);
    const reused = await tokenCall(sandbox, grant);
    should([reused.status, reused.body.error]).eql([400, "invalid_grant"]);
  });

  it("refresh tokens rotate: the old one becomes invalid_grant; access tokens expire after the ttl", async () => {
    const c = sandbox.credentials;
    const grant = (refresh: string) => ({
      grant_type: "refresh_token",
      client_id: c.clientId,
      client_secret: c.clientSecret,
      refresh_token: refresh,
    });
    const first = await tokenCall(sandbox, grant(c.refreshToken));
    should(first.status).equal(200);
    should(first.body.refresh_token).not.equal(c.refreshToken);
    should(first.body.expires_in).equal(1);
    const again = await tokenCall(sandbox, grant(c.refreshToken));
    should([again.status, again.body.error]).eql([400, "invalid_grant"]);
    const wrongSecret = await tokenCall(sandbox, { ...grant(String(first.body.refresh_token)), client_secret: "x" });
    should([wrongSecret.status, wrongSecret.body.error]).eql([401, "invalid_client"]);
    const token = String(first.body.access_token);
    should((await rest(sandbox, "feature.get", { CODE: "x" }, { auth: token })).status).equal(200);
    await new Promise((r) => setTimeout(r, 1050));
    const expired = await rest(sandbox, "feature.get", { CODE: "x" }, { auth: token });
    should([expired.status, expired.body.error]).eql([401, "expired_token"]);
    sandbox.revokeRefreshTokens();
    const revoked = await tokenCall(sandbox, grant(String(first.body.refresh_token)));
    should(revoked.body.error).equal("invalid_grant");
  });
});

describe("sandbox: bindings and ONOFFLINEEVENT", () => {
  let sandbox: Sandbox;
  let handler: Server;
  let handlerUrl: string;
  let received: Record<string, unknown>[];
  let contentTypes: string[];

  before(async () => {
    sandbox = await startSandbox({ rateLimit: false });
    handler = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk) => {
        body += chunk;
      });
      req.on("end", () => {
        contentTypes.push(String(req.headers["content-type"]));
        received.push(parsePhpQuery(body));
        res.end("ok");
      });
    });
    await new Promise<void>((resolve) => handler.listen(0, "127.0.0.1", resolve));
    handlerUrl = `http://127.0.0.1:${(handler.address() as AddressInfo).port}/hook`;
  });
  after(async () => {
    await sandbox.close();
    await new Promise((resolve) => handler.close(resolve));
  });
  beforeEach(() => {
    sandbox.reset();
    received = [];
    contentTypes = [];
  });

  const waitFor = async (predicate: () => boolean, ms = 2000) => {
    const until = Date.now() + ms;
    while (!predicate() && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  };

  it("event.bind / event.get / event.unbind for offline (with auth_connector) and online bindings", async () => {
    should((await rest(sandbox, "event.bind", { event: "ONCRMDEALUPDATE", event_type: "offline" })).body.result).equal(
      true,
    );
    await rest(sandbox, "event.bind", { event: "onCrmDealAdd", event_type: "offline", auth_connector: "BxTest" });
    await rest(sandbox, "event.bind", { event: "ONOFFLINEEVENT", handler: handlerUrl, options: { minTimeout: 5 } });
    const dup = await rest(sandbox, "event.bind", { event: "ONCRMDEALUPDATE", event_type: "offline" });
    should(dup.status).equal(400);
    const list = await rest(sandbox, "event.get");
    should(list.body.result).eql([
      { event: "ONCRMDEALUPDATE", connector_id: "", offline: 1 },
      { event: "ONCRMDEALADD", connector_id: "BxTest", offline: 1 },
      { event: "ONOFFLINEEVENT", handler: handlerUrl, auth_type: "0", offline: 0 },
    ]);
    const offlineNotify = await rest(sandbox, "event.bind", { event: "ONOFFLINEEVENT", event_type: "offline" });
    should(offlineNotify.status).equal(400);
    const noDot = await rest(sandbox, "event.bind", { event: "ONCRMDEALADD", handler: "http://intranet/hook" });
    should(noDot.status).equal(400);
    const unknown = await rest(sandbox, "event.bind", { event: "CRMDEAL", event_type: "offline" });
    should(unknown.body.error).equal("ERROR_EVENT_NOT_FOUND");
    const unbound = await rest(sandbox, "event.unbind", {
      event: "ONCRMDEALADD",
      event_type: "offline",
      auth_connector: "BxTest",
    });
    should(unbound.body.result).eql({ count: 1 });
    sandbox.setOptions({ admin: false });
    try {
      const denied = await rest(sandbox, "event.bind", { event: "ONCRMDEALADD", event_type: "offline" });
      should([denied.status, denied.body.error]).eql([403, "ACCESS_DENIED"]);
    } finally {
      sandbox.setOptions({ admin: true });
    }
  });

  it("as the source: a mistyped event name is ERROR_EVENT_NOT_FOUND, unbind of an online binding needs its handler, handlers live on the registered handler path's host", async () => {
    for (const event of ["ONCRMDEALUPDAT", "ONCRMDEALCHANGE", "ONTASKMOVE"]) {
      const res = await rest(sandbox, "event.bind", { event, event_type: "offline" });
      should([event, res.status, res.body.error]).eql([event, 400, "ERROR_EVENT_NOT_FOUND"]);
    }
    await rest(sandbox, "event.bind", { event: "ONCRMDEALADD", handler: handlerUrl });
    const noHandler = await rest(sandbox, "event.unbind", { event: "ONCRMDEALADD" });
    should([noHandler.status, noHandler.body.error]).eql([400, "ERROR_ARGUMENT"]);
    should((await rest(sandbox, "event.get")).body.result).have.length(1);
    should((await rest(sandbox, "event.unbind", { event: "ONCRMDEALADD", handler: handlerUrl })).body.result).eql({
      count: 1,
    });
    sandbox.setOptions({ handlerUrl: "https://nodered.example.com/admin/bitrix24-portal/callback" });
    try {
      const elsewhere = await rest(sandbox, "event.bind", { event: "ONOFFLINEEVENT", handler: handlerUrl });
      should([elsewhere.status, elsewhere.body.error]).eql([400, "ERROR_HANDLER_URL_MISMATCH"]);
      const sameHost = await rest(sandbox, "event.bind", {
        event: "ONOFFLINEEVENT",
        handler: "https://nodered.example.com/bitrix24/push",
      });
      should(sameHost.status).equal(200);
    } finally {
      sandbox.setOptions({ handlerUrl: "" });
    }
  });

  it("pushes a PHP-style form notification with auth[application_token], at most one per minTimeout, dropping the rest", async () => {
    await rest(sandbox, "event.bind", { event: "ONOFFLINEEVENT", handler: handlerUrl, options: { minTimeout: 1 } });
    sandbox.addEvents(1);
    sandbox.addEvents(1); // inside minTimeout: dropped
    sandbox.addEvents(1); // dropped
    await waitFor(() => received.length >= 1);
    await new Promise((r) => setTimeout(r, 200));
    should(received).have.length(1);
    should(contentTypes[0]).equal("application/x-www-form-urlencoded");
    const [note] = received as [{ event: string; ts: string; auth: Record<string, string> }];
    should(note.event).equal("ONOFFLINEEVENT");
    should(Number(note.ts)).be.approximately(Date.now() / 1000, 5);
    should(note.auth.application_token).equal(sandbox.credentials.applicationToken);
    should(note.auth).have.properties(["access_token", "refresh_token", "domain", "member_id", "client_endpoint"]);
    // no trailing notification for the dropped hits
    await new Promise((r) => setTimeout(r, 1100));
    should(received).have.length(1);
    sandbox.addEvents(1);
    await waitFor(() => received.length >= 2);
    should(received).have.length(2);
    should(sandbox.stats().pushes).equal(2);
  });

  it("minTimeout 0 sends one notification per hit", async () => {
    await rest(sandbox, "event.bind", { event: "ONOFFLINEEVENT", handler: handlerUrl, options: { minTimeout: 0 } });
    sandbox.addEvents(5);
    sandbox.addEvents(5);
    sandbox.addEvents(5);
    await waitFor(() => received.length >= 3);
    should(received).have.length(3);
  });
});
