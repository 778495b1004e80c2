import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import should from "should";
import {
  InstallationError,
  InstallGate,
  parseInstallation,
  saveInstallation,
  storedInstallation,
  tokenServerFor,
  verifyInstallation,
} from "../../src/core/auth/installation";
import { FileTokenStore } from "../../src/core/state/token-store";

const APP_TOKEN = "a".repeat(32);
const REFRESH = "r".repeat(32);

function authShape(auth: Record<string, string> = {}) {
  return {
    event: "ONAPPINSTALL",
    auth: {
      access_token: "x".repeat(32),
      refresh_token: REFRESH,
      application_token: APP_TOKEN,
      domain: "Example.Bitrix24.com",
      member_id: "m1",
      client_endpoint: "https://example.bitrix24.com/rest/",
      server_endpoint: "https://oauth.bitrix.info/rest/",
      ...auth,
    },
  };
}

describe("installation: reading the installation POST", () => {
  it("reads the ONAPPINSTALL shape", () => {
    should(parseInstallation(authShape())).eql({
      shape: "auth",
      domain: "example.bitrix24.com",
      refreshToken: REFRESH,
      applicationToken: APP_TOKEN,
      memberId: "m1",
      clientEndpoint: "https://example.bitrix24.com/rest/",
      serverEndpoint: "https://oauth.bitrix.info/rest/",
    });
  });

  it("reads the placement shape: APPLICATION_TOKEN when sent, else APP_SID (CRest's reading)", () => {
    const placement = {
      DOMAIN: "example.bitrix24.com",
      PROTOCOL: "1",
      APP_SID: "s".repeat(32),
      AUTH_ID: "x".repeat(32),
      REFRESH_ID: REFRESH,
      member_id: "m1",
      PLACEMENT: "DEFAULT",
    };
    should(parseInstallation(placement)).match({
      shape: "placement",
      applicationToken: "s".repeat(32),
      clientEndpoint: "https://example.bitrix24.com/rest/",
      serverEndpoint: "",
    });
    should(parseInstallation({ ...placement, APPLICATION_TOKEN: APP_TOKEN }).applicationToken).equal(APP_TOKEN);
    should(parseInstallation({ ...placement, PROTOCOL: "0", DOMAIN: "127.0.0.1:8124" }).clientEndpoint).equal(
      "http://127.0.0.1:8124/rest/",
    );
  });

  it("names the missing or malformed field, never its value, with 400", () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ event: "ONOFFLINEEVENT" }, /not an installation/],
      [authShape({ refresh_token: "" }), /no auth\[refresh_token\]/],
      [authShape({ application_token: "" }), /no auth\[application_token\]/],
      [authShape({ domain: "evil.com/path?x" }), /auth\[domain\] is not a host name/],
      [authShape({ refresh_token: "has space" }), /auth\[refresh_token\] is malformed/],
      [{ PLACEMENT: "DEFAULT", DOMAIN: "example.bitrix24.com", APP_SID: APP_TOKEN }, /no REFRESH_ID/],
    ];
    for (const [body, message] of cases) {
      const err = (() => {
        try {
          parseInstallation(body);
        } catch (e) {
          return e;
        }
      })() as InstallationError;
      should(err).be.instanceOf(InstallationError);
      should(err.status).equal(400);
      should(err.message).match(message);
      should(err.message).not.containEql("has space");
    }
  });

  it("spends the refresh token only at the configured server or a known vendor server", () => {
    should(tokenServerFor("https://oauth.bitrix.info", "https://oauth.bitrix24.tech/rest/")).equal(
      "https://oauth.bitrix24.tech",
    );
    should(tokenServerFor("https://oauth.bitrix.info/", "https://oauth.stranger.example/rest/")).equal(
      "https://oauth.bitrix.info",
    );
    should(tokenServerFor("http://127.0.0.1:9", "")).equal("http://127.0.0.1:9");
    // Another port of the configured server's host: the admin trusts that host (the sandbox's second server).
    should(tokenServerFor("http://127.0.0.1:9", "http://127.0.0.1:10/rest/")).equal("http://127.0.0.1:10");
    should(tokenServerFor("https://oauth.example.com", "http://oauth.example.com:81/rest/")).equal(
      "https://oauth.example.com",
    );
  });
});

describe("installation: the gate in front of the OAuth server", () => {
  it("caps POSTs per window and lets them in again as the window moves", () => {
    let now = 0;
    const gate = new InstallGate(3, 1000, () => now);
    should([gate.admit(), gate.admit(), gate.admit(), gate.admit()]).eql([true, true, true, false]);
    now = 999;
    should(gate.admit()).be.false();
    now = 1000;
    should(gate.admit()).be.true();
  });

  it("remembers refresh tokens seen, and forgets one whose verification could not be asked", () => {
    const gate = new InstallGate();
    should(gate.isReplay(REFRESH)).be.false();
    should(gate.isReplay(REFRESH)).be.true();
    gate.forget(REFRESH);
    should(gate.isReplay(REFRESH)).be.false();
  });
});

describe("installation: verification and storage", () => {
  let oauth: Server;
  let oauthUrl: string;
  let answer: { status: number; body: unknown };
  let dir: string;

  before(async () => {
    oauth = createServer((_req, res) => {
      res.statusCode = answer.status;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(answer.body));
    });
    await new Promise<void>((r) => oauth.listen(0, "127.0.0.1", r));
    oauthUrl = `http://127.0.0.1:${(oauth.address() as AddressInfo).port}`;
  });
  after(() => oauth.close());
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "b24-installation-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const request = () => parseInstallation(authShape({ server_endpoint: "" }));
  const options = () => ({ clientId: "local.1", clientSecret: "s", oauthServer: oauthUrl, now: () => 42 });

  it("keeps the NEW pair and what the OAuth server confirmed", async () => {
    answer = {
      status: 200,
      body: {
        access_token: "A2",
        refresh_token: "R2",
        expires_in: 3600,
        domain: "example.bitrix24.com",
        member_id: "m1",
        client_endpoint: "https://example.bitrix24.com/rest/",
        server_endpoint: "https://oauth.bitrix.info/rest/",
      },
    };
    const verified = await verifyInstallation(request(), options());
    should(verified.tokens).match({ accessToken: "A2", refreshToken: "R2" });
    should(verified.portalUrl).equal("https://example.bitrix24.com");
    should(verified.installation).eql({
      applicationToken: APP_TOKEN,
      memberId: "m1",
      domain: "example.bitrix24.com",
      clientEndpoint: "https://example.bitrix24.com/rest/",
      serverEndpoint: "https://oauth.bitrix.info/rest/",
      installedAt: 42,
    });

    const store = new FileTokenStore(dir);
    await saveInstallation(store, "k", verified, "lineage");
    should(storedInstallation(store, "k")).eql(verified.installation);
    // A later save of rotated tokens (the session knows nothing of installations) keeps the installation.
    await store.withLock("k", () =>
      store.save("k", { accessToken: "A3", refreshToken: "R3", expiresAt: 1, deployedFingerprint: "x", updatedAt: 2 }),
    );
    should(await store.load("k")).match({ refreshToken: "R3", installation: verified.installation });
  });

  it("refuses (403) when the OAuth server says no, or says the token is another portal's", async () => {
    answer = { status: 400, body: { error: "invalid_grant", error_description: "Invalid refresh token" } };
    await should(verifyInstallation(request(), options())).be.rejectedWith({ name: "InstallationError", status: 403 });
    answer = { status: 200, body: { access_token: "A2", refresh_token: "R2", domain: "other.bitrix24.com" } };
    await should(verifyInstallation(request(), options())).be.rejectedWith(/belongs to other\.bitrix24\.com/);
    answer = { status: 200, body: { access_token: "A2", refresh_token: "R2", member_id: "m2" } };
    await should(verifyInstallation(request(), options())).be.rejectedWith(/another member_id/);
  });

  // The answer as the OAuth docs print it (settings/oauth/index.md) and as test/contract/oauth-token-bitrix-info.json
  // records it: `domain` is the OAuth server's own host, the portal is only in client_endpoint and member_id.
  it("accepts a real-shaped answer: domain is oauth.bitrix.info, the portal is client_endpoint's host", async () => {
    answer = {
      status: 200,
      body: {
        access_token: "A2",
        client_endpoint: "https://example.bitrix24.com/rest/",
        domain: "oauth.bitrix.info",
        expires_in: 3600,
        member_id: "m1",
        refresh_token: "R2",
        scope: "app",
        server_endpoint: "https://oauth.bitrix.info/rest/",
        status: "L",
      },
    };
    const verified = await verifyInstallation(request(), options());
    should(verified.portalUrl).equal("https://example.bitrix24.com");
    should(verified.installation).match({ domain: "example.bitrix24.com", memberId: "m1" });
  });

  it("refuses a real-shaped answer for another portal, another member, or none named", async () => {
    const real = {
      access_token: "A2",
      refresh_token: "R2",
      domain: "oauth.bitrix.info",
      member_id: "m1",
      client_endpoint: "https://example.bitrix24.com/rest/",
    };
    answer = { status: 200, body: { ...real, client_endpoint: "https://other.bitrix24.com/rest/" } };
    await should(verifyInstallation(request(), options())).be.rejectedWith(/belongs to other\.bitrix24\.com/);
    answer = { status: 200, body: { ...real, member_id: "m2" } };
    await should(verifyInstallation(request(), options())).be.rejectedWith(/another member_id/);
    // Only the OAuth server's own host, nothing about the portal: not a confirmation of anything.
    answer = { status: 200, body: { access_token: "A2", refresh_token: "R2", domain: "oauth.bitrix.info" } };
    await should(verifyInstallation(request(), options())).be.rejectedWith({ status: 403 });
    const placement = parseInstallation({
      PLACEMENT: "DEFAULT",
      DOMAIN: "example.bitrix24.com",
      APP_SID: APP_TOKEN,
      AUTH_ID: "x".repeat(32),
      REFRESH_ID: REFRESH,
    });
    answer = { status: 200, body: { access_token: "A2", refresh_token: "R2", member_id: "m1" } };
    await should(verifyInstallation(placement, options())).be.rejectedWith(/does not say which portal/);
  });

  it("answers 502 when the OAuth server cannot be asked or answers garbage", async () => {
    answer = { status: 502, body: "<html>" };
    await should(verifyInstallation(request(), options())).be.rejectedWith({ name: "InstallationError", status: 502 });
    await should(verifyInstallation(request(), { ...options(), oauthServer: "http://127.0.0.1:1" })).be.rejectedWith({
      name: "InstallationError",
      status: 502,
    });
  });
});
