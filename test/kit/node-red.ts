import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Node, NodeAPI, NodeDef } from "node-red";
import helper from "node-red-node-test-helper";
import type { PortalNode } from "../../src/nodes/bitrix24-portal/bitrix24-portal";
import type { EventMessage } from "../../src/nodes/shared/msg-contract";
import { type Sandbox, type SandboxOptions, startSandbox } from "../../src/sandbox";
import { type FlowNode, portalConfig, portalCredentials } from "./flows.cjs";

/**
 * Node-RED in a test (node-red-node-test-helper): the nodes as the build ships them, the sandbox each test
 * starts, a fresh user directory per test, the spied node methods, and the flows of flows.cjs around a portal.
 * A node test states only its own nodes and what it checks.
 */

/** The build output, as Node-RED loads it (`npm run build` first). */
export const nodes = {
  portal: require("../../nodes/nodes/bitrix24-portal/bitrix24-portal.js").default,
  get: require("../../nodes/nodes/bitrix24-offline-get/bitrix24-offline-get.js").default,
  clear: require("../../nodes/nodes/bitrix24-offline-clear/bitrix24-offline-clear.js").default,
  error: require("../../nodes/nodes/bitrix24-offline-error/bitrix24-offline-error.js").default,
  trigger: require("../../nodes/nodes/bitrix24-offline-trigger/bitrix24-offline-trigger.js").default,
  list: require("../../nodes/nodes/bitrix24-offline-list/bitrix24-offline-list.js").default,
  call: require("../../nodes/nodes/bitrix24-call/bitrix24-call.js").default,
  postgres: require("../../nodes/nodes/bitrix24-postgres/bitrix24-postgres.js").default,
  /** Node-RED's own Catch node: errors reach a flow through it (msg.error.code). */
  catch: require("@node-red/nodes/core/common/25-catch.js"),
};

helper.init(require.resolve("node-red"));

export { helper };

/** A sinon spy as node-red-node-test-helper installs it on Node.prototype: shared by EVERY node. */
interface PrototypeSpy<A extends unknown[] = unknown[]> {
  args: A[];
  thisValues: unknown[];
}

/** The spied Node methods of node-red-node-test-helper. */
export interface SpiedNode {
  status: PrototypeSpy<[StatusArg]>;
  error: PrototypeSpy;
  warn: PrototypeSpy;
  log: PrototypeSpy;
  receive(msg: Record<string, unknown>): void;
  on(event: string, fn: (...args: unknown[]) => void): void;
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

/** What a node handed to node.error (the Catch node's view): the error and the msg, with the parts tests read. */
export type ReportedError = [
  { code: string; message: string },
  { _tag?: string; bitrix24: { error: { code: string } } },
];

/** The `i`-th error the spied `node` reported (any node's, as the spy records them: tests look at one node). */
export function reportedError(node: Pick<SpiedNode, "error">, i = 0): ReportedError {
  return node.error.args[i] as ReportedError;
}

export function statusesOf(node: SpiedNode): StatusArg[] {
  return callsOf(node, "status").map((args) => args[0] as StatusArg);
}

export function lastStatus(node: SpiedNode): StatusArg | undefined {
  const all = statusesOf(node);
  return all[all.length - 1];
}

export function spied(id: string): SpiedNode {
  return helper.getNode(id) as unknown as SpiedNode;
}

/** The msgs that reach helper node `id` from now on. */
export function collect<T = Record<string, unknown>>(id: string): T[] {
  const msgs: T[] = [];
  helper.getNode(id).on("input", (msg: unknown) => msgs.push(msg as T));
  return msgs;
}

/** The next msg into helper node `id`. */
export function nextMsg<T = Record<string, unknown>>(id: string): Promise<T> {
  return new Promise((resolve) => helper.getNode(id).once("input", (msg: unknown) => resolve(msg as T)));
}

/** Helper nodes (they record what reaches them), one per id. */
export function helpers(...ids: string[]): Array<{ id: string; type: string }> {
  return ids.map((id) => ({ id, type: "helper" }));
}

/** A Catch node "k" for the nodes of `scope`, wired to helper "caught" (which this adds too). */
export function caught(scope: string[]): Array<{ id: string; type: string; [key: string]: unknown }> {
  return [
    { id: "k", type: "catch", scope, uncaught: false, wires: [["caught"]] },
    { id: "caught", type: "helper" },
  ];
}

/**
 * A POST from the editor to one of the portal node's admin endpoints (Test connection, Authorize) about portal
 * "p" at `portalUrl`; `body` adds what differs. Answers as supertest does (`.expect(200)`, `.body`).
 */
export function adminPost(path: string, portalUrl: string, body: Record<string, unknown>) {
  return helper
    .request()
    .post(path)
    .send({ id: "p", portalUrl, ...body });
}

export function freshUserDir(settings: Record<string, unknown> = { httpNodeRoot: "/" }): string {
  const dir = mkdtempSync(join(tmpdir(), "b24-nr-"));
  helper.settings({ userDir: dir, ...settings });
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface NodeRedTest {
  /** The sandbox of the current test (after start(); undefined before). */
  sandbox: Sandbox;
  /** The sandbox of whichever test runs when it is used: for a suite to hold in a `const`. */
  readonly current: Sandbox;
  /** This test's Node-RED user directory. */
  userDir: string;
  /** Starts the sandbox, by default without its rate limit. */
  start(options?: SandboxOptions): Promise<Sandbox>;
  /**
   * Loads portal "p" on the sandbox (portalConfig, its credentials) and `flow`; `types` are the node modules
   * besides the portal's (helper nodes need none).
   */
  load(
    types: unknown[],
    flow: FlowNode[],
    options?: { portal?: FlowNode; credentials?: Record<string, string> },
  ): Promise<void>;
}

/**
 * The life of a Node-RED node test, as mocha hooks: before each test a fresh user directory; after each the
 * flow unloaded (the nodes closed), the sandbox closed and the directory removed, in that order.
 */
export function nodeRedPerTest(
  settings: Record<string, unknown> = {},
  /** A sandbox the test starts itself (instead of start()): closed after each test too. */
  own?: () => Sandbox | undefined,
): NodeRedTest {
  let closed: Sandbox | undefined;
  const t = {
    userDir: "",
    async start(options: SandboxOptions = {}) {
      t.sandbox = await startSandbox({ rateLimit: false, ...options });
      return t.sandbox;
    },
    async load(
      types: unknown[],
      flow: FlowNode[],
      options: { portal?: FlowNode; credentials?: Record<string, string> } = {},
    ) {
      const all = [portalConfig(t.sandbox, options.portal), ...flow] as Parameters<typeof helper.load>[1];
      const credentials = { p: portalCredentials(t.sandbox, options.credentials) };
      await helper.load([nodes.portal, ...types] as Parameters<typeof helper.load>[0], all, credentials);
    },
  } as NodeRedTest;
  Object.defineProperty(t, "current", {
    value: new Proxy({} as Sandbox, {
      get(_target, property) {
        if (!t.sandbox) throw new Error("no sandbox: start() it in the test or a beforeEach");
        const value: unknown = Reflect.get(t.sandbox, property, t.sandbox);
        return typeof value === "function" ? value.bind(t.sandbox) : value;
      },
    }),
  });
  beforeEach(() => {
    t.userDir = freshUserDir(settings);
  });
  afterEach(async () => {
    await helper.unload();
    // A test's own sandbox variable outlives the test: one already closed is not closed twice.
    const sandbox = own?.() ?? t.sandbox;
    if (sandbox && sandbox !== closed) await sandbox.close();
    closed = sandbox;
    removeDir(t.userDir);
    t.sandbox = undefined as unknown as Sandbox;
  });
  return t;
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** Node-RED's httpNode app of the current load: the helper does not serve it, our own server does. */
let httpNode: Handler | undefined;
export function captureHttpNode(RED: NodeAPI): void {
  httpNode = RED.httpNode as unknown as Handler;
}

/** Serves RED.httpNode of whatever flow is loaded (for the trigger's and the installation's endpoints). */
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

/**
 * "test-acker": stands in for the clear node where a test is about the get node: acks each msg (one event or a
 * batch) through the portal's ack queue, then passes it on.
 */
export function ackerNode(RED: NodeAPI): void {
  function TestAcker(this: Node, config: NodeDef & { portal: string }) {
    RED.nodes.createNode(this, config);
    const portal = RED.nodes.getNode(config.portal) as PortalNode;
    this.on("input", (input, send, done) => {
      const msg = input as unknown as EventMessage;
      const meta = msg.bitrix24;
      const ids = Array.isArray(msg.payload) ? msg.payload.map((e) => Number(e.ID)) : [meta.id];
      portal.acks!.clear({ processId: meta.processId!, authConnector: meta.authConnector, ids }).then(() => {
        send(input);
        done();
      }, done);
    });
  }
  RED.nodes.registerType("test-acker", TestAcker);
}

/** A flow stage that holds every msg (a flow that dies before it acks): nothing passes on. */
export function blackHoleNode(RED: NodeAPI): void {
  function BlackHole(this: Node, config: NodeDef) {
    RED.nodes.createNode(this, config);
    this.on("input", (_msg, _send, done) => done());
  }
  RED.nodes.registerType("test-black-hole", BlackHole);
}
