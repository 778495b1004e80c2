import { hostname } from "node:os";
import type { RequestHandler } from "express";
import type { NodeAPI } from "node-red";
import type { AckQueue } from "../../core/acks/ack-queue";
import type { Bitrix24Client } from "../../core/client/client";
import { feedFromAcks, feedFromClient } from "../../core/metrics/feed";
import { PortalMetrics } from "../../core/metrics/portal-metrics";
import { METRICS_CONTENT_TYPE, prometheusRegistry } from "../../core/metrics/prometheus";
import { QueueLook } from "../../core/metrics/queue-look";
import type { OfflineEventsApi } from "../../core/queue/offline-api";
import { normalisePath, registerGet, removeRoute } from "../shared/http-endpoint";
import { addOpsPortal } from "../shared/ops-hub";

/**
 * The portal node's operations numbers: one PortalMetrics per portal node, fed by its client and ack queue (get
 * nodes add their consumers), shown in the editor's Bitrix24 sidebar and, when `metricsPath` is set, served to
 * Prometheus on Node-RED's HTTP node server.
 */
export interface PortalOps {
  metrics: PortalMetrics;
  close(): void;
}

/** Names this Node-RED process in the metrics: host name and editor port (stable across restarts, unlike a pid). */
export function instanceName(RED: NodeAPI): string {
  const port = (RED.settings as { uiPort?: unknown }).uiPort;
  return `${hostname()}:${typeof port === "number" || typeof port === "string" ? port : process.pid}`;
}

export function startPortalOps(
  RED: NodeAPI,
  node: { id: string; name?: string; installation?: { portal: string; installedAt: number } },
  parts: { client: Bitrix24Client; api: OfflineEventsApi; acks: AckQueue },
  metricsPath: string | undefined,
  onInstalled: (fn: (status: { portal: string; installedAt: number }) => void) => () => void,
  warn: (text: string) => void,
): PortalOps {
  const { client, api, acks } = parts;
  const rate = client.bucketReading;
  const metrics = new PortalMetrics(
    {
      id: node.id,
      name: node.name || client.portalHost,
      host: client.portalHost,
      perSecond: rate?.perSecond ?? 0,
      burst: rate?.burst ?? 0,
    },
    () => client.bucketReading ?? null,
  );
  const unplug = [feedFromClient(metrics, client), feedFromAcks(metrics, acks)];
  const expiresAt = client.tokens?.expiresAt;
  if (expiresAt) metrics.knownTokens(expiresAt);
  if (node.installation) metrics.installed(node.installation.portal, node.installation.installedAt);
  unplug.push(onInstalled((status) => metrics.installed(status.portal, status.installedAt)));

  const queueLook = new QueueLook(metrics, () => api.list({}));
  unplug.push(
    addOpsPortal({
      id: node.id,
      metrics,
      queueLook,
      // a scan of the deployed nodes: only when a node reports a failure, which is rare
      owns: (nodeId) => {
        let owned = false;
        RED.nodes.eachNode((def) => {
          if (def.id === nodeId && (def as { portal?: unknown }).portal === node.id) owned = true;
        });
        return owned;
      },
      inUse: () => {
        let used = false;
        RED.nodes.eachNode((def) => {
          if ((def as { portal?: unknown }).portal === node.id) used = true;
        });
        return used;
      },
    }),
  );

  const path = normalisePath(metricsPath);
  if (path) {
    const registry = prometheusRegistry(metrics, { instance: instanceName(RED) });
    const handler: RequestHandler = (_req, res) => {
      registry.metrics().then(
        // as bytes: Express would reorder the content type's parameters of a string body
        (text) => res.status(200).set("Content-Type", METRICS_CONTENT_TYPE).send(Buffer.from(text)),
        (err: unknown) => res.status(500).type("text/plain").send(String(err)),
      );
    };
    if (registerGet(RED, path, handler)) unplug.push(() => removeRoute(RED.httpNode, handler));
    else warn(RED._("bitrix24-portal.metrics.noHttp"));
  }
  return {
    metrics,
    close: () => {
      for (const fn of unplug.splice(0)) fn();
    },
  };
}
