// How busy the machine was with OTHER work while we measured: CPU time of the whole machine (os.cpus()) minus
// the CPU time of the benchmark's own processes (this one, plus every child read from /proc before it stops).
// Load average alone cannot tell: it counts the benchmark itself.
import { readFileSync } from "node:fs";
import os from "node:os";
import { performance } from "node:perf_hooks";

const TICKS_PER_SECOND = 100; // USER_HZ on Linux
let childrenMs = 0;

/** CPU ms a child process has used so far (Linux /proc); 0 where /proc is not available. */
function processCpuMs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may contain spaces) — utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND) * 1000;
  } catch {
    return 0;
  }
}

/** Call just before a child process of the benchmark exits. */
export function accountChild(pid) {
  childrenMs += processCpuMs(pid);
}

function machineBusyMs() {
  let busy = 0;
  for (const cpu of os.cpus()) busy += cpu.times.user + cpu.times.nice + cpu.times.sys + cpu.times.irq;
  return busy;
}

function ownMs() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000 + childrenMs;
}

/** Starts a window; `end()` returns {otherCpuShare (0..1 of all cores), ownCpuShare, seconds}. */
export function cpuWindow() {
  const start = { t: performance.now(), machine: machineBusyMs(), own: ownMs() };
  return {
    end() {
      const ms = performance.now() - start.t;
      const capacity = ms * os.cpus().length;
      const machine = machineBusyMs() - start.machine;
      const own = ownMs() - start.own;
      return {
        seconds: Number((ms / 1000).toFixed(1)),
        ownCpuShare: Number((own / capacity).toFixed(3)),
        otherCpuShare: Number((Math.max(0, machine - own) / capacity).toFixed(3)),
      };
    },
  };
}
