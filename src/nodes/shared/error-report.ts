import type { Node, NodeMessage } from "node-red";
import { Bitrix24Error } from "../../core/rest/errors";
import type { Bitrix24Meta } from "./msg-contract";
import { reportNodeError } from "./ops-hub";

/**
 * Any thrown value as a Bitrix24Error WITHOUT its `cause`: Node-RED copies an error's own `cause` into the
 * Catch node's msg, and a transport error's cause carries the request (with the access token in its body).
 */
export function asBitrix24Error(err: unknown): Bitrix24Error {
  if (err instanceof Bitrix24Error) {
    if (!Object.hasOwn(err, "cause")) return err;
    return new Bitrix24Error(err.toJSON());
  }
  const message = err instanceof Error ? err.message : String(err);
  return new Bitrix24Error({ code: "INTERNAL_ERROR", description: message, retryable: false });
}

/** Short status text for a failure: the portal's code is what a user searches for. */
export function errorStatusText(err: Bitrix24Error): string {
  const text = `${err.code}: ${err.description}`;
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/**
 * Reports a failure the Node-RED way: red status, and the error to Catch nodes with the msg (msg.error.code
 * is the portal's code on Node-RED >= 4.1); the full detail travels in msg.bitrix24.error.
 */
export function reportFailure(
  node: Node,
  err: unknown,
  msg: NodeMessage & { bitrix24?: Partial<Bitrix24Meta> },
  done?: (err?: Error) => void,
): Bitrix24Error {
  const error = asBitrix24Error(err);
  msg.bitrix24 = { ...(msg.bitrix24 ?? {}), error: error.toJSON() };
  node.status({ fill: "red", shape: "ring", text: errorStatusText(error) });
  // the editor's Bitrix24 sidebar lists it under the node's portal, with a link to the node
  reportNodeError(node, error);
  if (done) done(error);
  else node.error(error, msg);
  return error;
}

/**
 * What is wrong with a worker node's portal at deploy: none selected (`noPortal`, the node's own words), or the
 * portal's own configuration error; undefined when it can serve.
 */
export function portalConfigError(
  portal: { configError?: Bitrix24Error } | null,
  noPortal: string,
): Bitrix24Error | undefined {
  return portal ? portal.configError : new Bitrix24Error({ code: "INVALID_CONFIG", description: noPortal });
}

/** A node's configuration shown at deploy: a wrong one as a red status and in the log, a right one as no status. */
export function showConfigError(node: Node, configError: Bitrix24Error | undefined): void {
  if (configError) {
    node.status({ fill: "red", shape: "ring", text: errorStatusText(configError) });
    node.error(configError);
  } else {
    node.status({});
  }
}
