/**
 * The editor's live channel (`/comms` websocket): node status changes and debug-sidebar messages, exactly what
 * a user watching the editor sees. `ws` is Node-RED's own dependency, so nothing is added for it.
 */
export interface StatusUpdate {
  id: string;
  text?: string;
  fill?: string;
  shape?: string;
}

export interface DebugMessage {
  id: string;
  name?: string;
  topic?: string;
  /** The msg property as the sidebar gets it: JSON text for objects. */
  msg: string;
  format: string;
}

interface WebSocketLike {
  on(event: "open" | "close", listener: () => void): void;
  on(event: "message", listener: (data: Buffer) => void): void;
  on(event: "error", listener: (err: Error) => void): void;
  send(data: string): void;
  close(): void;
  terminate(): void;
}
type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface EditorComms {
  /** Every status update so far, oldest first. */
  statuses: StatusUpdate[];
  debug: DebugMessage[];
  /** The latest status text of a node (undefined before its first status). */
  statusOf(nodeId: string): string | undefined;
  close(): void;
}

export async function connectComms(nodeRedUrl: string): Promise<EditorComms> {
  const WebSocket = require("ws") as WebSocketConstructor;
  const socket = new WebSocket(`${nodeRedUrl.replace(/^http/, "ws")}/comms`);
  const statuses: StatusUpdate[] = [];
  const debug: DebugMessage[] = [];
  socket.on("message", (data) => {
    const parsed = JSON.parse(data.toString()) as unknown;
    for (const item of (Array.isArray(parsed) ? parsed : [parsed]) as Array<{ topic: string; data: unknown }>) {
      if (item.topic.startsWith("status/")) {
        statuses.push({ id: item.topic.slice("status/".length), ...(item.data as Omit<StatusUpdate, "id">) });
      } else if (item.topic === "debug") {
        debug.push(item.data as DebugMessage);
      }
    }
  });
  socket.on("error", () => {
    // the socket dies with a killed Node-RED; the tests reconnect after a restart
  });
  await new Promise<void>((resolve) => socket.on("open", resolve));
  socket.send(JSON.stringify({ subscribe: "status/#" }));
  socket.send(JSON.stringify({ subscribe: "debug" }));
  return {
    statuses,
    debug,
    statusOf: (nodeId) => statuses.filter((s) => s.id === nodeId).at(-1)?.text,
    close: () => socket.terminate(),
  };
}
