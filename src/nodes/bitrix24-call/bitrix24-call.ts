import type { Node, NodeAPI, NodeDef, NodeMessage, NodeMessageInFlow, NodeStatus } from "node-red";
import { type CallProgress, type ItemFailure, RestCalls } from "../../core/calls/rest-calls";
import { Bitrix24Error } from "../../core/rest/errors";
import type { PortalNode } from "../bitrix24-portal/bitrix24-portal";
import { closeWaitMs } from "../shared/close-wait";
import { asBitrix24Error, portalConfigError, reportFailure, showConfigError } from "../shared/error-report";
import type { Bitrix24Meta } from "../shared/msg-contract";
import { StatusThrottle } from "../shared/status-throttle";
import {
  authConnectorFor,
  type CallSettings,
  methodFor,
  paramsSource,
  parseCallConfig,
  shapeParams,
} from "./bitrix24-call-input";

const TYPE = "bitrix24-call";

export interface CallConfig extends NodeDef, Partial<CallSettings> {
  portal: string;
}

/** What this node adds to `msg.bitrix24`; what the get node put there stays as it was. */
export interface CallMeta extends Partial<Bitrix24Meta> {
  /** `total` / `next` of a list page (call mode, where the portal gives them); records read (all mode). */
  total?: number;
  next?: number;
  /** each + split: the position of this result's item in the input array. */
  item?: number;
  /** each/all: what failed, one entry per failed item or page (on the msg to Catch, and on the output). */
  failures?: ItemFailure[];
}

interface CallInput extends NodeMessageInFlow {
  method?: unknown;
  bitrix24?: CallMeta;
}

type Send = (msg: NodeMessage | NodeMessage[]) => void;
type Done = (err?: Error) => void;

interface SequenceParts {
  id: string;
  index: number;
  count?: number;
  type: "array";
  len: 1;
  /** The parts of an enclosing sequence, restored by the join node (as the core split node nests them). */
  parts?: unknown;
}

/** msg.bitrix24 without an earlier call node's total/next, which must not pass for this answer's. */
function withoutPageNumbers(meta: CallMeta | undefined): CallMeta {
  const { total: _total, next: _next, ...rest } = meta ?? {};
  return rest;
}

/** Large counts as a user reads them in a status: 1 000, 12 500. */
function grouped(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, " ");
}

/**
 * One error for every failure of a run: the code is theirs when they share it (a Catch flow can switch on
 * msg.error.code), MIXED_FAILURES otherwise; the list itself travels in msg.bitrix24.failures. `what` says what
 * failed, e.g. "2 of 5 items" (each: an index is the item's) or "2 pages" (all: an index is the page's offset).
 */
function failuresError(method: string, failures: ItemFailure[], what: string, at: string): Bitrix24Error {
  const first = failures[0];
  const shared = failures.every((f) => f.code === first.code);
  const more = failures.length > 1 ? ` (and ${failures.length - 1} more in msg.bitrix24.failures)` : "";
  return new Bitrix24Error({
    code: shared ? first.code : "MIXED_FAILURES",
    status: shared ? first.status : 0,
    method,
    description: `${what} failed: ${at}${first.index} ${first.code}: ${first.description}${more}`,
    retryable: false,
  });
}

export default function register(RED: NodeAPI): void {
  function Bitrix24CallNode(this: Node, config: CallConfig) {
    RED.nodes.createNode(this, config);
    const node = this;
    const t = (key: string, values?: Record<string, string | number>) => RED._(`${TYPE}.${key}`, values);
    const portal = RED.nodes.getNode(config.portal) as PortalNode | null;

    let settings: CallSettings | undefined;
    let configError = portalConfigError(portal, t("errors.noPortal"));
    let jsonParams: unknown;
    let jsonata: ReturnType<typeof RED.util.prepareJSONataExpression> | undefined;
    if (!configError) {
      try {
        settings = parseCallConfig(config);
        // JSON and JSONata are checked on deploy: a typo shows at once, not at the first msg.
        if (settings.paramsType === "json") {
          try {
            jsonParams = settings.params.trim() ? JSON.parse(settings.params) : {};
          } catch (err) {
            throw new Bitrix24Error({
              code: "INVALID_CONFIG",
              description: `params is not valid JSON: ${(err as Error).message}`,
            });
          }
          try {
            shapeParams(jsonParams, settings.mode, settings.method, "the JSON parameters");
          } catch (err) {
            throw new Bitrix24Error({ code: "INVALID_CONFIG", description: asBitrix24Error(err).description });
          }
        } else if (settings.paramsType === "jsonata") {
          try {
            jsonata = RED.util.prepareJSONataExpression(settings.params, node);
          } catch (err) {
            throw new Bitrix24Error({
              code: "INVALID_CONFIG",
              description: `params is not a valid JSONata expression: ${(err as Error).message}`,
            });
          }
        }
      } catch (err) {
        configError = asBitrix24Error(err);
      }
    }
    showConfigError(node, configError);
    const calls = portal?.client && !configError ? new RestCalls(portal.client) : undefined;

    // ------------------------------------------------------------------------------------------ status
    let shown: NodeStatus = {};
    const status = new StatusThrottle(() => node.status(shown));
    const show = (next: NodeStatus, throttled = false) => {
      shown = next;
      if (throttled) status.soon();
      else status.now();
    };
    const progressText = (progress: CallProgress, mode: "each" | "all"): string =>
      mode === "each"
        ? t("status.item", { done: grouped(progress.done), total: grouped(progress.total ?? 0) })
        : t("status.page", { page: grouped(progress.page ?? progress.done), records: grouped(progress.records ?? 0) });

    // ------------------------------------------------------------------------------------------ params
    function evaluateParams(s: CallSettings, msg: CallInput): Promise<unknown> {
      return new Promise((resolve, reject) => {
        const settle = (err: Error | null, value: unknown) => (err ? reject(err) : resolve(value));
        switch (s.paramsType) {
          case "json":
            // A copy per msg: the core may add auth_connector, and the next msg must see the configured object.
            resolve(structuredClone(jsonParams));
            return;
          case "jsonata":
            if (jsonata) RED.util.evaluateJSONataExpression(jsonata, msg, settle);
            else resolve(undefined);
            return;
          default:
            RED.util.evaluateNodeProperty(s.params, s.paramsType, node, msg, settle);
        }
      });
    }

    // ------------------------------------------------------------------------------------------ output
    /**
     * The msgs of a split: each a copy of the input msg without its payload (the items, maybe thousands, are not
     * copied into every result), with the result as payload and the sequence in msg.parts.
     */
    function splitter(msg: CallInput) {
      const { payload: _payload, ...rest } = msg;
      const id = RED.util.generateId();
      return (payload: unknown, index: number, meta: CallMeta, count?: number): NodeMessage => {
        const out = RED.util.cloneMessage(rest as NodeMessage) as CallInput;
        const parts: SequenceParts = { id, index, type: "array", len: 1 };
        if (count !== undefined) parts.count = count;
        if (out.parts !== undefined) parts.parts = out.parts;
        out.parts = parts;
        out.payload = payload;
        out.bitrix24 = { ...withoutPageNumbers(out.bitrix24), ...meta };
        return out;
      };
    }

    /** To Catch: the input msg as it came, with every failure in msg.bitrix24.failures. */
    function reportFailures(catchMsg: CallInput, error: Bitrix24Error, failures: ItemFailure[]) {
      catchMsg.bitrix24 = { ...(catchMsg.bitrix24 ?? {}), failures };
      reportFailure(node, error, catchMsg);
    }

    // ------------------------------------------------------------------------------------------ runs
    interface Run {
      controller: AbortController;
      finished: Promise<void>;
    }
    const running = new Set<Run>();
    let closing = false;

    async function runCall(
      s: CallSettings,
      rest: RestCalls,
      msg: CallInput,
      method: string,
      params: Record<string, unknown>,
      authConnector: string | undefined,
      signal: AbortSignal,
      send: Send,
    ): Promise<void> {
      show({ fill: "blue", shape: "dot", text: t("status.calling", { method }) });
      const { result, total, next } = await rest.call(method, params, { authConnector, signal });
      if (signal.aborted) return;
      const meta: CallMeta = {};
      if (total !== undefined) meta.total = total;
      if (next !== undefined) meta.next = next;
      if (s.output === "split" && Array.isArray(result)) {
        const make = splitter(msg);
        for (let i = 0; i < result.length; i++) send(make(result[i], i, meta, result.length));
      } else {
        msg.payload = result;
        if (msg.bitrix24 !== undefined || total !== undefined || next !== undefined) {
          msg.bitrix24 = { ...withoutPageNumbers(msg.bitrix24), ...meta };
        }
        send(msg);
      }
      show({
        fill: "green",
        shape: "dot",
        text: t("status.called", { method, time: new Date().toLocaleTimeString() }),
      });
    }

    async function runEach(
      s: CallSettings,
      rest: RestCalls,
      msg: CallInput,
      method: string,
      items: unknown[],
      authConnector: string | undefined,
      signal: AbortSignal,
      send: Send,
    ): Promise<void> {
      show({ fill: "blue", shape: "dot", text: t("status.item", { done: 0, total: grouped(items.length) }) });
      const outcome = await rest.each(method, items, {
        authConnector,
        signal,
        onProgress: (p) => show({ fill: "blue", shape: "dot", text: progressText(p, "each") }, true),
      });
      if (signal.aborted) return;
      const failed = new Set(outcome.failures.map((f) => f.index));
      const succeeded = items.length - failed.size;
      // The Catch msg is the input as it came (its payload is the items, so a flow can retry the failed ones).
      const catchMsg = failed.size > 0 ? RED.util.cloneMessage(msg) : undefined;
      if (s.output === "split") {
        const make = splitter(msg);
        let k = 0;
        for (let i = 0; i < items.length; i++) {
          if (!failed.has(i)) send(make(outcome.results[i], k++, { item: i }, succeeded));
        }
      } else if (succeeded > 0 || items.length === 0) {
        msg.payload = items.map((_, i) => (failed.has(i) ? null : outcome.results[i]));
        if (failed.size > 0) msg.bitrix24 = { ...(msg.bitrix24 ?? {}), failures: outcome.failures };
        send(msg);
      }
      const counts = { count: grouped(items.length), requests: grouped(outcome.requests) };
      if (catchMsg) {
        const what = `${failed.size} of ${items.length} items`;
        reportFailures(catchMsg, failuresError(method, outcome.failures, what, "item #"), outcome.failures);
        show({ fill: "yellow", shape: "ring", text: t("status.failed", { failed: grouped(failed.size), ...counts }) });
      } else {
        show({ fill: "green", shape: "dot", text: t("status.items", counts) });
      }
    }

    async function runAll(
      s: CallSettings,
      rest: RestCalls,
      msg: CallInput,
      method: string,
      params: Record<string, unknown>,
      signal: AbortSignal,
      send: Send,
    ): Promise<void> {
      show({ fill: "blue", shape: "dot", text: t("status.page", { page: 1, records: 0 }) });
      const catchMsg = RED.util.cloneMessage(msg);
      const records: unknown[] = [];
      const make = s.output === "split" ? splitter(msg) : undefined;
      // Split: each record goes out as it arrives, but the last one is held back until the end, when the count
      // is known and set on it (as the core split node does for streams), so a join node knows it is complete.
      let held: NodeMessage | undefined;
      let index = 0;
      const finish = () => {
        if (held && !signal.aborted) {
          (held.parts as SequenceParts).count = index;
          send(held);
        }
        held = undefined;
      };
      let outcome: Awaited<ReturnType<RestCalls["all"]>>;
      try {
        outcome = await rest.all(method, params, {
          signal,
          onProgress: (p) => show({ fill: "blue", shape: "dot", text: progressText(p, "all") }, true),
          onRecords: (page) => {
            if (signal.aborted) return;
            if (!make) {
              for (const record of page) records.push(record);
              return;
            }
            for (const record of page) {
              if (held) send(held);
              held = make(record, index++, {});
            }
          },
        });
      } catch (err) {
        // what was read went out already: the join still gets a complete sequence of it
        finish();
        throw err;
      }
      if (signal.aborted) return;
      if (make) finish();
      else {
        msg.payload = records;
        msg.bitrix24 = { ...withoutPageNumbers(msg.bitrix24), total: outcome.count };
        if (outcome.failures.length > 0) msg.bitrix24.failures = outcome.failures;
        send(msg);
      }
      const counts = { count: grouped(outcome.count), requests: grouped(outcome.requests) };
      if (outcome.failures.length > 0) {
        const what = `${outcome.failures.length} page${outcome.failures.length > 1 ? "s" : ""} of records`;
        reportFailures(catchMsg, failuresError(method, outcome.failures, what, "start="), outcome.failures);
        show({
          fill: "yellow",
          shape: "ring",
          text: t("status.pagesFailed", { failed: grouped(outcome.failures.length), ...counts }),
        });
      } else {
        show({ fill: "green", shape: "dot", text: t("status.records", counts) });
      }
    }

    node.on("input", (input: NodeMessageInFlow, send: Send, done: Done) => {
      const msg = input as CallInput;
      if (configError || !settings || !calls) {
        reportFailure(node, configError, msg, done);
        return;
      }
      if (closing) {
        done();
        return;
      }
      const s = settings;
      const rest = calls;
      let method: string;
      try {
        method = methodFor(s, msg.method);
      } catch (err) {
        status.cancel();
        reportFailure(node, err, msg, done);
        return;
      }
      const controller = new AbortController();
      const { signal } = controller;
      const work = async () => {
        let value: unknown;
        try {
          value = await evaluateParams(s, msg);
        } catch (err) {
          throw new Bitrix24Error({
            code: "INVALID_ARGUMENT",
            method,
            description: `cannot read the parameters from ${paramsSource(s)}: ${(err as Error).message}`,
          });
        }
        const params = shapeParams(value, s.mode, method, paramsSource(s));
        const authConnector = authConnectorFor(s, msg.bitrix24);
        if (s.mode === "each") {
          await runEach(s, rest, msg, method, params as unknown[], authConnector, signal, send);
        } else if (s.mode === "all") {
          await runAll(s, rest, msg, method, params as Record<string, unknown>, signal, send);
        } else {
          await runCall(s, rest, msg, method, params as Record<string, unknown>, authConnector, signal, send);
        }
      };
      const run: Run = {
        controller,
        finished: work().then(
          () => done(),
          (err) => {
            // stopped by a redeploy or shutdown: nobody is left to catch it, and the get node redelivers
            if (signal.aborted) {
              done();
              return;
            }
            status.cancel();
            reportFailure(node, err, msg, done);
          },
        ),
      };
      running.add(run);
      run.finished.finally(() => running.delete(run));
    });

    node.on("close", (_removed: boolean, done: () => void) => {
      closing = true;
      status.cancel();
      for (const run of running) run.controller.abort();
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, closeWaitMs(RED));
      });
      Promise.race([Promise.allSettled([...running].map((r) => r.finished)), limit]).then(() => {
        clearTimeout(timer);
        node.status({});
        done();
      });
    });
  }

  RED.nodes.registerType(TYPE, Bitrix24CallNode);
}
