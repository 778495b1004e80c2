#!/usr/bin/env node
// npm run bench [-- --quick] [-- --only 1,3] [-- --out DIR]
//
// Runs the measurements of issues 7 and 11 against the embedded sandbox and the BUILT package (nodes/: run
// `npm run build` first; `npm run bench` does), writes results.json and RESULTS.md, prints the summary.
// Exit code 1 only for correctness problems (events lost or left behind, duplicates) or a measurement that could
// not run — never for speed: goals are reported as met / not met.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { cpuWindow } from "./lib/cpu-accounting.mjs";
import { environment, load } from "./lib/environment.mjs";
import { keptNotes, renderMarkdown } from "./lib/report.mjs";
import { baselineComparison } from "./scenarios/baseline-comparison.mjs";
import { callAll, callEach } from "./scenarios/call-engine.mjs";
import { changesMeasurement } from "./scenarios/changes.mjs";
import { memoryFlat } from "./scenarios/memory.mjs";
import { opsOverhead } from "./scenarios/ops-overhead.mjs";
import { postgresStore } from "./scenarios/postgres-store.mjs";
import { pushLatency } from "./scenarios/push-latency.mjs";
import { rateLimitedDrain } from "./scenarios/rate-limited-drain.mjs";
import { scaleOut } from "./scenarios/scale-out.mjs";
import { unlimitedDrain } from "./scenarios/unlimited-drain.mjs";

const here = dirname(fileURLToPath(import.meta.url));

// Each measurement's number is the one its title starts with ("--only 3" or "--only unlimited-drain").
const MEASUREMENTS = [
  { id: "rate-limited-drain", title: "1. Rate-limited drain (ack mode)", run: rateLimitedDrain },
  { id: "baseline-comparison", title: "2. Side by side with a core-nodes flow", run: baselineComparison },
  { id: "unlimited-drain", title: "3. Unlimited drain: Node-RED vs. raw core client", run: unlimitedDrain },
  { id: "push-latency", title: "4. Latency: push vs. polling", run: pushLatency },
  { id: "memory", title: "5. Memory while draining", run: memoryFlat },
  { id: "scale-out", title: "6. Scale-out", run: scaleOut },
  { id: "call-all", title: "7. Call node engine: all records of a list", run: callAll },
  { id: "call-each", title: "8. Call node engine: one call per item", run: callEach },
  { id: "changes", title: "9. What changed (changes option)", run: changesMeasurement },
  { id: "ops-overhead", title: "10. Operations view: sidebar open and metrics scraped vs. neither", run: opsOverhead },
  { id: "postgres-store", title: "11. PostgreSQL store", run: postgresStore },
].map((m) => ({ ...m, number: m.title.slice(0, m.title.indexOf(".")) }));

function parseArgs(argv) {
  const args = { quick: false, only: null, out: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--quick") args.quick = true;
    else if (a === "--only") args.only = argv[++i];
    else if (a.startsWith("--only=")) args.only = a.slice(7);
    else if (a === "--out") args.out = argv[++i];
    else if (a.startsWith("--out=")) args.out = a.slice(6);
    else if (a === "--help" || a === "-h") {
      console.log("usage: node bench/run.mjs [--quick] [--only 1,3|ids] [--out DIR]");
      process.exit(0);
    } else {
      console.error(`unknown argument ${a}`);
      process.exit(2);
    }
  }
  return args;
}

function busyNote(share, cores) {
  const pct = Math.round(share * 100);
  if (share >= 0.15) {
    return `**The machine was busy**: other processes (e.g. test suites run by other people on the same ${cores} cores) used ${pct} % of its CPU during the run, so rates are lower and noisier than on an idle machine.`;
  }
  return `Other processes used ${pct} % of the machine's CPU during the run.`;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const selected = args.only
    ? MEASUREMENTS.filter((m) => args.only.split(",").some((x) => x.trim() === m.number || x.trim() === m.id))
    : MEASUREMENTS;
  if (selected.length === 0) {
    console.error(`--only ${args.only} selects nothing`);
    process.exit(2);
  }
  const outDir = args.out ?? (args.quick ? join(here, "quick") : here);
  mkdirSync(outDir, { recursive: true });
  const env = environment();
  const log = (line) => console.log(line);
  log(
    `bench: ${args.quick ? "quick" : "full"} run, ${env.cpu} × ${env.cores}, Node ${env.node}, Node-RED ${env.nodeRed}`,
  );
  const started = performance.now();
  const whole = cpuWindow();
  const measurements = [];
  const problems = [];
  const notes = [];
  for (const m of selected) {
    log(`${m.title}`);
    const loadBefore = load();
    const window = cpuWindow();
    const t0 = performance.now();
    let result;
    try {
      result = await m.run({ quick: args.quick, log });
    } catch (err) {
      result = { id: m.id, title: m.title, error: String(err?.stack ?? err), problems: [] };
      problems.push(`${m.title}: could not run: ${String(err?.message ?? err).split("\n")[0]}`);
      console.error(err);
    }
    result.number = m.number;
    result.seconds = Number(((performance.now() - t0) / 1000).toFixed(1));
    result.loadBefore = loadBefore;
    result.loadAfter = load();
    result.cpu = window.end();
    for (const p of result.problems ?? []) problems.push(`${m.title}: ${p}`);
    for (const n of result.notes ?? []) notes.push(`${m.title}: ${n}`);
    if (result.goal)
      log(
        `  -> ${result.goal.headline} [${result.goal.met === null ? "no goal" : result.goal.met ? "met" : "NOT met"}]`,
      );
    measurements.push(result);
  }
  const cpu = whole.end();
  const results = {
    command: `node bench/run.mjs${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(" ")}` : ""}`,
    quick: args.quick,
    seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
    environment: env,
    loadAtEnd: load(),
    cpu,
    busyNote: busyNote(cpu.otherCpuShare, env.cores),
    measurements,
    problems,
    notes,
  };
  const jsonPath = join(outDir, "results.json");
  const mdPath = join(outDir, "RESULTS.md");
  // The hand-written notes at the end of the RESULTS.md being replaced stay (before/after across commits).
  const notesByHand = existsSync(mdPath) ? keptNotes(readFileSync(mdPath, "utf8")) : "";
  writeFileSync(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(mdPath, renderMarkdown(results, notesByHand));
  log(`wrote ${relative(process.cwd(), jsonPath)} and ${relative(process.cwd(), mdPath)} in ${results.seconds} s`);
  if (problems.length > 0) {
    console.error(`\ncorrectness problems:\n${problems.map((p) => `- ${p}`).join("\n")}`);
    process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
