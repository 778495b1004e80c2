// One real Node-RED runtime in its own process, driven by the benchmark over IPC.
// It loads this package the way a user's Node-RED does (userDir/node_modules/<package> -> the repo), with the
// editor and admin API off (nobody needs them here) and httpNodeRoot on for
// the trigger node's ONOFFLINEEVENT endpoint.
//
// Parent -> child: {cmd: "flows", flows, credentials}   start the runtime with these flows
//                  {cmd: "inject", id}                   hand node `id` a msg, as an inject node would (starts a drain)
//                  {cmd: "memory", gc}                   answer {type: "memory", rss, heapUsed, heapTotal, external}
//                  {cmd: "stop"}                         stop the runtime and exit
// Child -> parent: {type: "listening", port}, {type: "started", missing}, {type: "seen", ids, times},
//                  {type: "memory", ...}, {type: "error", message}

import fs from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { performance } from "node:perf_hooks";

const require = createRequire(import.meta.url);

const userDir = process.env.BENCH_USER_DIR;
const packageRoot = process.env.BENCH_PACKAGE_ROOT;
if (!userDir || !packageRoot || !process.send) {
  console.error("node-red-child: run me from bench/lib/node-red-process.mjs");
  process.exit(2);
}

function send(message) {
  if (process.connected) process.send(message);
}

// Function nodes in the benchmark flows report what leaves the get node through global.get("bench").
// Times are wall-clock milliseconds with sub-millisecond precision, comparable across processes on one host.
const seen = { ids: [], times: [] };
let flushQueued = false;
function flushSeen() {
  flushQueued = false;
  if (seen.ids.length === 0) return;
  send({ type: "seen", ids: seen.ids, times: seen.times });
  seen.ids = [];
  seen.times = [];
}
const bench = {
  now: () => performance.timeOrigin + performance.now(),
  seen(id) {
    seen.ids.push(id);
    seen.times.push(performance.timeOrigin + performance.now());
    if (seen.ids.length >= 5000) flushSeen();
    else if (!flushQueued) {
      flushQueued = true;
      setTimeout(flushSeen, 20);
    }
  },
};

function installPackage() {
  const modules = path.join(userDir, "node_modules");
  fs.mkdirSync(modules, { recursive: true });
  const link = path.join(modules, "node-red-contrib-bitrix24-offline-events");
  if (!fs.existsSync(link)) fs.symlinkSync(packageRoot, link, "dir");
  fs.writeFileSync(
    path.join(userDir, "package.json"),
    JSON.stringify({ name: "bench-user-dir", private: true, dependencies: {} }),
  );
}

// Embedded, Node-RED leaves routing to its host: mount its node routes (http in, the trigger's endpoint) on an
// express app, with the express that Node-RED itself depends on.
const express = createRequire(require.resolve("node-red"))("express");
const app = express();
const server = http.createServer(app);
let RED;

async function start(flows, credentials) {
  fs.writeFileSync(path.join(userDir, "flows.json"), JSON.stringify(flows));
  fs.writeFileSync(path.join(userDir, "flows_cred.json"), JSON.stringify(credentials));
  RED = require("node-red");
  RED.init(server, {
    userDir,
    flowFile: "flows.json",
    credentialSecret: false,
    // BENCH_ADMIN=1 (measurement 9): the admin API and the editor (its comms websocket comes with it), for a
    // client that watches like an open Bitrix24 sidebar
    httpAdminRoot: process.env.BENCH_ADMIN === "1" ? "/admin" : false,
    httpNodeRoot: "/api",
    uiHost: "127.0.0.1",
    logging: { console: { level: process.env.BENCH_NR_LOG_LEVEL || "warn", metrics: false, audit: false } },
    functionGlobalContext: { bench },
    externalModules: { autoInstall: false },
    diagnostics: { enabled: false },
    telemetry: { enabled: false },
  });
  // RED.start() resolves before the flows run; a flow with a missing node type never starts.
  const flowsStarted = new Promise((resolve) => {
    RED.events.once("flows:started", () => resolve(true));
    setTimeout(() => resolve(false), 15_000).unref();
  });
  app.use("/api", RED.httpNode);
  if (process.env.BENCH_ADMIN === "1") app.use("/admin", RED.httpAdmin);
  await RED.start();
  await flowsStarted;
  // Flows with a missing node type are not started at all: tell the parent which expected nodes are absent.
  const missing = flows
    .filter((n) => n.type !== "tab" && n.z !== undefined)
    .filter((n) => !RED.nodes.getNode(n.id))
    .map((n) => `${n.id} (${n.type})`);
  send({ type: "started", missing, nodeRedVersion: typeof RED.version === "function" ? RED.version() : RED.version });
}

function memory(gc) {
  if (gc && typeof global.gc === "function") {
    global.gc();
    global.gc();
  }
  const m = process.memoryUsage();
  return { type: "memory", rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external };
}

process.on("message", (message) => {
  switch (message.cmd) {
    case "flows":
      start(message.flows, message.credentials).catch((err) => send({ type: "error", message: String(err?.stack) }));
      break;
    case "inject": {
      const node = RED?.nodes.getNode(message.id);
      if (node) node.receive({ payload: Date.now(), topic: "bench" });
      else send({ type: "error", message: `no node ${message.id} to inject into` });
      break;
    }
    case "memory":
      send(memory(message.gc === true));
      break;
    case "stop": {
      flushSeen();
      const stop = RED ? RED.stop() : Promise.resolve();
      stop
        .catch(() => undefined)
        .finally(() => {
          server.close();
          process.exit(0);
        });
      break;
    }
  }
});
process.on("disconnect", () => process.exit(0));

installPackage();
server.listen(0, "127.0.0.1", () => send({ type: "listening", port: server.address().port }));
