import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from "node-red";
import { validateFilter, validateOrder } from "../../core/queue/offline-api";
import { type QueueSummary, summarizeQueue } from "../../core/queue/queue-summary";
import { Bitrix24Error } from "../../core/rest/errors";
import type { OfflineFilter, OfflineListParams, OfflineListRecord, OfflineOrder } from "../../core/rest/types";
import type { PortalNode } from "../bitrix24-portal/bitrix24-portal";
import { asBitrix24Error, portalConfigError, reportFailure, showConfigError } from "../shared/error-report";

const TYPE = "bitrix24-offline-list";

export interface ListConfig extends NodeDef {
  portal: string;
  /** JSON object, empty = none; PROCESS_ID and ERROR are allowed here (unlike get). */
  filter: string;
  /** JSON object, empty = the portal's default (ID ASC). */
  order: string;
  /** Read every page (`next` until done) instead of one page of 50. */
  allPages: boolean;
  /** auth_connector whose queue to look at; empty = the default queue. */
  authConnector?: string;
}

interface ListInput extends NodeMessageInFlow {
  filter?: unknown;
  order?: unknown;
  /** Offset of the page to read when allPages is off: (page - 1) * 50. */
  start?: unknown;
}

export interface ListOutput extends NodeMessageInFlow {
  payload: OfflineListRecord[];
  total: number;
  summary: QueueSummary;
  /** Offset of the next page, when the portal has more and only one page was read. */
  next?: number;
}

function invalid(description: string): Bitrix24Error {
  return new Bitrix24Error({ code: "INVALID_ARGUMENT", method: "event.offline.list", description });
}

/**
 * A filter/order as given in config (JSON text) or msg (object or JSON text); undefined when empty.
 * Validated with the same rules as the API wrapper, so a bad field or operator is named before any request.
 */
function parseOption<T>(value: unknown, source: string, validate: (v: unknown, forList?: boolean) => T): T | undefined {
  if (value === undefined || value === null) return undefined;
  let parsed: unknown = value;
  if (typeof value === "string") {
    if (!value.trim()) return undefined;
    try {
      parsed = JSON.parse(value);
    } catch (err) {
      throw invalid(`${source} is not valid JSON: ${(err as Error).message}`);
    }
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw invalid(`${source} must be a JSON object`);
  }
  if (Object.keys(parsed).length === 0) return undefined;
  try {
    return validate(parsed, true);
  } catch (err) {
    const error = asBitrix24Error(err);
    throw new Bitrix24Error({ ...error.toJSON(), description: `${source}: ${error.description}` });
  }
}

function parseStart(value: unknown): number | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw invalid(`msg.start must be a non-negative integer, got ${String(value)}`);
  return n;
}

export default function register(RED: NodeAPI): void {
  function Bitrix24OfflineListNode(this: Node, config: ListConfig) {
    RED.nodes.createNode(this, config);
    const portal = RED.nodes.getNode(config.portal) as PortalNode | null;
    const portalError = portalConfigError(portal, RED._(`${TYPE}.errors.noPortal`));

    // Config filter/order are checked on deploy: a typo shows at once, not at the first msg.
    let configFilter: OfflineFilter | undefined;
    let configOrder: OfflineOrder | undefined;
    let configError: Bitrix24Error | undefined = portalError;
    if (!configError) {
      try {
        configFilter = parseOption(config.filter, "filter", validateFilter);
        configOrder = parseOption(config.order, "order", validateOrder);
      } catch (err) {
        configError = asBitrix24Error(err);
      }
    }
    showConfigError(this, configError);
    const authConnector = String(config.authConnector ?? "").trim() || undefined;

    this.on("input", (msg: ListInput, send, done) => {
      const api = portal?.api;
      if (configError || !api) {
        reportFailure(this, configError ?? portalError, msg, done);
        return;
      }
      let params: OfflineListParams;
      try {
        const filter = msg.filter !== undefined ? parseOption(msg.filter, "msg.filter", validateFilter) : configFilter;
        const order = msg.order !== undefined ? parseOption(msg.order, "msg.order", validateOrder) : configOrder;
        params = {
          ...(filter ? { filter } : {}),
          ...(order ? { order } : {}),
          ...(authConnector ? { auth_connector: authConnector } : {}),
        };
        const start = config.allPages ? undefined : parseStart(msg.start);
        if (start !== undefined) params.start = start;
      } catch (err) {
        reportFailure(this, err, msg, done);
        return;
      }
      this.status({ fill: "blue", shape: "dot", text: RED._(`${TYPE}.status.listing`) });
      const listing: Promise<{ records: OfflineListRecord[]; total: number; next?: number }> = config.allPages
        ? api.listAll(params).then((records) => ({ records, total: records.length }))
        : api.list(params);
      listing.then(
        ({ records, total, next }) => {
          const out = msg as ListOutput;
          out.payload = records;
          out.total = total;
          out.summary = summarizeQueue(records, total);
          if (next !== undefined) out.next = next;
          else delete out.next;
          this.status({
            fill: "green",
            shape: "dot",
            text: RED._(`${TYPE}.status.listed`, {
              count: records.length,
              total,
              time: new Date().toLocaleTimeString(),
            }),
          });
          send(out);
          done();
        },
        (err) => {
          reportFailure(this, err, msg, done);
        },
      );
    });
  }

  RED.nodes.registerType(TYPE, Bitrix24OfflineListNode);
}
