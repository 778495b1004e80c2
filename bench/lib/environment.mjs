// What the numbers were measured on: machine, versions, and how busy the machine was.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { join } from "node:path";
import { packageRoot } from "./node-red-process.mjs";

const require = createRequire(import.meta.url);

function gitCommit() {
  try {
    const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: packageRoot, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    return commit;
  } catch {
    return null;
  }
}

export function load() {
  return os.loadavg().map((n) => Number(n.toFixed(2)));
}

export function environment() {
  const cpus = os.cpus();
  const own = JSON.parse(readFileSync(join(packageRoot, "package.json"), "utf8"));
  const nodeRed = JSON.parse(readFileSync(require.resolve("node-red/package.json"), "utf8"));
  return {
    date: new Date().toISOString(),
    package: `${own.name}@${own.version}`,
    commit: gitCommit(),
    node: process.version,
    nodeRed: nodeRed.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    cpu: cpus[0]?.model ?? "unknown",
    cores: cpus.length,
    memoryGb: Number((os.totalmem() / 1024 ** 3).toFixed(1)),
    loadAtStart: load(),
  };
}
