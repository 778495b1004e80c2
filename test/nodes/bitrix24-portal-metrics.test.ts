import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import axios from "axios";
import type { NodeAPI } from "node-red";
import helper from "node-red-node-test-helper";
import should from "should";
import type { PortalNode } from "../../src/nodes/bitrix24-portal/portal-config";
import { type Sandbox, startSandbox } from "../../src/sandbox";
import { until } from "../wait";

// The build output, as Node-RED loads it.
const portalNode = require("../../nodes/nodes/bitrix24-portal/bitrix24-portal.js").default;
const getNode = require("../../nodes/nodes/bitrix24-offline-get/bitrix24-offline-get.js").default;
const clearNode = require("../../nodes/nodes/bitrix24-offline-clear/bitrix24-offline-clear.js").default;

helper.init(require.resolve("node-red"));

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
const METRICS = "/b24/metrics";

/** Sample values of one metric, keyed by the label named `by`. */
function samples(text: string, name: string, by: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    const label = new RegExp(`${by}="([^"]*)"`).exec(line)?.[1] ?? "";
    out[label] = (out[label] ?? 0) + Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return out;
}

describe("bitrix24-portal metricsPath (Prometheus)", function () {
  this.timeout(20000);
  let sandbox: Sandbox;
  let userDir: string;
  let server: Server;
  let url: string;
  /** Node-RED's httpNode app of the current load: the helper does not serve it, this test's server does. */
  let httpNode: Handler | undefined;
  const captureHttpNode = (RED: NodeAPI) => {
    httpNode = RED.httpNode as unknown as Handler;
  };

  before(async () => {
    server = createServer((req, res) => {
      if (httpNode) httpNode(req, res);
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  afterEach(async () => {
    await helper.unload();
    httpNode = undefined;
    await sandbox?.close();
    rmSync(userDir, { recursive: true, force: true });
  });

  async function load(portal: Record<string, unknown>, settings: Record<string, unknown> = {}): Promise<void> {
    userDir = mkdtempSync(join(tmpdir(), "b24-metrics-"));
    helper.settings({ userDir, httpNodeRoot: "/", ...settings });
    const c = sandbox.credentials;
    const flow = [
      {
        id: "p",
        type: "bitrix24-portal",
        portalUrl: sandbox.url,
        authType: "oauth",
        oauthServer: sandbox.url,
        rateLimit: 50,
        rateBurst: 50,
        ...portal,
      },
      { id: "g", type: "bitrix24-offline-get", portal: "p", limit: 50, wires: [["c"], [], []] },
      { id: "c", type: "bitrix24-offline-clear", portal: "p", by: "id", wires: [[]] },
    ];
    const credentials = {
      p: {
        clientId: c.clientId,
        clientSecret: c.clientSecret,
        accessToken: c.accessToken,
        refreshToken: c.refreshToken,
        applicationToken: c.applicationToken,
      },
    };
    await helper.load([portalNode, getNode, clearNode, captureHttpNode], flow, credentials);
  }

  it("after a drain, the scraped counts are the sandbox's own; nothing secret in the text", async () => {
    sandbox = await startSandbox({ rateLimit: false, events: 230 });
    await load({ metricsPath: METRICS });
    helper.getNode("g").receive({ payload: "go" });
    await until(() => sandbox.stats().queue.total === 0, 15000, "the queue drained and acked");
    const stats = sandbox.stats();
    // the last clear's "acked" notice is handled right after its answer: one scrape may come before it
    let text = "";
    for (let i = 0; i < 50; i++) {
      text = (await axios.get(`${url}${METRICS}`)).data as string;
      if (samples(text, "bitrix24_events_acked_total", "node").g === stats.deleted) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    should(stats.created).equal(230);
    should(samples(text, "bitrix24_events_delivered_total", "node")).eql({ g: stats.created });
    should(samples(text, "bitrix24_events_acked_total", "node")).eql({ g: stats.deleted });
    // every request the sandbox answered on /rest/, by method (the client labels them as it sent them)
    const requests = samples(text, "bitrix24_requests_total", "method");
    const sandboxRequests = Object.fromEntries(
      Object.entries(sandbox.stats().requests.byMethod).map(([m, n]) => [m.toLowerCase(), n]),
    );
    should(Object.fromEntries(Object.entries(requests).map(([m, n]) => [m.toLowerCase(), n]))).eql(sandboxRequests);
    should(samples(text, "bitrix24_events_unacked", "node")).eql({ g: 0 });
    should(text).match(/bitrix24_bucket_fill_ratio\{[^}]*portal="127\.0\.0\.1:\d+"/);
    should(text).match(/nodered_instance="[^"]+"/);
    const c = sandbox.credentials;
    for (const secret of [c.clientSecret, c.accessToken, c.refreshToken, c.applicationToken]) {
      should(text.includes(secret)).be.false();
    }
  });

  it("every failure a node of the portal reports lands in the sidebar's recent errors, once", async () => {
    sandbox = await startSandbox({ rateLimit: false, events: 0 });
    await load({});
    const portal = helper.getNode("p") as unknown as PortalNode;
    // a clear node handed a msg with nothing to clear, and a get node a bad limit
    helper.getNode("c").receive({ payload: "nothing to clear" });
    helper.getNode("g").receive({ payload: "go", limit: -1 });
    await until(() => (portal.ops?.metrics.snapshot().errors.length ?? 0) >= 2, 5000, "two errors listed");
    await new Promise((r) => setTimeout(r, 100));
    const errors = portal.ops?.metrics.snapshot().errors ?? [];
    should(errors.map((e) => [e.nodeId, e.code]).sort()).eql([
      ["c", "INVALID_ARGUMENT"],
      ["g", "INVALID_ARGUMENT"],
    ]);
  });

  it("is secured like http in: httpNodeMiddleware runs before it", async () => {
    sandbox = await startSandbox({ rateLimit: false, events: 0 });
    const middleware = (req: IncomingMessage, res: ServerResponse, next: () => void) => {
      if (req.headers.authorization === "Bearer scraper") next();
      else res.writeHead(401).end();
    };
    await load({ metricsPath: "b24/metrics" }, { httpNodeMiddleware: middleware });
    const refused = await axios.get(`${url}${METRICS}`, { validateStatus: () => true });
    should(refused.status).equal(401);
    const ok = await axios.get(`${url}${METRICS}`, { headers: { authorization: "Bearer scraper" } });
    should(ok.status).equal(200);
    should(String(ok.headers["content-type"])).equal("text/plain; version=0.0.4; charset=utf-8");
  });

  it("serves nothing when metricsPath is empty (flows saved before the option)", async () => {
    sandbox = await startSandbox({ rateLimit: false, events: 0 });
    await load({});
    const answer = await axios.get(`${url}${METRICS}`, { validateStatus: () => true });
    should(answer.status).equal(404);
  });
});
