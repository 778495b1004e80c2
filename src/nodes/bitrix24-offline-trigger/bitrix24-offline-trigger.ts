import type { Request, RequestHandler, Response } from "express";
import type { Node, NodeAPI, NodeDef, NodeMessage } from "node-red";
import { EmitGate } from "../../core/queue/emit-gate";
import {
  NotificationError,
  OFFLINE_EVENT,
  type OfflineNotification,
  verifyNotification,
} from "../../core/queue/notification";
import { type BindRequest, handlerUrl, parseEventList, planBindings } from "../../core/queue/subscriptions";
import { Bitrix24Error } from "../../core/rest/errors";
import { BodyReadError } from "../../core/rest/http-body";
import { ReplayGuard } from "../../core/rest/replay-guard";
import type { PortalNode } from "../bitrix24-portal/bitrix24-portal";
import { asBitrix24Error, errorStatusText } from "../shared/error-report";
import { normalisePath, RefusalReporter, readRequestBody, registerPost, removeRoute } from "../shared/http-endpoint";

const TYPE = "bitrix24-offline-trigger";
/** A notification is a few hundred bytes; body-parser's default limit is generous enough. */
const BODY_LIMIT = 100 * 1024;
/** Like core inject's "once" delay: lets the rest of the flow start before the first msg. */
const DEPLOY_DELAY_MS = 100;
/** A typo like 0.0001 s must not spin a timer. */
const MIN_POLL_MS = 10;
/** Longest timer Node accepts; longer intervals would fire at once. */
const MAX_TIMER_MS = 2_147_483_647;

export interface TriggerConfig extends NodeDef {
  portal: string;
  /** HTTP endpoint under httpNodeRoot; empty = no endpoint. */
  path: string;
  /** Seconds between safety polls; 0 = none. */
  interval: string | number;
  onDeploy: boolean;
  /** Comma-separated offline events to keep bound; empty = none. */
  bindEvents: string;
  /** Base URL the portal can reach Node-RED at; with a path it binds ONOFFLINEEVENT. */
  publicUrl: string;
  /** Seconds after a push to trigger once more (the portal's minTimeout); 0 = never. */
  followUp?: string | number;
  /** Least milliseconds between two emitted msgs. */
  minGap?: string | number;
  /** auth_connector of the offline bindings (a separate queue). */
  authConnector?: string;
}

export type TriggerSource = "push" | "poll" | "deploy" | "follow-up";

export interface TriggerMessage extends NodeMessage {
  payload: OfflineNotification | { time: number };
  topic: string;
  trigger: TriggerSource;
}

interface Emission {
  source: TriggerSource;
  notification?: OfflineNotification;
}

function number(value: unknown, fallback: number): number {
  if (value === "" || value === undefined || value === null) return fallback;
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? n : fallback;
}

function clock(time: number): string {
  return new Date(time).toLocaleTimeString();
}

export default function register(RED: NodeAPI): void {
  function Bitrix24OfflineTriggerNode(this: Node, config: TriggerConfig) {
    RED.nodes.createNode(this, config);
    const node = this;
    const portal = RED.nodes.getNode(config.portal) as PortalNode | null;
    if (!portal || portal.configError) {
      const reason = portal?.configError?.description ?? RED._(`${TYPE}.errors.noPortal`);
      node.status({ fill: "red", shape: "ring", text: reason.length > 60 ? `${reason.slice(0, 57)}...` : reason });
      node.error(RED._(`${TYPE}.errors.portal`, { error: reason }));
      return;
    }

    const path = normalisePath(config.path);
    const interval = number(config.interval, 60);
    const followUpSec = number(config.followUp, 1);
    const minGapMs = number(config.minGap, 200);
    const replays = new ReplayGuard();
    const timers = new Set<NodeJS.Timeout>();
    let followUpTimer: NodeJS.Timeout | undefined;
    let pollTimer: NodeJS.Timeout | undefined;
    let routeHandler: RequestHandler | undefined;
    let closed = false;
    const refusals = new RefusalReporter();

    const gate = new EmitGate<Emission>(
      (emission, merged) => {
        const now = Date.now();
        const msg: TriggerMessage =
          emission.source === "push" && emission.notification
            ? { payload: emission.notification, topic: OFFLINE_EVENT, trigger: "push" }
            : { payload: { time: now }, topic: emission.source, trigger: emission.source };
        node.send(msg);
        const source = RED._(`${TYPE}.source.${emission.source}`);
        node.status({
          fill: "green",
          shape: "dot",
          text:
            merged > 1
              ? RED._(`${TYPE}.status.firedMerged`, { source, time: clock(now), merged })
              : RED._(`${TYPE}.status.fired`, { source, time: clock(now) }),
        });
      },
      minGapMs,
      // A waiting push keeps its notification; any other trigger is equivalent to any other.
      (waiting, incoming) => (incoming.source === "push" || waiting.source !== "push" ? incoming : waiting),
    );

    function later(ms: number, fn: () => void): NodeJS.Timeout {
      const timer = setTimeout(() => {
        timers.delete(timer);
        fn();
      }, ms);
      timers.add(timer);
      return timer;
    }

    function scheduleFollowUp(): void {
      if (followUpSec <= 0) return;
      // One follow-up after the LAST push: the portal dropped whatever changed in the minTimeout after it.
      if (followUpTimer) {
        clearTimeout(followUpTimer);
        timers.delete(followUpTimer);
      }
      followUpTimer = later(followUpSec * 1000, () => {
        followUpTimer = undefined;
        gate.offer({ source: "follow-up" });
      });
    }

    function answer(res: Response, status: number, text: string): void {
      if (res.headersSent) return;
      res.status(status).type("text/plain").send(text);
    }

    async function onNotification(req: Request, res: Response): Promise<void> {
      try {
        const { raw, body } = await readRequestBody(req, BODY_LIMIT);
        const notification = verifyNotification(body, portal?.applicationToken ?? "");
        if (closed) {
          answer(res, 503, "Service Unavailable");
          return;
        }
        // Answer first: the portal waits on this call, and the drain downstream may take long.
        answer(res, 200, "OK");
        if (replays.isReplay(ReplayGuard.keyOf(notification.ts, raw))) {
          node.debug(RED._(`${TYPE}.log.replay`));
          return;
        }
        gate.offer({ source: "push", notification });
        scheduleFollowUp();
      } catch (err) {
        if (err instanceof NotificationError || err instanceof BodyReadError) {
          if (err.status === 413) res.setHeader("Connection", "close");
          answer(res, err.status, err.message);
          reportRefusal(err.status, err.message, req.ip ?? "");
        } else {
          answer(res, 500, "Internal Server Error");
          node.error(asBitrix24Error(err));
        }
      }
    }

    function reportRefusal(status: number, reason: string, ip: string): void {
      refusals.refused((more) => node.warn(RED._(`${TYPE}.errors.refused`, { status, reason, ip, more })));
    }

    function registerEndpoint(): void {
      if (!path) return;
      const handler: RequestHandler = (req, res) => {
        void onNotification(req, res);
      };
      if (registerPost(RED, path, handler)) routeHandler = handler;
      else node.warn(RED._(`${TYPE}.errors.noHttp`));
    }

    async function manageSubscriptions(): Promise<void> {
      const { events, rejected } = parseEventList(config.bindEvents);
      const publicUrl = String(config.publicUrl ?? "").trim();
      if (rejected.length) node.warn(RED._(`${TYPE}.errors.badEvents`, { events: rejected.join(", ") }));
      if (!events.length && !(publicUrl && path)) return;
      const api = portal?.api;
      if (!api) return;
      let plan: BindRequest[];
      try {
        const handler =
          publicUrl && path ? handlerUrl(publicUrl, RED.settings.httpNodeRoot as string | undefined, path) : undefined;
        const existing = await api.bindings();
        plan = planBindings(existing, {
          offlineEvents: events,
          authConnector: config.authConnector,
          handler,
          // Never longer than the follow-up: a change the portal drops inside minTimeout must be drained by it.
          minTimeout: handler ? Math.floor(followUpSec) : undefined,
        });
        for (const request of plan) {
          if (closed) return;
          await api.bind(request);
        }
      } catch (err) {
        if (closed) return;
        const error = asBitrix24Error(err);
        const adminOnly = error.code === "ACCESS_DENIED" || error.code === "INVALID_CREDENTIALS";
        const text = adminOnly ? RED._(`${TYPE}.errors.bindAdmin`, { error: error.code }) : errorStatusText(error);
        node.status({ fill: "red", shape: "ring", text });
        node.error(
          adminOnly
            ? new Bitrix24Error({ ...error.toJSON(), description: RED._(`${TYPE}.errors.bindAdminLong`) })
            : error,
        );
        return;
      }
      if (closed) return;
      const bound = plan.map((p) => (p.handler ? `${p.event} -> ${p.handler}` : p.event));
      node.log(
        bound.length
          ? RED._(`${TYPE}.log.bound`, { events: bound.join(", ") })
          : RED._(`${TYPE}.log.allBound`, { count: events.length + (publicUrl && path ? 1 : 0) }),
      );
      node.status({
        fill: "green",
        shape: "dot",
        text: bound.length ? RED._(`${TYPE}.status.bound`, { count: bound.length }) : RED._(`${TYPE}.status.allBound`),
      });
    }

    registerEndpoint();
    if (path && routeHandler && !portal.applicationToken) {
      // With an installation path the token is on its way (the portal's installation POST): no cause for alarm.
      const awaited = Boolean(portal.installPath);
      node.status({
        fill: "yellow",
        shape: "ring",
        text: RED._(`${TYPE}.status.${awaited ? "waitingInstall" : "noToken"}`),
      });
      if (awaited) node.log(RED._(`${TYPE}.log.waitingInstall`));
      else node.warn(RED._(`${TYPE}.errors.noToken`));
    } else {
      node.status({ fill: "green", shape: "dot", text: RED._(`${TYPE}.status.waiting`) });
    }
    // Pushes are checked against portal.applicationToken at each call, so an installation counts at once.
    const stopListening = portal.onInstalled?.((installed) => {
      if (!path) return;
      const time = clock(installed.installedAt);
      node.status({
        fill: "green",
        shape: "dot",
        text: RED._(`${TYPE}.status.installed`, { portal: installed.portal, time }),
      });
    });

    if (interval > 0) {
      const everyMs = Math.min(Math.max(interval * 1000, MIN_POLL_MS), MAX_TIMER_MS);
      pollTimer = setInterval(() => gate.offer({ source: "poll" }), everyMs);
    }
    if (config.onDeploy) later(DEPLOY_DELAY_MS, () => gate.offer({ source: "deploy" }));
    manageSubscriptions().catch((err) => node.error(asBitrix24Error(err)));

    node.on("close", (_removed: boolean, done: () => void) => {
      closed = true;
      stopListening?.();
      if (routeHandler) removeRoute(RED.httpNode, routeHandler);
      if (pollTimer) clearInterval(pollTimer);
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      gate.close();
      done();
    });
  }

  RED.nodes.registerType(TYPE, Bitrix24OfflineTriggerNode);
}
