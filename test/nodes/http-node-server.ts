import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { NodeAPI } from "node-red";

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * Serves Node-RED's httpNode app of the current helper load on a random port (the helper does not serve it):
 * pass `capture` to helper.load among the node modules; `forget()` after helper.unload.
 */
export async function startHttpNodeServer() {
  let httpNode: Handler | undefined;
  const server = createServer((req, res) => {
    if (httpNode) httpNode(req, res);
    else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    capture: (RED: NodeAPI) => {
      httpNode = RED.httpNode as unknown as Handler;
    },
    forget: () => {
      httpNode = undefined;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
