import { existsSync, readFileSync } from "node:fs";
import { clearNode, getNode } from "../kit/flows.cjs";
import { until } from "./example-flows";
import type { FlowNode } from "./node-red-process";

/**
 * trigger -> get (ack mode) -> [work -> clear] and [delivery log], the shape of the basic example, plus a file
 * node that appends "ID,n,PROCESS" (new) or "ID,r,PROCESS" (redelivered) for every msg the get node emits: the record of what
 * Node-RED delivered, written by Node-RED itself, that outlives a killed process.
 */
export function drainFlow(options: {
  portalId: string;
  logFile: string;
  /** msgs per second through the work step (a delay node in rate mode): a slow flow keeps events in flight */
  workRate?: number;
  pollSeconds?: number;
  limit?: number;
}): FlowNode[] {
  const z = "tab-drain";
  const work: FlowNode = options.workRate
    ? {
        id: "work",
        type: "delay",
        z,
        name: "slow work",
        pauseType: "rate",
        timeout: "5",
        timeoutUnits: "seconds",
        rate: String(options.workRate),
        nbRateUnits: "1",
        rateUnits: "second",
        randomFirst: "1",
        randomLast: "5",
        randomUnits: "seconds",
        drop: false,
        allowrate: false,
        outputs: 1,
        wires: [["clear"]],
      }
    : {
        id: "work",
        type: "change",
        z,
        name: "work",
        rules: [{ t: "set", p: "payload.doneAt", pt: "msg", to: "", tot: "date" }],
        wires: [["clear"]],
      };
  const nodes: FlowNode[] = [
    {
      id: "trigger",
      type: "bitrix24-offline-trigger",
      z,
      name: "",
      portal: options.portalId,
      path: "",
      interval: options.pollSeconds ?? 2,
      onDeploy: true,
      bindEvents: "",
      publicUrl: "",
      wires: [["get"]],
    },
    getNode({
      id: "get",
      z,
      name: "",
      portal: options.portalId,
      limit: options.limit ?? 50,
      prefetch: 1,
      allowAtMostOnce: false,
      wires: [["work", "log-line"], [], []],
    }),
    work,
    clearNode({ id: "clear", z, name: "", portal: options.portalId, wires: [[]] }),
    {
      id: "log-line",
      type: "change",
      z,
      name: "ID,n|r,process",
      rules: [
        {
          t: "set",
          p: "payload",
          pt: "msg",
          to: '$string(bitrix24.id) & "," & (bitrix24.redelivered ? "r" : "n") & "," & bitrix24.processId',
          tot: "jsonata",
        },
      ],
      wires: [["log"]],
    },
    {
      id: "log",
      type: "file",
      z,
      name: "deliveries",
      filename: options.logFile,
      filenameType: "str",
      appendNewline: true,
      createDir: true,
      overwriteFile: "false",
      encoding: "none",
      wires: [[]],
    },
  ];
  // Node-RED treats a node without x/y as a config node: place each one on the tab
  return [
    { id: z, type: "tab", label: "drain", disabled: false, info: "" },
    ...nodes.map((node, i) => ({ ...node, x: 150 + 180 * i, y: 100 })),
  ];
}

export interface Delivery {
  id: number;
  redelivered: boolean;
  processId: string;
}

export function readDeliveries(logFile: string): Delivery[] {
  if (!existsSync(logFile)) return [];
  return readFileSync(logFile, "utf8")
    .split("\n")
    .map((line) => line.split(","))
    .filter((fields) => fields.length === 3 && /^\d+$/.test(fields[0]))
    .map(([id, how, processId]) => ({ id: Number(id), redelivered: how === "r", processId }));
}

/**
 * Waits until the delivery log names every id of `ids` (polled every 20 ms, for at most `boundMs`: the crash tests'
 * bound); a time-out fails with `explain()` appended, what the test knows of why.
 */
export async function untilDelivered(
  logFile: string,
  ids: Set<number>,
  what: string,
  boundMs: number,
  explain: () => string,
): Promise<void> {
  await until(() => readDeliveries(logFile).filter((d) => ids.has(d.id)).length === ids.size, what, boundMs, 20).catch(
    (err: Error) => {
      throw new Error(`${err.message}\n${explain()}`);
    },
  );
}
