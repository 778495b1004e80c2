import type { Node, NodeAPI, NodeDef, NodeMessage, NodeMessageInFlow, NodeStatus } from "node-red";
import { parseWatchFields } from "../../core/changes/compare";
import {
  type ConsumerState,
  type ConsumerWarning,
  type DrainOverrides,
  type DrainSummary,
  NO_EXTENDED_MODE,
  OfflineConsumer,
  type OfflineConsumerOptions,
} from "../../core/consumer/offline-consumer";
import { parseEntityMap } from "../../core/entities/entity-reads";
import { feedFromConsumer, reportError } from "../../core/metrics/feed";
import { validateFilter, validateOrder } from "../../core/queue/offline-api";
import { Bitrix24Error } from "../../core/rest/errors";
import type { OfflineFilter, OfflineOrder } from "../../core/rest/types";
import type { PortalNode } from "../bitrix24-portal/bitrix24-portal";
import { asBitrix24Error, errorStatusText, portalConfigError, reportFailure } from "../shared/error-report";
import { StatusThrottle } from "../shared/status-throttle";
import { deliveryMessages } from "./delivery-messages";

const TYPE = "bitrix24-offline-get";

/** Property names are a contract (DESIGN.md): flows written by users and by our tests rely on them. */
export interface GetConfig extends NodeDef {
  portal: string;
  limit: string | number;
  mode: string;
  filter: string;
  order: string;
  errorRecords: boolean;
  authConnector: string;
  output: string;
  drain?: boolean;
  maxInFlight: string | number;
  ackTimeout: string | number;
  maxDeliveries: string | number;
  prefetch?: string | number;
  allowAtMostOnce?: boolean;
  orphanSweep?: boolean;
  /** Other consumers the instance registry cannot see drain this queue (absent in older flows: none). */
  externalConsumers?: boolean;
  entity?: boolean;
  entityMap?: string;
  changes?: boolean;
  watchFields?: string;
}

export type GetSettings = Omit<
  OfflineConsumerOptions,
  "portalHost" | "clientId" | "stateDir" | "journals" | "registry"
> & {
  output: "event" | "batch";
};

interface GetInput extends NodeMessageInFlow {
  pause?: unknown;
  limit?: unknown;
  filter?: unknown;
  order?: unknown;
  processId?: unknown;
}

function invalid(description: string): Bitrix24Error {
  return new Bitrix24Error({ code: "INVALID_ARGUMENT", method: "event.offline.get", description });
}

function numberSetting(
  value: unknown,
  name: string,
  fallback: number,
  rule: { min: number; integer?: boolean; max?: number },
): number {
  if (value === undefined || value === null || value === "") return fallback;
  const n = Number(value);
  const ok = Number.isFinite(n) && n >= rule.min && (!rule.integer || Number.isInteger(n)) && n <= (rule.max ?? n);
  if (!ok) {
    const kind = rule.integer ? "an integer" : "a number";
    const range = rule.max !== undefined ? ` between ${rule.min} and ${rule.max}` : ` of at least ${rule.min}`;
    throw new Bitrix24Error({
      code: "INVALID_CONFIG",
      description: `${name} must be ${kind}${range}, got ${JSON.stringify(value)}`,
    });
  }
  return n;
}

/**
 * A filter/order from config (JSON text) or msg (object or JSON text), checked as the portal would check it;
 * the error names the property and the bad field/operator.
 */
export function parseFilterOption<T extends OfflineFilter | OfflineOrder>(
  value: unknown,
  source: string,
  validate: (v: unknown, forList?: boolean) => T,
): T | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string" && value.trim() === "") return undefined;
  try {
    const parsed = validate(value, false);
    return Object.keys(parsed).length > 0 ? parsed : undefined;
  } catch (err) {
    const error = asBitrix24Error(err);
    throw new Bitrix24Error({ ...error.toJSON(), description: `${source}: ${error.description}` });
  }
}

/** Reads and checks the node's configuration; throws a Bitrix24Error naming the bad property. */
export function parseGetConfig(config: Partial<GetConfig>): GetSettings {
  const mode = config.mode === "auto" ? "auto" : "ack";
  if (config.mode !== undefined && config.mode !== "" && config.mode !== "ack" && config.mode !== "auto") {
    throw new Bitrix24Error({
      code: "INVALID_CONFIG",
      description: `mode must be "ack" or "auto", got ${config.mode}`,
    });
  }
  const output = config.output === "batch" ? "batch" : "event";
  return {
    mode,
    output,
    limit: numberSetting(config.limit, "limit", 50, { min: 1, integer: true }),
    filter: parseFilterOption(config.filter, "filter", validateFilter),
    order: parseFilterOption(config.order, "order", validateOrder),
    errorRecords: config.errorRecords === true,
    authConnector: String(config.authConnector ?? "").trim(),
    drain: config.drain !== false,
    maxInFlight: numberSetting(config.maxInFlight, "maxInFlight", 500, { min: 0, integer: true }),
    ackTimeoutMs: numberSetting(config.ackTimeout, "ackTimeout", 300, { min: 0.01 }) * 1000,
    maxDeliveries: numberSetting(config.maxDeliveries, "maxDeliveries", 3, { min: 1, integer: true }),
    prefetch: numberSetting(config.prefetch, "prefetch", 1, { min: 1, max: 50, integer: true }),
    allowAtMostOnce: config.allowAtMostOnce === true,
    orphanSweep: config.orphanSweep !== false,
    externalConsumers: config.externalConsumers === true,
    // The changes option compares objects, so it reads them.
    entity: config.entity === true || config.changes === true,
    // Checked even with the option off: a map that would fail once switched on is wrong now.
    entityMap: parseEntityMap(config.entityMap),
    changes: config.changes === true,
    watchFields: parseWatchFieldsOption(config.watchFields),
  };
}

/** `watchFields`: field names separated by commas; anything but letters, digits and _ is a typo worth saying. */
function parseWatchFieldsOption(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  if (typeof value !== "string") {
    throw new Bitrix24Error({
      code: "INVALID_CONFIG",
      description: `watchFields must be field names separated by commas, got ${JSON.stringify(value)}`,
    });
  }
  const fields = parseWatchFields(value);
  const bad = fields.find((f) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(f));
  if (bad !== undefined) {
    throw new Bitrix24Error({
      code: "INVALID_CONFIG",
      description: `watchFields: "${bad}" is not a field name (e.g. STAGE_ID, OPPORTUNITY, stageId)`,
    });
  }
  return fields;
}

/** msg.limit / msg.filter / msg.order / msg.processId. */
export function parseOverrides(msg: GetInput): { overrides: DrainOverrides; processId?: string } {
  const overrides: DrainOverrides = {};
  if (msg.limit !== undefined && msg.limit !== null && msg.limit !== "") {
    const n = Number(msg.limit);
    if (!Number.isSafeInteger(n) || n < 1) {
      throw invalid(`msg.limit must be a positive integer, got ${JSON.stringify(msg.limit)}`);
    }
    overrides.limit = n;
  }
  const filter = parseFilterOption(msg.filter, "msg.filter", validateFilter);
  if (filter) overrides.filter = filter;
  const order = parseFilterOption(msg.order, "msg.order", validateOrder);
  if (order) overrides.order = order;
  let processId: string | undefined;
  if (msg.processId !== undefined && msg.processId !== null && msg.processId !== "") {
    if (typeof msg.processId !== "string" || msg.processId.trim() === "") {
      throw invalid(`msg.processId must be a process id string, got ${JSON.stringify(msg.processId)}`);
    }
    processId = msg.processId.trim();
  }
  return { overrides, processId };
}

export default function register(RED: NodeAPI): void {
  function Bitrix24OfflineGetNode(this: Node, config: GetConfig) {
    RED.nodes.createNode(this, config);
    const node = this;
    const t = (key: string, params?: Record<string, string | number>) => RED._(`${TYPE}.${key}`, params);
    const portal = RED.nodes.getNode(config.portal) as PortalNode | null;

    let settings: GetSettings | undefined;
    let configError = portalConfigError(portal, t("errors.noPortal"));
    if (!configError) {
      try {
        settings = parseGetConfig(config);
      } catch (err) {
        configError = asBitrix24Error(err);
      }
    }
    if (configError || !settings || !portal?.api) {
      const error = configError ?? new Bitrix24Error({ code: "INVALID_CONFIG", description: t("errors.noPortal") });
      node.status({ fill: "red", shape: "ring", text: errorStatusText(error) });
      node.error(error);
      node.on("input", (msg: GetInput, _send, done) => {
        reportFailure(node, error, msg, done);
      });
      return;
    }

    const api = portal.api;
    const output = settings.output;
    const consumer = new OfflineConsumer(api, portal.acks, {
      ...settings,
      portalHost: portal.portalHost,
      clientId: portal.clientId,
      // The state seam: where the journal, the registry and the change snapshots live (files or PostgreSQL);
      // stateDir for what a store does not hold itself.
      stateDir: portal.stateDir,
      journals: portal.state.journals,
      registry: portal.state.instances,
      snapshots: portal.state.snapshots,
    });

    // The portal's operations numbers (sidebar, metricsPath) follow this consumer until the node closes.
    const who = { id: node.id, name: node.name || "" };
    const metrics = portal.ops?.metrics;
    const unwatch =
      metrics &&
      feedFromConsumer(metrics, who, consumer, settings.limit * settings.prefetch, settings.changes === true);

    // ------------------------------------------------------------------------------------------ status
    let stickyError: NodeStatus | undefined;
    // A failed object read is warned about once (until a read of that method succeeds again): the idle status
    // keeps naming it meanwhile, or the next drain would wipe the only sign of it in the editor.
    let entityFailure: { method: string; code: string } | undefined;
    let rateLimitedUntil = 0;
    let rateTimer: NodeJS.Timeout | undefined;
    // A drain changes the unacked count several times per batch (~6 µs per event when each change was drawn): a
    // change of phase is drawn at once, count changes through the throttle.
    let shownPhase: ConsumerState["phase"] | undefined;

    function stateStatus(state: ConsumerState): NodeStatus {
      const unacked = state.mode === "ack" ? t("status.unacked", { n: state.pending }) : t("status.atMostOnce");
      switch (state.phase) {
        case "fetching":
          return { fill: "blue", shape: "dot", text: `${t("status.fetching")} · ${unacked}` };
        case "waiting":
          return {
            fill: "blue",
            shape: "ring",
            text: t("status.inFlight", { n: state.pending, max: state.maxInFlight }),
          };
        case "paused":
          return { fill: "grey", shape: "ring", text: `${t("status.paused")} · ${unacked}` };
        case "closed":
          return {};
        default:
          return { fill: "green", shape: "dot", text: `${t("status.idle")} · ${unacked}` };
      }
    }

    function draw(): void {
      const state = consumer.state;
      shownPhase = state.phase;
      if (stickyError && state.phase !== "fetching") {
        node.status(stickyError);
        return;
      }
      stickyError = undefined;
      if (state.phase === "fetching" && Date.now() < rateLimitedUntil) {
        node.status({ fill: "yellow", shape: "ring", text: t("status.rateLimited", { n: state.pending }) });
        return;
      }
      const shown = stateStatus(state);
      // Changes option: how many events had nothing watched in them (acked here, never emitted).
      if (settings?.changes && shown.text)
        shown.text = `${shown.text} · ${t("status.unchanged", { n: state.unchanged })}`;
      if (entityFailure && state.phase === "idle") {
        node.status({
          fill: "yellow",
          shape: "ring",
          text: `${shown.text} · ${entityFailure.method}: ${entityFailure.code}`,
        });
        return;
      }
      node.status(shown);
    }

    const status = new StatusThrottle(draw);
    const render = () => status.now();
    const renderSoon = () => (consumer.state.phase !== shownPhase ? status.now() : status.soon());

    function showError(err: Bitrix24Error): void {
      const text = err.description === NO_EXTENDED_MODE ? t("status.noExtended") : errorStatusText(err);
      stickyError = { fill: "red", shape: "ring", text };
      // every error the node shows goes to the sidebar's recent errors too
      if (metrics) reportError(metrics, who, err);
      // The error is the newest news: a count change waiting to be drawn must not paint over it.
      status.cancel();
      node.status(stickyError);
    }

    const onRateLimited = (waitMs: number) => {
      if (consumer.state.phase !== "fetching") return;
      rateLimitedUntil = Date.now() + waitMs;
      render();
      if (rateTimer) clearTimeout(rateTimer);
      rateTimer = setTimeout(() => {
        rateTimer = undefined;
        render();
      }, waitMs + 10);
    };
    api.client.on("rate-limited", onRateLimited);

    // ------------------------------------------------------------------------------------------ consumer events
    consumer.on("state", (state) => {
      if (state.phase === "fetching") stickyError = undefined;
      renderSoon();
    });
    consumer.on("entity-read-recovered", (method) => {
      if (entityFailure?.method !== method) return;
      entityFailure = undefined;
      renderSoon();
    });
    consumer.on("deliver", (group) => {
      // One send per msg: given an array, Node-RED deep-clones every msg after the first even on a single wire,
      // though each was built here for this send alone. Sent singly, the first wire gets the msg itself and every
      // further wire still gets its own clone, so downstream nodes never share a msg.
      for (const msg of deliveryMessages(group, portal.portalHost, output)) node.send([msg as NodeMessage, null, null]);
    });
    consumer.on("dead-letter", (group) => {
      node.warn(t("warnings.deadLetter", { n: group.deliveries.length, processId: group.processId ?? "" }));
      node.send([null, null, deliveryMessages(group, portal.portalHost, output) as NodeMessage[]]);
    });
    consumer.on("drained", (summary: DrainSummary) => {
      node.send([null, { payload: summary, topic: "drained" }, null]);
    });
    consumer.on("failure", (err) => {
      showError(err);
      node.error(err);
    });
    consumer.on("warning", (warning: ConsumerWarning) => {
      switch (warning.code) {
        case "AT_MOST_ONCE_FALLBACK":
          node.warn(t("warnings.fallback"));
          break;
        case "MARKED_AS_ERROR":
          node.warn(t("warnings.marked", { n: warning.messageIds.length, processId: warning.processId }));
          break;
        case "ORPHANS_ADOPTED":
          node.warn(t("warnings.orphans", { n: warning.count, processId: warning.processId }));
          break;
        case "ENTITY_READ_FAILED": {
          // Once per method and failure (the consumer says it again only after a read of it succeeded).
          const text = t("warnings.entity", {
            method: warning.method,
            code: warning.error.code,
            error: warning.error.description,
          });
          node.warn(text);
          entityFailure = { method: warning.method, code: warning.error.code };
          render();
          break;
        }
        case "JOURNAL_UNREADABLE":
          node.warn(
            t("warnings.journal", { file: warning.file, movedTo: warning.movedTo, error: warning.description }),
          );
          break;
      }
    });

    // A failure shared by coalesced triggers reaches Catch once, with the first msg.
    const reported = new WeakSet<Error>();

    node.on("input", (msg: GetInput, _send, done) => {
      if (msg.pause !== undefined && msg.pause !== null && typeof msg.pause !== "boolean") {
        // "true" or 1 may mean pause; taking it as a fetch trigger would drain what the user meant to hold.
        showError(
          reportFailure(node, invalid(`msg.pause must be true or false, got ${JSON.stringify(msg.pause)}`), msg, done),
        );
        return;
      }
      if (msg.pause === true) {
        consumer.pause();
        done();
        return;
      }
      if (msg.pause === false) consumer.resume(false); // this msg is the trigger
      let request: ReturnType<typeof parseOverrides>;
      try {
        request = parseOverrides(msg);
      } catch (err) {
        showError(reportFailure(node, err, msg, done));
        return;
      }
      const run = request.processId
        ? consumer.reselect(request.processId, request.overrides)
        : consumer.trigger(request.overrides);
      run.then(
        () => done(),
        (err: unknown) => {
          const error = asBitrix24Error(err);
          if (reported.has(err as Error)) {
            done();
            return;
          }
          reported.add(err as Error);
          reportFailure(node, error, msg, done);
          showError(error);
        },
      );
    });

    node.on("close", (_removed: boolean, done: () => void) => {
      api.client.off("rate-limited", onRateLimited);
      unwatch?.();
      if (rateTimer) clearTimeout(rateTimer);
      rateTimer = undefined;
      status.cancel();
      consumer.close().then(
        () => done(),
        () => done(),
      );
    });

    render();
  }

  RED.nodes.registerType(TYPE, Bitrix24OfflineGetNode);
}
