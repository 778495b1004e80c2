// `npm start`: the embedded sandbox portal (a steady trickle of events, ONOFFLINEEVENT pushes) + a throwaway
// Node-RED with this package and the examples/ flows deployed against the sandbox. Ctrl+C stops both.
// PORT (default 1880) and SANDBOX_PORT (default 8124) move them; DEMO_EVENTS_PER_SECOND sets the trickle.
// The sandbox also holds 100 deals, one of which "a user" edits every 5 seconds, so the
// deal-sync tab shows the offline-events guide's workflow: read the deal, hand it on, write back, clear.
import { spawn } from "node:child_process";
import { createCipheriv, createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const HOST = "127.0.0.1";
const REPORT_EVERY_MS = 5000;
// The portal node's installation endpoint: the sandbox POSTs its installation there, as a portal does when the
// local application's form is saved, so the push tab gets its application token with nothing pasted.
const INSTALL_PATH = "/bitrix24/install";
const DEMO_DEALS = 100;
// A deal edit costs the deal-sync tab two calls (read, write back) of the portal's 2 per second: one every 5 s
// leaves the rest of the budget to the other tabs' drains.
const EDIT_EVERY_TICKS = 5;

function fail(message) {
  console.error(`[demo] ${message}`);
  process.exit(1);
}

function portFromEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`${name}=${raw} is not a port number (1-65535)`);
  return port;
}

/** Answers the error code (EADDRINUSE, EACCES, ...) if nothing can listen on host:port, else undefined. */
function portProblem(port) {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", (error) => resolve(error.code ?? String(error)));
    server.listen(port, HOST, () => server.close(() => resolve(undefined)));
  });
}

const port = portFromEnv("PORT", 1880);
const sandboxPort = portFromEnv("SANDBOX_PORT", 8124);
const eventsPerSecond = Number(process.env.DEMO_EVENTS_PER_SECOND ?? 5);
if (!(eventsPerSecond >= 0)) fail(`DEMO_EVENTS_PER_SECOND=${process.env.DEMO_EVENTS_PER_SECOND} is not a number`);
if (port === sandboxPort) fail(`PORT and SANDBOX_PORT are both ${port}: give them different ports`);

const sandboxModule = join(root, "nodes/sandbox/index.js");
if (!existsSync(sandboxModule)) fail(`${sandboxModule} is missing: run "npm run build" first (npm start does).`);

// Checked before anything starts, so a busy port is one clear line instead of Node-RED's (or the sandbox's)
// stack trace after a banner that already promised a URL.
for (const [what, value, variable] of [
  ["Node-RED", port, "PORT"],
  ["the sandbox portal", sandboxPort, "SANDBOX_PORT"],
]) {
  const problem = await portProblem(value);
  if (problem) {
    const why =
      problem === "EADDRINUSE" ? "is already in use (another Node-RED or demo?)" : `cannot be used (${problem})`;
    fail(`port ${value} for ${what} ${why}. Stop what holds it, or choose another: ${variable}=${value + 1} npm start`);
  }
}

const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const { startSandbox } = require(sandboxModule);
const { demoFlow } = require(join(root, "scripts/demo-flow.cjs"));

/** @type {import("node:child_process").ChildProcess | undefined} */
let nodeRed;
let sandbox;
let userDir;
let trickle;
let report;
let stopping = false;

/** Node-RED's own format (@node-red/runtime lib/nodes/credentials.js): aes-256-ctr, key sha256(secret). */
function encryptCredentials(secret, value) {
  const key = createHash("sha256").update(secret).digest();
  const iv = randomBytes(16);
  const cipher = createCipheriv("aes-256-ctr", key, iv);
  const text = cipher.update(JSON.stringify(value), "utf8", "base64") + cipher.final("base64");
  return { $: iv.toString("hex") + text };
}

async function stop(exitCode) {
  if (stopping) {
    // a second Ctrl+C while Node-RED is still closing: do not make the user wait for it
    nodeRed?.kill("SIGKILL");
    return;
  }
  stopping = true;
  clearInterval(trickle);
  clearInterval(report);
  if (nodeRed && nodeRed.exitCode === null && nodeRed.signalCode === null) {
    const child = nodeRed;
    await new Promise((resolve) => {
      const timer = setTimeout(() => child.kill("SIGKILL"), 10000);
      child.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill("SIGINT");
    });
  }
  await sandbox?.close();
  if (userDir) rmSync(userDir, { recursive: true, force: true });
  console.log("[demo] stopped");
  process.exit(exitCode);
}
process.on("SIGINT", () => stop(0));
process.on("SIGTERM", () => stop(0));

sandbox = await startSandbox({ port: sandboxPort, host: HOST, events: 200 });
sandbox.crm.seed("deal", DEMO_DEALS);
userDir = mkdtempSync(join(tmpdir(), "bitrix24-demo-"));
mkdirSync(join(userDir, "node_modules"));
symlinkSync(root, join(userDir, "node_modules", pkg.name), "dir");
// Encrypted with a secret of this run only: credentialSecret false, or a plain flows_cred.json, makes Node-RED
// print a credentials warning at every start, so the sandbox tokens are stored the way Node-RED stores them.
const credentialSecret = randomBytes(16).toString("hex");
writeFileSync(
  join(userDir, "settings.js"),
  `module.exports = ${JSON.stringify({
    uiHost: HOST,
    uiPort: port,
    flowFile: "flows.json",
    credentialSecret,
    // tours off and telemetry decided: the first screen is the flow, not a tour or the consent dialog;
    // `projects: {}` leaves projects off without Node-RED's startup warning about the missing flag
    editorTheme: { tours: false, projects: {} },
    telemetry: { enabled: false, updateNotification: false },
    logging: { console: { level: "warn" } },
  })};\n`,
);
const editorUrl = `http://${HOST}:${port}`;
const { flows, credentials } = demoFlow({
  sandboxUrl: sandbox.url,
  // The OAuth server has its own address, as oauth.bitrix.info is not the portal: the installation is verified
  // there, and token answers name it (domain, server_endpoint) as a real one does.
  oauthUrl: sandbox.oauthUrl,
  credentials: sandbox.credentials,
  publicUrl: editorUrl,
  installPath: INSTALL_PATH,
  fileDir: userDir, // the examples' files go with the throwaway user dir
});
writeFileSync(join(userDir, "flows.json"), JSON.stringify(flows, null, 2));
writeFileSync(join(userDir, "flows_cred.json"), JSON.stringify(encryptCredentials(credentialSecret, credentials)));
const tabs = flows.filter((node) => node.type === "tab").map((tab) => tab.label);

nodeRed = spawn(
  process.execPath,
  [require.resolve("node-red/red.js"), "--userDir", userDir, "--settings", join(userDir, "settings.js")],
  { stdio: ["ignore", "inherit", "inherit"] },
);
nodeRed.on("exit", (code, signal) => {
  if (stopping) return;
  console.error(`[demo] Node-RED exited (${signal ?? `code ${code}`}); its messages are above.`);
  stop(1);
});

/** Node-RED answers its Admin API once the HTTP server and runtime are up. */
async function waitForNodeRed() {
  const deadline = Date.now() + 60000;
  while (!stopping) {
    try {
      const response = await fetch(`${editorUrl}/settings`);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      console.error("[demo] Node-RED did not answer in 60 s");
      await stop(1);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const DEMO_STAGES = ["PREPARATION", "EXECUTING", "WON", "NEW"];

/**
 * A portal user edits a deal: a REST write as any other application makes it (through the sandbox's inbound
 * webhook, whose secret never expires), so the portal queues ONCRMDEALUPDATE for every offline binding.
 */
function editDeal(id, tick) {
  // Now and then the deal also moves to another stage (the stage changes tab shows the deals that reach WON).
  const fields = { OPPORTUNITY: 1000 + tick };
  if (tick % 3 === 0) fields.STAGE_ID = DEMO_STAGES[(tick / 3) % DEMO_STAGES.length];
  fetch(`${sandbox.credentials.webhookUrl}crm.deal.update.json`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ id, fields }),
  }).catch((error) => {
    if (!stopping) console.error(`[demo] editing deal ${id} failed: ${error.message}`);
  });
}

/** Deals the deal-sync tab wrote back (its update sets COMMENTS). */
function syncedDeals() {
  let synced = 0;
  for (let id = 1; id <= DEMO_DEALS; id++) {
    if (/^synced/.test(String(sandbox.crm.get("deal", id)?.COMMENTS ?? ""))) synced++;
  }
  return synced;
}

/** Our node types failing to load would leave the deployed flow "waiting for missing types": say so plainly. */
async function checkNodesLoaded() {
  const response = await fetch(`${editorUrl}/nodes`, { headers: { Accept: "application/json" } });
  const sets = response.ok ? await response.json() : [];
  const ours = sets.filter((set) => set.module === pkg.name);
  const broken = ours.filter((set) => !set.enabled || set.err);
  if (ours.length !== Object.keys(pkg["node-red"].nodes).length || broken.length > 0) {
    const why = broken.map((set) => `${set.name}: ${set.err ?? "disabled"}`).join("; ") || "not registered";
    console.error(`[demo] Node-RED did not load ${pkg.name} (${why}); is nodes/ built? (npm run build)`);
    await stop(1);
  }
}

/** The installation, as the portal sends it: the portal node verifies it with the OAuth server and keeps it. */
async function installApplication() {
  const url = `${editorUrl}${INSTALL_PATH}`;
  const result = await sandbox.install(url, "auth").catch((error) => ({ status: 0, body: error.message }));
  if (result.status !== 200) {
    console.error(`[demo] the installation POST to ${url} was refused: HTTP ${result.status} ${result.body}`);
    await stop(1);
  }
  return url;
}

await waitForNodeRed();
if (!stopping) await checkNodesLoaded();
const installUrl = stopping ? "" : await installApplication();
if (!stopping) {
  // A steady trickle of portal activity: deal updates collapse per deal, contacts are new each time.
  let tick = 0;
  trickle = setInterval(() => {
    tick += 1;
    sandbox.addEvents(eventsPerSecond, {
      name: tick % 3 === 0 ? "ONCRMCONTACTADD" : "ONCRMDEALUPDATE",
      data: (i) => ({ FIELDS: { ID: tick * 1000 + i } }),
    });
    if (tick % EDIT_EVERY_TICKS === 0) editDeal(1 + ((tick / EDIT_EVERY_TICKS) % DEMO_DEALS), tick);
  }, 1000);

  let last = { at: Date.now(), deleted: sandbox.stats().deleted };
  report = setInterval(() => {
    const stats = sandbox.stats();
    const now = Date.now();
    const rate = (stats.deleted - last.deleted) / ((now - last.at) / 1000);
    last = { at: now, deleted: stats.deleted };
    const { queue, requests } = stats;
    console.log(
      `[demo] drained ${rate.toFixed(1)} events/s · queue ${queue.unprocessed} waiting, ${queue.held} in flight, ${queue.error} failed · ${stats.pushes} pushes · ${requests.total} requests, ${requests.rejected503} answered 503 · ${syncedDeals()} of ${DEMO_DEALS} deals synced`,
    );
  }, REPORT_EVERY_MS);

  console.log(`
  Node-RED editor:  ${editorUrl}/
  Sandbox portal:   ${sandbox.url}   (its state: ${sandbox.url}/_sandbox/state)
  OAuth server:     ${sandbox.oauthUrl}   (its own address, as oauth.bitrix.info is)
  Deployed from examples/, one tab each: ${tabs.map((label) => label.replace(/^Bitrix24: /, "")).join(", ")};
  all on the "Sandbox portal" config node, which the sandbox installed itself on through ${installUrl}
  (tokens and application token received, nothing pasted). The sandbox adds ${eventsPerSecond} events/s and pushes ONOFFLINEEVENT to
  the push tab's trigger; every ${EDIT_EVERY_TICKS} s a user edits one of its ${DEMO_DEALS} deals, which the deal sync tab reads,
  hands on and writes back (its debug sidebar shows each deal); the entity sync tab gets the same deals attached to
  their events by the get node (no request of their own) and appends them to ${join(userDir, "bitrix24-entity-sync.ndjson")}. Every ${REPORT_EVERY_MS / 1000} s a line below shows
  the drain rate, the queue depth and how many deals were synced.
  Press Ctrl+C to stop (it also deletes the throwaway user dir ${userDir}).
`);
}
