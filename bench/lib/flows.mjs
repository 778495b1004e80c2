// The flows the benchmark deploys: this package's nodes, as a user wires them (property names of DESIGN.md).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
// The same portal, get and clear nodes as the tests build (test/kit/flows.cjs).
import { clearNode, getNode, portalConfig, portalCredentials } from "../../test/kit/flows.cjs";

const here = dirname(fileURLToPath(import.meta.url));
const TAB = "bench-tab";

/** Node-RED takes a node without a position for a config node. */
function placed(flows) {
  let x = 120;
  for (const n of flows) {
    if (n.z === undefined) continue;
    n.x = x;
    n.y = 80;
    x += 200;
  }
  return flows;
}

/** The config node; rate = the portal's bucket as the user enters it ({perSecond, burst}) or false = off. */
function portal(sandbox, rate, metricsPath = "") {
  return portalConfig(sandbox, {
    id: "portal",
    name: "sandbox",
    // The node has no "off": an unlimited sandbox gets a limit far above anything reachable.
    rateLimit: rate ? rate.perSecond : 1_000_000,
    rateBurst: rate ? rate.burst : 1_000_000,
    instances: 1,
    metricsPath,
  });
}

/** A function node that reports each event leaving the get node (id, wall time) to the benchmark. */
function seenNode(id, wires = []) {
  return {
    id,
    z: TAB,
    type: "function",
    name: "report to bench",
    func: 'global.get("bench").seen(msg.payload.ID);\nreturn null;',
    outputs: 1,
    wires: [wires],
  };
}

/**
 * A function node that reports, per msg, the event's name and object id and the attached object's id, title and
 * modification date (the entity option): the benchmark checks them against the sandbox's objects.
 */
function objectReportNode(id) {
  const func = [
    "const d = msg.payload.EVENT_DATA || {};",
    "const f = d.FIELDS_AFTER || d.FIELDS || {};",
    "const e = msg.entity;",
    "const entityId = e ? String(e.ID !== undefined ? e.ID : e.id) : null;",
    "const title = e ? (e.TITLE ?? e.title ?? e.NAME ?? null) : null;",
    "const modified = e ? (e.DATE_MODIFY ?? e.changedDate ?? null) : null;",
    'global.get("bench").seen(JSON.stringify([msg.topic, String(f.ID), entityId, title, modified]));',
    "return null;",
  ].join("\n");
  return { id, z: TAB, type: "function", name: "report objects to bench", func, outputs: 1, wires: [[]] };
}

/**
 * inject -> get (ack mode, one msg per event) -> clear; optionally a function node that reports every event
 * (`report`) or every event's attached object (`reportObjects`, with `entity`).
 * The benchmark starts the drain by injecting into "start".
 */
export function drainFlow(sandbox, o) {
  const firstOutput = ["clear"];
  if (o.report || o.reportObjects) firstOutput.push("seen");
  const flows = [
    { id: TAB, type: "tab", label: "bench" },
    o.store ? { ...portal(sandbox, o.rate, o.metricsPath), store: "store" } : portal(sandbox, o.rate, o.metricsPath),
    ...(o.store ? [storeNode(o.store)] : []),
    {
      id: "start",
      z: TAB,
      type: "inject",
      name: "start",
      props: [{ p: "payload" }],
      repeat: "",
      once: false,
      wires: [["get"]],
    },
    getNode({
      id: "get",
      z: TAB,
      name: "get",
      portal: "portal",
      limit: o.limit,
      maxInFlight: o.maxInFlight ?? 500,
      prefetch: o.prefetch ?? 1,
      entity: o.entity ?? false,
      entityMap: "",
      changes: o.changes ?? false,
      watchFields: o.watchFields ?? "",
      wires: [firstOutput, [], []],
    }),
    clearNode({ id: "clear", z: TAB, name: "clear", portal: "portal", wires: [[]] }),
  ];
  if (o.reportObjects) flows.push(objectReportNode("seen"));
  else if (o.report) flows.push(seenNode("seen"));
  const credentials = { portal: portalCredentials(sandbox) };
  if (o.store) credentials.store = { user: o.store.user, password: o.store.password };
  return { flows: placed(flows), credentials };
}

/** A bitrix24-postgres config node (o.store: host, port, database, schema, user, password, lease seconds). */
function storeNode(store) {
  return {
    id: "store",
    type: "bitrix24-postgres",
    name: "bench store",
    host: store.host,
    port: store.port,
    database: store.database,
    ssl: "off",
    schema: store.schema,
    lease: store.lease ?? 15,
    encrypt: false,
  };
}

/**
 * trigger -> get -> (report, clear). Push: the trigger binds ONOFFLINEEVENT to its endpoint with minTimeout 0
 * (followUp 0) and does not poll. Poll: no endpoint, a poll every `interval` seconds.
 */
export function latencyFlow(sandbox, port, o) {
  const trigger =
    o.kind === "push"
      ? { path: "/b24/offline", interval: 0, publicUrl: `http://127.0.0.1:${port}`, followUp: 0 }
      : { path: "", interval: o.interval, publicUrl: "", followUp: 0 };
  const flows = [
    { id: TAB, type: "tab", label: "bench" },
    portal(sandbox, false),
    {
      id: "trigger",
      z: TAB,
      type: "bitrix24-offline-trigger",
      name: o.kind,
      portal: "portal",
      onDeploy: false,
      bindEvents: "",
      ...trigger,
      wires: [["get"]],
    },
    getNode({ id: "get", z: TAB, name: "get", portal: "portal", wires: [["seen", "clear"], [], []] }),
    seenNode("seen"),
    clearNode({ id: "clear", z: TAB, name: "clear", portal: "portal", wires: [[]] }),
  ];
  return { flows: placed(flows), credentials: { portal: portalCredentials(sandbox) } };
}

/**
 * bench/baseline/flow.json: core nodes only, as an integrator builds it today. Its http request nodes take
 * their URLs from the environment (B24_GET_URL, B24_CLEAR_URL), so the flow file itself stays generic.
 */
export function baselineFlow() {
  const flows = JSON.parse(readFileSync(join(here, "..", "baseline", "flow.json"), "utf8"));
  return { flows, credentials: {} };
}

export function baselineEnv(sandbox, limit) {
  const auth = encodeURIComponent(sandbox.credentials.accessToken);
  return {
    B24_GET_URL: `${sandbox.url}/rest/event.offline.get.json?auth=${auth}&clear=0&limit=${limit}`,
    B24_CLEAR_URL: `${sandbox.url}/rest/event.offline.clear.json?auth=${auth}`,
  };
}
