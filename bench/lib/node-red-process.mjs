// Starts a real Node-RED in a child process (node-red-child.mjs) and talks to it over IPC.
import { fork } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { accountChild } from "./cpu-accounting.mjs";

const here = dirname(fileURLToPath(import.meta.url));
/**
 * The package under test: this repository (after `npm run build`), or another copy of it given in
 * B24_BENCH_PACKAGE_ROOT (e.g. a snapshot, so a rebuild in the working tree cannot pull files away mid-run).
 */
export const packageRoot = process.env.B24_BENCH_PACKAGE_ROOT || join(here, "..", "..");
const START_TIMEOUT_MS = 60_000;

/**
 * @param {object} o
 * @param {string} o.name                  label for logs and errors
 * @param {(port: number) => {flows: object[], credentials: object}} o.flows  built once the HTTP port is known
 * @param {boolean} [o.exposeGc]           run with --expose-gc (memory measurement)
 * @param {Record<string,string>} [o.env]  extra environment (the baseline flow reads its URLs from it)
 * @param {(ids: string[], times: number[]) => void} [o.onSeen]  what the flow's function nodes report
 * @param {string} [o.userDirBase]         where the user directory goes (default: the OS temp directory)
 * @param {string} [o.stateDir]            a state folder shared with other instances (as Node-RED instances on one
 *                                         machine share theirs): the package's folder in the user directory links there
 */
export async function startNodeRed(o) {
  const userDir = mkdtempSync(join(o.userDirBase ?? tmpdir(), `b24-bench-${o.name}-`));
  if (o.stateDir) symlinkSync(o.stateDir, join(userDir, ".bitrix24-offline-events"));
  const child = fork(join(here, "node-red-child.mjs"), [], {
    // B24_BENCH_NODE_RED_ARGS: extra node flags for the Node-RED processes, e.g. "--cpu-prof" to profile them.
    execArgv: [
      ...(o.exposeGc ? ["--expose-gc"] : []),
      ...(process.env.B24_BENCH_NODE_RED_ARGS ?? "").split(/\s+/).filter(Boolean),
    ],
    env: { ...process.env, ...o.env, BENCH_USER_DIR: userDir, BENCH_PACKAGE_ROOT: packageRoot },
    stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
  const logLines = [];
  const keepLog = (chunk) => {
    for (const line of String(chunk).split("\n")) {
      if (!line.trim()) continue;
      logLines.push(line);
      if (logLines.length > 200) logLines.shift();
    }
  };
  child.stdout.on("data", keepLog);
  child.stderr.on("data", keepLog);

  const waiters = new Map();
  const errors = [];
  let exited = false;
  const waitFor = (type) =>
    new Promise((resolve, reject) => {
      if (exited) {
        reject(new Error(`${o.name}: Node-RED exited\n${logLines.slice(-20).join("\n")}`));
        return;
      }
      waiters.set(type, { resolve, reject });
    });
  child.on("message", (message) => {
    if (message.type === "seen") {
      o.onSeen?.(message.ids, message.times);
      return;
    }
    if (message.type === "error") errors.push(message.message);
    const waiter = waiters.get(message.type) ?? (message.type === "error" ? waiters.values().next().value : undefined);
    if (!waiter) return;
    waiters.delete(message.type);
    if (message.type === "error") waiter.reject(new Error(`${o.name}: ${message.message}`));
    else waiter.resolve(message);
  });
  const exit = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      exited = true;
      for (const waiter of waiters.values()) {
        waiter.reject(new Error(`${o.name}: Node-RED exited (${code ?? signal})\n${logLines.slice(-20).join("\n")}`));
      }
      waiters.clear();
      resolve(code);
    });
  });

  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${o.name}: Node-RED did not start in time`)), START_TIMEOUT_MS);
  });
  try {
    const { port } = await Promise.race([waitFor("listening"), timeout]);
    const { flows, credentials } = o.flows(port);
    const started = waitFor("started");
    child.send({ cmd: "flows", flows, credentials });
    const info = await Promise.race([started, timeout]);
    if (info.missing.length > 0) {
      throw new Error(
        `${o.name}: Node-RED did not start these nodes (type not installed or failed to load — run npm run build): ` +
          `${info.missing.join(", ")}\n${logLines.slice(-20).join("\n")}`,
      );
    }
    clearTimeout(timer);
    return {
      port,
      pid: child.pid,
      nodeRedVersion: info.nodeRedVersion,
      errors,
      log: () => logLines.slice(),
      inject(id) {
        child.send({ cmd: "inject", id });
      },
      async memory(gc = true) {
        const answer = waitFor("memory");
        child.send({ cmd: "memory", gc });
        return answer;
      },
      async stop() {
        if (!exited) {
          accountChild(child.pid);
          child.send({ cmd: "stop" });
          const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
          await exit;
          clearTimeout(killer);
        }
        rmSync(userDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    clearTimeout(timer);
    child.kill("SIGKILL");
    await exit;
    rmSync(userDir, { recursive: true, force: true });
    throw err;
  }
}
