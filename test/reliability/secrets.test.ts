import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { inspect } from "node:util";
import axios from "axios";
import should from "should";
import { Bitrix24Client } from "../../src/core/client/client";
import type { Bitrix24Error } from "../../src/core/rest/errors";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { listNode, triggerNode } from "../kit/flows.cjs";
import { adminPost, nodeRedPerTest } from "../kit/node-red";
import { record, until } from "./ledger";
import { callsOf, GET_DEFAULTS, helper, loadFlow, type SpiedNode, startHttpNodeServer } from "./node-rig";

// Node-RED's runtime APIs behind GET /flows and GET /credentials/:type/:id, and the debug sidebar's encoder.
const flowsApi = require("@node-red/runtime/lib/api/flows");
const { util: redUtil } = require("@node-red/util");

/** Distinctive values: if any of them shows up anywhere outside the credentials and the token file, it leaked. */
const CANARY = {
  clientSecret: "CSx-canary-5e1f0c9b7a3d4e21",
  accessToken: "ATx-canary-9b2d7e4f1a6c3b85",
  refreshToken: "RTx-canary-3c8a1f6e2d9b7041",
  applicationToken: "APPx-canary-7d4e2a9c1f3b6e58",
  webhookSecret: "WHxcanary6a2f9d1e",
  notificationAccess: "NAx-canary-0f7e3d9a2c5b1e64",
  notificationRefresh: "NRx-canary-4b9e1d7c3a8f2e06",
};

/**
 * Secrets stay in Node-RED's credentials and the 0600 token file: never in flow exports, msgs, status texts,
 * logs (as Node-RED renders them and as the objects handed to any log handler), the debug sidebar, admin
 * endpoint answers or error messages. The test drives a whole flow through refreshes, failures, bad msgs and
 * notifications, then greps everything it captured for every known secret, the rotated tokens included.
 */
describe("reliability: secrets never leak", function () {
  this.timeout(30000);
  let sandbox: Sandbox;
  const t = nodeRedPerTest({ httpNodeRoot: "/" }, () => sandbox);
  let server: Awaited<ReturnType<typeof startHttpNodeServer>>;

  before(async () => {
    server = await startHttpNodeServer();
  });

  after(async () => {
    await server.close();
  });

  beforeEach(async () => {
    sandbox = await startSandbox({
      rateLimit: false,
      events: 40,
      credentials: {
        clientSecret: CANARY.clientSecret,
        accessToken: CANARY.accessToken,
        refreshToken: CANARY.refreshToken,
        applicationToken: CANARY.applicationToken,
        webhookUrl: `http://127.0.0.1/rest/1/${CANARY.webhookSecret}/`,
      },
    });
  });

  /** On a tab, as in a real flows file (ids must not equal a type: Node-RED would read that as a reference). */
  function inTab(flow: Array<Record<string, unknown>>): Array<Record<string, unknown>> {
    return [{ id: "f1", type: "tab", label: "secrets" }, ...flow.map((n) => ({ ...n, z: "f1" }))];
  }

  /** Every place a secret could surface, as text. */
  function findSecrets(haystack: Record<string, string>, secrets: string[]): string[] {
    const found: string[] = [];
    for (const [where, text] of Object.entries(haystack)) {
      for (const secret of secrets) if (text.includes(secret)) found.push(`${where} contains ${secret.slice(0, 12)}…`);
    }
    return found;
  }

  /** The same three views Node-RED gives of a log entry: the console line, the sidebar JSON, the raw object. */
  function logViews(entries: unknown[][]): { console: string; sidebar: string; objects: string } {
    const lines: string[] = [];
    const sidebar: string[] = [];
    const objects: string[] = [];
    for (const [entry] of entries) {
      const e = entry as { msg?: unknown; level?: number };
      const m = e?.msg;
      lines.push(m instanceof Error ? `${m.toString()}\n${m.stack}` : typeof m === "string" ? m : inspect(m));
      sidebar.push(JSON.stringify(redUtil.encodeObject({ ...e }, { maxLength: 100000 })));
      objects.push(inspect(entry, { depth: 12, showHidden: false, maxStringLength: Infinity }));
    }
    return { console: lines.join("\n"), sidebar: sidebar.join("\n"), objects: objects.join("\n") };
  }

  it("flow exports, credentials API, msgs, Catch, statuses, logs, sidebar, admin answers and errors hold no secret", async () => {
    const flow = await loadFlow(
      sandbox,
      inTab([
        triggerNode({ id: "t", path: "/b24/secret", followUp: 0, minGap: 0, wires: [["g", "pushes"]] }),
        { id: "g", ...GET_DEFAULTS, limit: 10, wires: [["out", "c"], ["empty"], ["dead"]] },
        { id: "c", type: "bitrix24-offline-clear", portal: "p", wires: [["acked"]] },
        { id: "e", type: "bitrix24-offline-error", portal: "p", wires: [["marked"]] },
        listNode({ id: "l", wires: [["listed"]] }),
        { id: "cat", type: "catch", scope: null, uncaught: false, wires: [["caught"]] },
        { id: "st", type: "status", scope: null, wires: [["statuses"]] },
        // A second get on its own queue (another connector) that nobody acks: its redeliveries fail in the
        // background (no msg, no Catch), the one error path that is not a reply to an input.
        { id: "g2", ...GET_DEFAULTS, authConnector: "other", ackTimeout: 0.1, wires: [["out2"], [], []] },
        ...["out", "out2", "acked", "empty", "dead", "marked", "listed", "caught", "statuses", "pushes"].map((id) => ({
          id,
          type: "helper",
        })),
      ]),
      {
        credentials: { webhookUrl: `${sandbox.url}/rest/1/${CANARY.webhookSecret}/` },
        clearWired: true,
      },
    );
    const rotated: string[] = [];
    flow.portal.client?.on("tokens", (t: { accessToken: string; refreshToken: string }) =>
      rotated.push(t.accessToken, t.refreshToken),
    );
    const get = flow.get;
    const list = helper.getNode("l") as unknown as SpiedNode;
    const errorNode = helper.getNode("e") as unknown as SpiedNode;
    const clearNode = helper.getNode("c") as unknown as SpiedNode;

    // 1. A push carrying the portal's tokens in its auth block, then a drain (refresh on the way).
    sandbox.expireTokens();
    const push = new URLSearchParams({
      event: "ONOFFLINEEVENT",
      ts: "1700000100",
      "auth[access_token]": CANARY.notificationAccess,
      "auth[refresh_token]": CANARY.notificationRefresh,
      "auth[application_token]": CANARY.applicationToken,
    }).toString();
    const pushed = await axios.post(`${server.url}/b24/secret`, push, {
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      validateStatus: () => true,
    });
    should(pushed.status).equal(200);
    await until(() => flow.book.acks === 40, 5000, "the drain after the push");
    should(rotated.length).be.above(0);

    // 2. Failures of every kind: transport (timeouts, resets), portal errors, refused refresh, bad msgs.
    sandbox.addEvents(5, { connector: "other" });
    const g2 = helper.getNode("g2") as unknown as SpiedNode;
    g2.receive({});
    await until(() => (flow.seen.out2?.length ?? 0) === 5, 3000, "the unacked deliveries of g2");
    sandbox.setFaults({ dropAfterRate: 1 });
    await until(() => callsOf(g2, "error").length >= 1, 15000, "a background redelivery failure (after retries)");
    sandbox.setFaults({});
    sandbox.addEvents(10);
    /** One failing msg at a time, each under its own fault, until the Catch node has it. */
    const failWith = async (
      faults: Parameters<Sandbox["setFaults"]>[0],
      node: SpiedNode,
      msg: Record<string, unknown>,
    ) => {
      const before = flow.seen.caught.length;
      sandbox.setFaults(faults);
      node.receive(msg);
      await until(() => flow.seen.caught.length > before, 12000, `a caught error under ${JSON.stringify(faults)}`);
      sandbox.setFaults({});
    };
    await failWith({ errorRate: 1, errorCode: "PORTAL_DELETED" }, get, {});
    await failWith({ errorRate: 1, errorCode: "PORTAL_DELETED" }, list, {});
    await failWith({}, errorNode, { processId: "x".repeat(32), messageIds: "nope" });
    await failWith({}, clearNode, { payload: { ID: "1" } });
    await failWith({}, get, { filter: { "=AUTH": "x" } });
    sandbox.revokeRefreshTokens();
    sandbox.expireTokens();
    await failWith({}, get, {});
    await failWith({}, list, {});

    // 3. The admin endpoints the editor calls.
    const tested = await adminPost("/bitrix24-portal/test", sandbox.url, {
      oauthServer: sandbox.url,
      credentials: { clientId: sandbox.credentials.clientId, clientSecret: "__PWRD__", accessToken: "__PWRD__" },
    });
    const testedWrong = await adminPost(
      "/bitrix24-portal/test",
      `http://admin:${CANARY.clientSecret}@example.bitrix24.com`,
      {
        credentials: { clientSecret: CANARY.clientSecret },
      },
    );
    const authorize = await helper
      .request()
      .post("/bitrix24-portal/authorize")
      .send({ id: "p", portalUrl: sandbox.url, oauthServer: sandbox.url, callbackUrl: "http://127.0.0.1/cb" });

    // 4. What the editor reads back: the flows (GET /flows) and the node's credentials (GET /credentials/...).
    const redNodes = (helper as unknown as { _redNodes: unknown })._redNodes;
    flowsApi.init({ log: { audit() {} }, flows: redNodes, nodes: redNodes });
    const exported = await flowsApi.getFlows({});
    const creds = await flowsApi.getNodeCredentials({ type: "bitrix24-portal", id: "p" });
    should(creds).match({ has_clientSecret: true, has_accessToken: true, has_refreshToken: true });

    const log = logViews((helper.log() as unknown as { args: unknown[][] }).args);
    const spied = get as unknown as SpiedNode;
    const haystack: Record<string, string> = {
      "flow export (GET /flows)": JSON.stringify(exported),
      "credentials API (GET /credentials)": JSON.stringify(creds),
      msgs: inspect(flow.seen, { depth: 12, maxStringLength: Infinity }),
      "status texts": inspect(spied.status.args, { depth: 6 }),
      "node.error/warn/log args": inspect([spied.error.args, spied.warn.args, spied.log.args], { depth: 12 }),
      "console log": log.console,
      "debug sidebar": log.sidebar,
      "log entries as objects": log.objects,
      "Test connection answers": JSON.stringify([tested.body, testedWrong.body]),
      "Authorize answer": JSON.stringify(authorize.body),
      // the journals and the instance registry's entries (instances/), every file but the token file
      "journal files": readdirSync(join(t.userDir, ".bitrix24-offline-events"), {
        recursive: true,
        withFileTypes: true,
      })
        .filter((f) => f.isFile() && !f.name.endsWith(".tokens.json"))
        .map((f) => readFileSync(join(f.parentPath, f.name), "utf8"))
        .join("\n"),
    };
    const secrets = [...Object.values(CANARY), ...rotated.filter((t) => t.length >= 16)];
    const leaks = findSecrets(haystack, secrets);

    record({
      area: "secrets",
      scenario: `${Object.keys(haystack).length} surfaces × ${secrets.length} secrets`,
      created: 50,
      delivered: flow.book.deliveries,
      acked: flow.book.acks,
      badInputs: 4,
    });
    should(leaks).eql([]);

    // Sanity: the run did exercise the failure paths whose text we grepped.
    // (Errors a Catch node handles are not logged by Node-RED: they reach the Catch's msg.error instead.)
    const caught = JSON.stringify(flow.seen.caught.map((m) => m.error));
    should(caught).match(/PORTAL_DELETED/);
    should(caught).match(/re-authorise/);
    should(log.console).match(/NETWORK_ERROR/); // the background failure: logged, no Catch

    // The token file is where the rotated tokens live: owner-only.
    const dir = join(t.userDir, ".bitrix24-offline-events");
    const tokenFile = readdirSync(dir).find((f) => f.endsWith(".tokens.json"));
    should(statSync(join(dir, tokenFile!)).mode & 0o777).equal(0o600);
  });

  it("errors of the core client name no secret (URL validation, OAuth and transport failures)", async () => {
    const found: string[] = [];
    const check = (where: string, err: unknown) => {
      const e = err as Bitrix24Error;
      const text = [e.message, e.description, JSON.stringify(e.toJSON?.()), String(e.cause)].join("\n");
      for (const secret of Object.values(CANARY)) if (text.includes(secret)) found.push(`${where}: ${secret}`);
    };
    const attempt = async (where: string, fn: () => unknown) => {
      try {
        await fn();
        found.push(`${where}: did not fail`);
      } catch (err) {
        check(where, err);
      }
    };
    const c = sandbox.credentials;
    const oauth = (extra: Record<string, unknown> = {}) => ({
      portalUrl: sandbox.url,
      auth: { type: "oauth" as const, ...c, oauthServer: sandbox.url, ...extra },
      rateLimit: false as const,
      retry: { maxAttempts: 1 },
    });
    await attempt(
      "http webhook URL",
      () =>
        new Bitrix24Client({
          portalUrl: sandbox.url,
          auth: { type: "webhook", webhookUrl: `http://example.com/rest/1/${CANARY.webhookSecret}/` },
        }),
    );
    await attempt(
      "webhook URL without user id",
      () =>
        new Bitrix24Client({
          portalUrl: sandbox.url,
          auth: { type: "webhook", webhookUrl: `https://example.com/rest/${CANARY.webhookSecret}/` },
        }),
    );
    await attempt(
      "portal URL with a password",
      () => new Bitrix24Client({ ...oauth(), portalUrl: `http://u:${CANARY.clientSecret}@example.com` }),
    );
    await attempt(
      "OAuth server with a password",
      () => new Bitrix24Client(oauth({ oauthServer: `https://u:${CANARY.clientSecret}@example.com` })),
    );
    const refused = new Bitrix24Client(oauth({ clientSecret: `${CANARY.clientSecret}-wrong` }));
    sandbox.expireTokens();
    await attempt("refresh with a wrong secret", () => refused.call("event.offline.list"));
    refused.close();
    sandbox.setFaults({ latencyMs: 500 });
    const slow = new Bitrix24Client({ ...oauth(), timeoutMs: 50 });
    await attempt("timeout", () => slow.call("event.offline.list"));
    slow.close();
    sandbox.setFaults({ dropBeforeRate: 1 });
    const reset = new Bitrix24Client(oauth());
    await attempt("connection reset", () => reset.call("event.offline.list"));
    reset.close();
    record({ area: "secrets", scenario: "core client error texts", badInputs: 7 });
    should(found).eql([]);
  });
});
