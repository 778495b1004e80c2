import type { EventEmitter } from "node:events";
import type { AckedNotice, AckQueueEvents } from "../acks/ack-queue";
import type { MethodPause, OperatingInfo, RequestInfo } from "../client/client";
import type { ConsumerState, DeliveryGroup, DrainSummary, OfflineConsumerEvents } from "../consumer/consumer-types";
import type { Bitrix24Error } from "../rest/errors";
import type { TokenSet } from "../state/token-store";
import type { PortalMetrics } from "./portal-metrics";

/**
 * Wires the events the client, the ack queue and the consumers emit anyway into a PortalMetrics. Each function
 * answers the function that unplugs it again, so a redeployed node leaves no listener behind.
 */

/** The client's events this needs (Bitrix24Client emits them; see client.ts). */
export type ClientEmitter = Pick<EventEmitter, "on" | "off">;

export function feedFromClient(metrics: PortalMetrics, client: ClientEmitter): () => void {
  const onRequest = (info: RequestInfo) => metrics.request(info.method, info.status);
  const onOperating = (info: OperatingInfo) => metrics.operating(info.method, info.operating, info.resetAt);
  const onPaused = (pause: MethodPause) => metrics.methodPaused(pause.method, pause.until);
  const onTokens = (tokens: TokenSet) => metrics.tokens(tokens.expiresAt);
  client.on("request", onRequest);
  client.on("operating", onOperating);
  client.on("method-paused", onPaused);
  client.on("tokens", onTokens);
  return () => {
    client.off("request", onRequest);
    client.off("operating", onOperating);
    client.off("method-paused", onPaused);
    client.off("tokens", onTokens);
  };
}

export function feedFromAcks(metrics: PortalMetrics, acks: EventEmitter<AckQueueEvents>): () => void {
  const onAcked = (notice: AckedNotice) => metrics.ack(notice);
  acks.on("acked", onAcked);
  return () => acks.off("acked", onAcked);
}

/** A get node's consumer, as the metrics see it. */
export interface WatchedConsumer extends EventEmitter<OfflineConsumerEvents> {
  readonly state: ConsumerState;
}

export function feedFromConsumer(
  metrics: PortalMetrics,
  node: { id: string; name: string },
  consumer: WatchedConsumer,
  perRequest: number,
  /** The node's changes option is on: its consumer counts the events it acks unseen. */
  countsUnchanged = false,
): () => void {
  const first = consumer.state;
  const unchanged = (state: ConsumerState) => (countsUnchanged ? state.unchanged : undefined);
  metrics.watchNode(node.id, node.name, first.mode, first.maxInFlight, perRequest);
  metrics.state(node.id, first.phase, first.pending, first.maxInFlight, unchanged(first));
  const onDeliver = (group: DeliveryGroup) =>
    metrics.deliver(
      node.id,
      group.processId,
      group.deliveries.map((d) => ({ id: d.id, messageId: d.event.MESSAGE_ID, redelivered: d.redelivered })),
    );
  const onDead = (group: DeliveryGroup) => metrics.deadLetter(node.id, group.deliveries.length);
  const onDrained = (summary: DrainSummary) => metrics.drained(node.id, summary);
  const onState = (state: ConsumerState) =>
    metrics.state(node.id, state.phase, state.pending, state.maxInFlight, unchanged(state));
  consumer.on("deliver", onDeliver);
  consumer.on("dead-letter", onDead);
  consumer.on("drained", onDrained);
  consumer.on("state", onState);
  return () => {
    consumer.off("deliver", onDeliver);
    consumer.off("dead-letter", onDead);
    consumer.off("drained", onDrained);
    consumer.off("state", onState);
    metrics.forgetNode(node.id);
  };
}

/**
 * An error a node shows (in its status; its Catch node sees it too): into the sidebar's list of recent errors.
 * The node reports them itself rather than this listening to the consumer's "failure": a failed trigger or a bad
 * msg never reaches the consumer's events, and both kinds belong in the list.
 */
export function reportError(
  metrics: PortalMetrics,
  node: { id: string; name: string },
  err: Pick<Bitrix24Error, "code" | "method" | "message">,
): void {
  metrics.error(
    { code: err.code, method: err.method, message: err.message, nodeId: node.id, nodeName: node.name },
    err,
  );
}
