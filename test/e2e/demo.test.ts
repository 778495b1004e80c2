import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import axios from "axios";
import should from "should";
import type { SandboxStats } from "../../src/sandbox";
import { until } from "./example-flows";
import { freePort, outputOf } from "./node-red-process";

/**
 * `npm start` as a newcomer meets it: scripts/demo.mjs (from the build in nodes/) on free ports, judged only by
 * what it prints, what its Node-RED and sandbox answer over HTTP, and what is left behind after Ctrl+C (SIGINT).
 */
const ROOT = join(__dirname, "..", "..");
const DEMO = join(ROOT, "scripts", "demo.mjs");
const NODE_TYPES = Object.keys(
  (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { "node-red": { nodes: Record<string, string> } })[
    "node-red"
  ].nodes,
);

interface Demo {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function runDemo(env: Record<string, string>): Demo {
  const child = spawn(process.execPath, [DEMO], {
    cwd: ROOT,
    // no coverage collection in the demo and its Node-RED: c8 would record all of Node-RED for nothing
    env: { ...process.env, NODE_V8_COVERAGE: "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output = outputOf(child);
  // "exit", not "close": an orphaned Node-RED would hold the pipes open and hide the very thing tested
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  return { child, output, exited };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function childPids(pid: number): number[] {
  try {
    return execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" })
      .split("\n")
      .map((line) => Number(line.trim()))
      .filter((child) => child > 0);
  } catch {
    return []; // ps exits 1 when there are none
  }
}

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

describe("npm start (scripts/demo.mjs)", function () {
  this.timeout(120000);
  let demo: Demo | undefined;
  let userDir: string | undefined;

  afterEach(async () => {
    // a failed assertion must not leave the demo (and its Node-RED) running
    if (demo && demo.child.exitCode === null && demo.child.signalCode === null) {
      for (const pid of childPids(demo.child.pid ?? 0)) process.kill(pid, "SIGKILL");
      demo.child.kill("SIGKILL");
      await demo.exited;
      if (userDir) rmSync(userDir, { recursive: true, force: true });
    }
    demo = undefined;
    userDir = undefined;
  });

  it("serves the editor with our nodes and the example flows, drains the trickle, and stops cleanly on SIGINT", async () => {
    const port = await freePort();
    const sandboxPort = await freePort();
    const running = runDemo({ PORT: String(port), SANDBOX_PORT: String(sandboxPort), DEMO_EVENTS_PER_SECOND: "5" });
    demo = running;
    const editorUrl = `http://127.0.0.1:${port}/`;
    const sandboxUrl = `http://127.0.0.1:${sandboxPort}`;

    await until(
      () => running.output().includes(`Node-RED editor:  ${editorUrl}`) || running.child.exitCode !== null,
      "the editor URL printed",
      90000,
    );
    should(running.child.exitCode).equal(null, running.output());
    userDir = /user dir (\S+)\)/.exec(running.output())?.[1];
    if (!userDir) throw new Error(`no user dir printed:\n${running.output()}`);
    should(existsSync(userDir)).be.true();
    should(running.output()).match(/Press Ctrl\+C to stop/);

    // the printed URL is the editor
    const editor = await axios.get<string>(editorUrl);
    should(editor.status).equal(200);
    should(editor.data).match(/<title>Node-RED<\/title>/);

    // telemetry decided in the settings: the editor opens on the flow, not on the consent dialog
    const settings = await axios.get<{ telemetryEnabled?: boolean }>(`${editorUrl}settings`);
    should(settings.data.telemetryEnabled).equal(false);

    // every node type of the package is loaded, none with an error
    const nodes = await axios.get<Array<{ module: string; types: string[]; enabled: boolean; err?: string }>>(
      `${editorUrl}nodes`,
      { headers: { Accept: "application/json" } },
    );
    const ours = nodes.data.filter((set) => set.module === "node-red-contrib-bitrix24-offline-events");
    should(ours.flatMap((set) => set.types).sort()).eql([...NODE_TYPES].sort());
    for (const set of ours) {
      should(set.enabled).be.true();
      should.not.exist(set.err);
    }

    // the examples are deployed, wired to this run's sandbox
    const flows = await axios.get<Array<{ id: string; type: string; label?: string; portalUrl?: string }>>(
      `${editorUrl}flows`,
    );
    const tabs = flows.data.filter((node) => node.type === "tab").map((node) => node.label);
    should(tabs).containEql("Bitrix24: basic sync");
    should(tabs).containEql("Bitrix24: push");
    should(tabs).containEql("Bitrix24: deal sync");
    should(tabs).containEql("Bitrix24: deal export");
    should(tabs).containEql("Bitrix24: entity sync");
    should(tabs).containEql("Bitrix24: stage changes");
    const portals = flows.data.filter((node) => node.type === "bitrix24-portal");
    should(portals).have.length(1);
    should(portals[0].portalUrl).equal(sandboxUrl);

    // the sandbox installed the application the real way: the portal node got its tokens and application token
    // from the installation POST, nothing pasted
    should(running.output()).match(/installed itself on through http:\/\/127\.0\.0\.1:\d+\/bitrix24\/install/);
    const installed = await axios.get<{ installation: { portal: string } | null }>(
      `${editorUrl}bitrix24-portal/${portals[0].id}/installation`,
    );
    should(installed.data.installation?.portal).equal(`127.0.0.1:${sandboxPort}`);

    // the seed (200) and the trickle are drained, partly on ONOFFLINEEVENT pushes, and the queue stays short
    const state = async () => (await axios.get<{ stats: SandboxStats }>(`${sandboxUrl}/_sandbox/state`)).data.stats;
    await until(async () => (await state()).deleted >= 250, "250 events drained", 60000, 500);
    await until(async () => (await state()).pushes >= 1, "an ONOFFLINEEVENT push", 30000, 500);
    await until(() => /\[demo\] drained [1-9]/.test(running.output()), "a printed drain rate above 0", 30000, 500);
    // the deal-sync tab reads the deals a user edits and writes them back
    await until(() => / [1-9]\d* of 100 deals synced/.test(running.output()), "deals synced", 40000, 500);
    // the entity-sync tab gets the edited deals attached to their events by the get node, and writes them out
    const entityFile = join(userDir, "bitrix24-entity-sync.ndjson");
    const entityLines = () =>
      existsSync(entityFile)
        ? readFileSync(entityFile, "utf8")
            .split("\n")
            .filter((line) => line.trim())
            .map((line) => JSON.parse(line) as { event: string; id: string; entity: { ID: string } | null })
        : [];
    await until(() => entityLines().length > 0, "edited deals in the entity-sync file", 30000, 500);
    for (const line of entityLines()) {
      should(line.event).equal("ONCRMDEALUPDATE");
      should(Number(line.entity?.ID)).equal(Number(line.id));
    }
    const drained = await state();
    // 5 events/s arrive; 10 s of them still waiting would mean the drain stalls
    should(drained.queue.unprocessed + drained.queue.held).be.below(50);
    should(drained.queue.error).equal(0);
    should(drained.requests.rejected503).equal(0);

    // Node-RED said nothing at warn or error level (its console level in the demo is warn)
    should(running.output()).not.match(/\[(warn|error)\]/);

    const nodeRedPids = childPids(running.child.pid ?? 0);
    should(nodeRedPids).have.length(1);
    should(readFileSync(`/proc/${nodeRedPids[0]}/cmdline`, "utf8")).match(/node-red/);

    running.child.kill("SIGINT");
    const exit = await Promise.race([
      running.exited,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`no exit 20 s after SIGINT:\n${running.output()}`)), 20000),
      ),
    ]);
    should(exit).eql({ code: 0, signal: null });
    should(running.output()).match(/\[demo\] stopped/);
    should(existsSync(userDir)).be.false();
    should(alive(nodeRedPids[0])).be.false();
    // both ports are free again: nothing of the demo is still listening
    for (const used of [port, sandboxPort]) (await listen(used)).close();
  });

  it("refuses a busy port with one clear line and starts nothing", async () => {
    const port = await freePort();
    const blocker = await listen(port);
    try {
      const running = runDemo({ PORT: String(port), SANDBOX_PORT: String(await freePort()) });
      demo = running;
      const exit = await running.exited;
      should(exit.code).equal(1);
      should(running.output().trim()).equal(
        `[demo] port ${port} for Node-RED is already in use (another Node-RED or demo?). Stop what holds it, or choose another: PORT=${port + 1} npm start`,
      );
    } finally {
      blocker.close();
    }
  });
});
