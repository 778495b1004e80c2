import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import axios from "axios";
import { freePort } from "../kit/free-port.cjs";

// The e2e tests take their ports from here, with the rest of a Node-RED process.
export { freePort };

/**
 * Which Node-RED runs the end-to-end tests. By default the devDependency on the Node that runs mocha; the
 * compatibility matrix (scripts/compat.mjs) points these at another node-red install and Node binary.
 */
export const NODE_BINARY = process.env.E2E_NODE_BINARY || process.execPath;
export const NODE_RED_DIR = process.env.E2E_NODE_RED || dirname(require.resolve("node-red/package.json"));

/** A Node-RED started as a child process on its own user directory, as users run it. */
export interface NodeRedProcess {
  url: string;
  port: number;
  userDir: string;
  child: ChildProcess;
  output(): string;
  /** Replaces every flow through the Admin API (POST /flows, full deployment), as the editor's Deploy does. */
  deploy(flows: FlowNode[]): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** One node of a flow as the Admin API takes it; `credentials` go inline and Node-RED stores them apart. */
export interface FlowNode {
  id: string;
  type: string;
  z?: string;
  wires?: string[][];
  credentials?: Record<string, string>;
  [property: string]: unknown;
}

export async function startNodeRed(
  userDir: string,
  options: { lang?: string; settings?: Record<string, unknown>; port?: number } = {},
): Promise<NodeRedProcess> {
  const port = options.port ?? (await freePort());
  const settings = {
    uiHost: "127.0.0.1",
    uiPort: port,
    flowFile: "flows.json",
    credentialSecret: false,
    editorTheme: { tours: false, projects: { enabled: false } },
    // no consent prompt over the editor and no version check against the internet
    telemetry: { enabled: false },
    ...options.settings,
  };
  writeFileSync(join(userDir, "settings.js"), `module.exports = ${JSON.stringify(settings)};\n`);
  const child = spawn(
    NODE_BINARY,
    [join(NODE_RED_DIR, "red.js"), "--userDir", userDir, "--settings", join(userDir, "settings.js")],
    {
      // no coverage collection inside Node-RED: c8 would record the whole of Node-RED for nothing
      env: { ...process.env, NODE_V8_COVERAGE: "", LANG: options.lang ?? "en_US.UTF-8" },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const output = outputOf(child);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60000;
  while (!/Started flows|Server now running/.test(output())) {
    if (child.exitCode !== null) throw new Error(`Node-RED exited (${child.exitCode}):\n${output()}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`Node-RED did not start in 60 s:\n${output()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    port,
    userDir,
    child,
    output,
    deploy: async (flows) => {
      const response = await axios.post(`${url}/flows`, flows, {
        headers: { "Node-RED-Deployment-Type": "full", "Content-Type": "application/json" },
        validateStatus: () => true,
      });
      if (response.status >= 300) {
        throw new Error(`POST /flows answered ${response.status}: ${JSON.stringify(response.data)}`);
      }
    },
    stop: (signal: NodeJS.Signals = "SIGINT") =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const timer = setTimeout(() => child.kill("SIGKILL"), 15000);
        child.once("exit", () => {
          clearTimeout(timer);
          resolve();
        });
        child.kill(signal);
      }),
  };
}

/** Everything a child process writes to stdout and stderr so far, as one text. */
export function outputOf(child: ChildProcess): () => string {
  let log = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    log += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    log += chunk.toString();
  });
  return () => log;
}
