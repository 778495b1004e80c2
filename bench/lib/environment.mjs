// What the numbers were measured on: machine, versions, and how busy the machine was.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { join } from "node:path";
import { packageRoot } from "./node-red-process.mjs";

const require = createRequire(import.meta.url);

function git(args) {
  return execFileSync("git", args, { cwd: packageRoot, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
}

/** The commit measured; B24_BENCH_COMMIT names it when the package root is a snapshot outside git. */
function gitCommit() {
  if (process.env.B24_BENCH_COMMIT) return process.env.B24_BENCH_COMMIT;
  try {
    const commit = git(["rev-parse", "--short", "HEAD"]);
    // The build is made from the working tree: say so when it differs from the commit.
    const dirty = git(["status", "--porcelain", "--", "src", "locales", "icons"]) !== "";
    return dirty ? `${commit} + uncommitted changes` : commit;
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
