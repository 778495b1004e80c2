import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import should from "should";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { rest } from "./rest-call";

interface Received {
  method: string;
  contentType: string;
  query: URLSearchParams;
  body: URLSearchParams;
}

/** An installation endpoint that records what arrives and answers `status`. */
async function endpoint(status = 200): Promise<{ server: Server; url: string; received: Received[] }> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on("end", () => {
      received.push({
        method: req.method ?? "",
        contentType: String(req.headers["content-type"]),
        query: new URL(req.url ?? "/", "http://x").searchParams,
        body: new URLSearchParams(body),
      });
      res.statusCode = status;
      res.end(status === 200 ? "OK" : "refused");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/install`, received };
}

async function spend(sandbox: Sandbox, refreshToken: string): Promise<number> {
  const query = new URLSearchParams({
    grant_type: "refresh_token",
    client_id: sandbox.credentials.clientId,
    client_secret: sandbox.credentials.clientSecret,
    refresh_token: refreshToken,
  });
  return (await fetch(`${sandbox.oauthUrl}/oauth/token/?${query}`)).status;
}

describe("sandbox: installation POSTs", () => {
  let sandbox: Sandbox;
  let target: Awaited<ReturnType<typeof endpoint>>;

  beforeEach(async () => {
    sandbox = await startSandbox({ rateLimit: false });
    target = await endpoint();
  });
  afterEach(async () => {
    await sandbox.close();
    target.server.closeAllConnections();
    await new Promise<void>((r) => target.server.close(() => r()));
  });

  it("sends event=ONAPPINSTALL with the auth block, form-encoded, with tokens the portal and its OAuth server accept", async () => {
    const result = await sandbox.install(target.url, "auth");
    should(result).eql({ url: target.url, shape: "auth", status: 200, body: "OK" });
    should(target.received).have.length(1);
    const { method, contentType, body } = target.received[0];
    should(method).equal("POST");
    should(contentType).equal("application/x-www-form-urlencoded");
    should(body.get("event")).equal("ONAPPINSTALL");
    should(body.get("data[INSTALLED]")).equal("Y");
    should(body.get("auth[application_token]")).equal(sandbox.credentials.applicationToken);
    should(body.get("auth[domain]")).equal(new URL(sandbox.url).host);
    should(body.get("auth[client_endpoint]")).equal(`${sandbox.url}/rest/`);
    // The OAuth server is not the portal (on-app-install.md: auth[domain] is the portal, server_endpoint oauth's).
    should(body.get("auth[server_endpoint]")).equal(`${sandbox.oauthUrl}/rest/`);
    should(sandbox.oauthUrl).not.equal(sandbox.url);
    should(body.get("auth[member_id]")).match(/^[0-9a-f]{32}$/);
    const access = body.get("auth[access_token]") ?? "";
    should((await rest(sandbox, "feature.get", { CODE: "x" }, { auth: access })).status).equal(200);
    should((await rest(sandbox, "feature.get", { CODE: "x" }, { auth: "not-issued" })).status).equal(401);
    const refresh = body.get("auth[refresh_token]") ?? "";
    should(await spend(sandbox, refresh)).equal(200);
    // Refresh tokens are single-use, the installation's too.
    should(await spend(sandbox, refresh)).equal(400);
  });

  it("sends the placement shape: DOMAIN/PROTOCOL/APP_SID in the query, AUTH_ID/REFRESH_ID/PLACEMENT=DEFAULT in the body", async () => {
    const result = await sandbox.install(target.url, "placement");
    should(result.status).equal(200);
    const { query, body } = target.received[0];
    should(query.get("DOMAIN")).equal(new URL(sandbox.url).host);
    should(query.get("PROTOCOL")).equal("0");
    should(query.get("APP_SID")).match(/^[0-9a-f]{32}$/);
    should(query.get("APP_SID")).not.equal(sandbox.credentials.applicationToken);
    should(body.get("PLACEMENT")).equal("DEFAULT");
    should(body.get("APPLICATION_TOKEN")).equal(sandbox.credentials.applicationToken);
    should(body.get("AUTH_EXPIRES")).equal("3600");
    should(body.get("SERVER_ENDPOINT")).equal(`${sandbox.oauthUrl}/rest/`);
    should(await spend(sandbox, body.get("REFRESH_ID") ?? "")).equal(200);
  });

  it("hands back the endpoint's refusal, and rejects when nothing answers", async () => {
    const refusing = await endpoint(403);
    try {
      should(await sandbox.install(refusing.url)).match({ status: 403, body: "refused", shape: "auth" });
    } finally {
      refusing.server.close();
    }
    const closed = new URL(target.url);
    target.server.closeAllConnections();
    await new Promise<void>((r) => target.server.close(() => r()));
    target.server = createServer();
    await should(sandbox.install(closed.href)).be.rejectedWith(/ECONNREFUSED/);
    await should(sandbox.install("ftp://example.com/")).be.rejectedWith(/not an http\(s\) URL/);
  });

  it("POST /_sandbox/install sends it on request and answers what the endpoint said", async () => {
    const post = (body: unknown) =>
      fetch(`${sandbox.url}/_sandbox/install`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const ok = await post({ url: target.url, shape: "placement" });
    should(ok.status).equal(200);
    should(await ok.json()).eql({ url: target.url, shape: "placement", status: 200, body: "OK" });
    should(target.received[0].body.get("PLACEMENT")).equal("DEFAULT");
    should((await post({ url: target.url, shape: "other" })).status).equal(400);
    should((await post({ shape: "auth" })).status).equal(400);
    const nowhere = await post({ url: "http://127.0.0.1:1/install" });
    should(nowhere.status).equal(502);
    should(((await nowhere.json()) as { error: string }).error).equal("INSTALL_FAILED");
  });
});

describe("sandbox: CLI --install-to", () => {
  let child: ChildProcess | undefined;
  const cli = join(__dirname, "../../src/sandbox/cli.ts");

  afterEach(() => {
    if (child && child.exitCode === null) child.kill("SIGKILL");
  });

  it("POSTs the installation in the chosen shape once listening and logs the answer", async () => {
    const target = await endpoint();
    try {
      child = spawn(
        process.execPath,
        ["--import", "tsx", cli, "--rate-limit", "off", "--install-to", target.url, "--install-shape", "placement"],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let stderr = "";
      child.stderr?.on("data", (d) => {
        stderr += d;
      });
      const deadline = Date.now() + 15000;
      while (!/installation \(placement\)/.test(stderr)) {
        if (Date.now() > deadline) throw new Error(`no installation logged: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      should(stderr).match(/HTTP 200 OK/);
      should(target.received).have.length(1);
      should(target.received[0].body.get("PLACEMENT")).equal("DEFAULT");
      child.kill("SIGTERM");
      await once(child, "exit");
    } finally {
      target.server.close();
    }
  });

  it("refuses an unknown shape with the usage", async () => {
    child = spawn(process.execPath, ["--import", "tsx", cli, "--install-shape", "nope"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr?.on("data", (d) => {
      stderr += d;
    });
    const [code] = await once(child, "exit");
    should(code).equal(2);
    should(stderr).match(/--install-shape takes auth or placement/);
  });
});
