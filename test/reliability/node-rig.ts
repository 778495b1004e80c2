import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Node, NodeAPI, NodeDef } from "node-red";
import helper from "node-red-node-test-helper";
import type { PortalNode } from "../../src/nodes/bitrix24-portal/bitrix24-portal";
import type { Sandbox } from "../../src/sandbox";
import { DeliveryBook, FaultCounter } from "./ledger";

/** The build output, as Node-RED loads it (`npm run build` first). */
export const nodes = {
  portal: require("../../nodes/nodes/bitrix24-portal/bitrix24-portal.js").default,
  get: require("../../nodes/nodes/bitrix24-offline-get/bitrix24-offline-get.js").default,
  clear: require("../../nodes/nodes/bitrix24-offline-clear/bitrix24-offline-clear.js").default,
  error: require("../../nodes/nodes/bitrix24-offline-error/bitrix24-offline-error.js").default,
  trigger: require("../../nodes/nodes/bitrix24-offline-trigger/bitrix24-offline-trigger.js").default,
  list: require("../../nodes/nodes/bitrix24-offline-list/bitrix24-offline-list.js").default,
};

helper.init(require.resolve("node-red"));

export { helper };

/** A sinon spy as node-red-node-test-helper installs it on Node.prototype: shared by EVERY node. */
interface PrototypeSpy {
  args: unknown[][];
  thisValues: unknown[];
}

/** The spied Node methods of node-red-node-test-helper. */
export interface SpiedNode {
  status: PrototypeSpy;
  error: PrototypeSpy;
  warn: PrototypeSpy;
  log: PrototypeSpy;
  receive(msg: Record<string, unknown>): void;
}

export interface StatusArg {
  fill?: string;
  shape?: string;
  text?: string;
}

/** The calls of one spied method made by THIS node (the spy itself records every node's calls). */
export function callsOf(node: SpiedNode, method: "status" | "error" | "warn" | "log"): unknown[][] {
  const spy = node[method];
  return spy.args.filter((_args, i) => spy.thisValues[i] === node);
}

export function statusesOf(node: SpiedNode): StatusArg[] {
  return callsOf(node, "status").map((args) => args[0] as StatusArg);
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** Node-RED's httpNode app of the current load: the helper does not serve it, our own server does. */
let httpNode: Handler | undefined;
export function captureHttpNode(RED: NodeAPI): void {
  httpNode = RED.httpNode as unknown as Handler;
}

/** Serves RED.httpNode of whatever flow is loaded (for the trigger's endpoint). */
export async function startHttpNodeServer(): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (httpNode) httpNode(req, res);
    else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A flow stage that holds every msg (a flow that dies before it acks): nothing passes on. */
export function blackHoleNode(RED: NodeAPI): void {
  function BlackHole(this: Node, config: NodeDef) {
    RED.nodes.createNode(this, config);
    this.on("input", (_msg, _send, done) => done());
  }
  RED.nodes.registerType("test-black-hole", BlackHole);
}

export function freshUserDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "b24-rel-nr-"));
  helper.settings({ userDir: dir, httpNodeRoot: "/" });
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export function portalConfig(sandbox: Sandbox, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: "p",
    type: "bitrix24-portal",
    portalUrl: sandbox.url,
    authType: "oauth",
    oauthServer: sandbox.url,
    rateLimit: 100,
    rateBurst: 100,
    ...extra,
  };
}

export function portalCredentials(sandbox: Sandbox, extra: Record<string, string> = {}) {
  const c = sandbox.credentials;
  return {
    p: {
      clientId: c.clientId,
      clientSecret: c.clientSecret,
      accessToken: c.accessToken,
      refreshToken: c.refreshToken,
      applicationToken: c.applicationToken,
      ...extra,
    },
  };
}

export const GET_DEFAULTS = {
  type: "bitrix24-offline-get",
  portal: "p",
  limit: 50,
  mode: "ack",
  filter: "",
  order: "",
  errorRecords: false,
  authConnector: "",
  output: "event",
  drain: true,
  maxInFlight: 500,
  ackTimeout: 300,
  maxDeliveries: 3,
  prefetch: 1,
  allowAtMostOnce: false,
  orphanSweep: false,
};

export interface LoadedFlow {
  book: DeliveryBook;
  counter: FaultCounter;
  portal: PortalNode;
  get: SpiedNode;
  /** Msgs that reached each helper node, by id. */
  seen: Record<string, Array<Record<string, unknown>>>;
}

/**
 * Loads a flow (portal "p" + the given nodes), watches the portal's client for faults and token requests, and
 * books deliveries (msgs into helper "out") and acks (msgs into helper "acked") by record id.
 */
export async function loadFlow(
  sandbox: Sandbox,
  flow: Array<Record<string, unknown>>,
  options: {
    portal?: Record<string, unknown>;
    credentials?: Record<string, string>;
    book?: DeliveryBook;
    /** Output 1 of the get node also feeds a clear node: every msg into "out" is an ack the flow asks for. */
    clearWired?: boolean;
  } = {},
): Promise<LoadedFlow> {
  const all = [portalConfig(sandbox, options.portal), ...flow] as Parameters<typeof helper.load>[1];
  await helper.load(
    [nodes.portal, nodes.get, nodes.clear, nodes.error, nodes.trigger, nodes.list, blackHoleNode, captureHttpNode],
    all,
    portalCredentials(sandbox, options.credentials),
  );
  const portal = helper.getNode("p") as unknown as PortalNode;
  const counter = new FaultCounter();
  if (portal.client) counter.watch(portal.client);
  const book = options.book ?? new DeliveryBook();
  const seen: LoadedFlow["seen"] = {};
  for (const n of flow) {
    if (n.type !== "helper") continue;
    const id = String(n.id);
    seen[id] = [];
    helper.getNode(id).on("input", (msg: Record<string, unknown>) => {
      seen[id].push(msg);
      const meta = msg.bitrix24 as { id?: number } | undefined;
      if (id === "out" && meta?.id) {
        book.deliver(meta.id);
        if (options.clearWired) book.request(meta.id);
      }
      if (id === "acked" && meta?.id) book.ack(meta.id);
    });
  }
  return { book, counter, portal, get: helper.getNode("g") as unknown as SpiedNode, seen };
}

export function lastStatus(node: SpiedNode): StatusArg | undefined {
  const all = statusesOf(node);
  return all[all.length - 1];
}
