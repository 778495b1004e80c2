// `npm start`: the embedded sandbox portal (generating a steady trickle of events) + a throwaway Node-RED with
// this package and the basic example flow deployed against the sandbox. Ctrl+C stops both.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const { startSandbox } = require(join(root, "nodes/sandbox/index.js"));
const { demoFlow } = require(join(root, "scripts/demo-flow.cjs"));

const port = Number(process.env.PORT ?? 1880);
const sandboxPort = Number(process.env.SANDBOX_PORT ?? 8124);
const eventsPerSecond = Number(process.env.DEMO_EVENTS_PER_SECOND ?? 5);

const sandbox = await startSandbox({ port: sandboxPort, events: 200 });
const userDir = mkdtempSync(join(tmpdir(), "bitrix24-demo-"));
mkdirSync(join(userDir, "node_modules"));
symlinkSync(root, join(userDir, "node_modules", pkg.name), "dir");
writeFileSync(
  join(userDir, "settings.js"),
  `module.exports = ${JSON.stringify({
    uiHost: "127.0.0.1",
    uiPort: port,
    flowFile: "flows.json",
    credentialSecret: false,
    editorTheme: { tours: false, projects: { enabled: false } },
    logging: { console: { level: "warn" } },
  })};\n`,
);
const { flows, credentials } = demoFlow({
  sandboxUrl: sandbox.url,
  credentials: sandbox.credentials,
  publicUrl: `http://127.0.0.1:${port}`,
});
writeFileSync(join(userDir, "flows.json"), JSON.stringify(flows, null, 2));
writeFileSync(join(userDir, "flows_cred.json"), JSON.stringify(credentials, null, 2));

const nodeRed = spawn(
  process.execPath,
  [require.resolve("node-red/red.js"), "--userDir", userDir, "--settings", join(userDir, "settings.js")],
  { stdio: ["ignore", "inherit", "inherit"] },
);

// A steady trickle of portal activity: deal updates collapse per deal, contacts are new each time.
let tick = 0;
const trickle = setInterval(() => {
  tick += 1;
  sandbox.addEvents(eventsPerSecond, {
    name: tick % 3 === 0 ? "ONCRMCONTACTADD" : "ONCRMDEALUPDATE",
    data: (i) => ({ FIELDS: { ID: tick * 1000 + i } }),
  });
}, 1000);

let lastDeleted = 0;
const report = setInterval(() => {
  const stats = sandbox.stats();
  const rate = (stats.deleted - lastDeleted) / 5;
  lastDeleted = stats.deleted;
  process.stdout.write(
    `[demo] drained ${rate.toFixed(1)} events/s · queue ${stats.queue.unprocessed} waiting, ${stats.queue.held} in flight, ${stats.queue.error} failed · ${stats.requests.total} requests, ${stats.requests.rejected503} answered 503\n`,
  );
}, 5000);

console.log(`
  Bitrix24 sandbox portal: ${sandbox.url}
  Node-RED editor:         http://127.0.0.1:${port}/   (user dir ${userDir})
  The "Bitrix24 offline events: basic sync" flow is deployed; more under Menu > Import > Examples.
  Press Ctrl+C to stop.
`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  clearInterval(trickle);
  clearInterval(report);
  nodeRed.kill("SIGINT");
  await new Promise((resolve) => {
    const timer = setTimeout(() => nodeRed.kill("SIGKILL"), 10000);
    nodeRed.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    if (nodeRed.exitCode !== null) resolve();
  });
  await sandbox.close();
  rmSync(userDir, { recursive: true, force: true });
  console.log("[demo] stopped");
  process.exit(0);
}
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
nodeRed.on("exit", (code) => {
  if (!stopping) {
    console.error(`[demo] Node-RED exited (${code})`);
    stop();
  }
});
