// The raw-client reference: the same REST calls the get and clear nodes make (ack mode), with our core client
// and no Node-RED — one batch request per round, carrying "clear the previous batch" + "get the next one".
// Runs in its own process, like Node-RED does, so both share the machine with the sandbox the same way.
//
// Parent -> child: {cmd: "go"}; child -> parent: {type: "ready"}, {type: "done", events, requests}, {type: "error"}.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const root = process.env.B24_BENCH_PACKAGE_ROOT || join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const built = join(root, "nodes", "core");
const { Bitrix24Client } = require(join(built, "client", "client.js"));
const { OfflineEventsApi, parseGetResult } = require(join(built, "queue", "offline-api.js"));

const config = JSON.parse(process.env.BENCH_RAW_CONFIG ?? "{}");
const client = new Bitrix24Client({
  portalUrl: config.url,
  auth: { type: "oauth", oauthServer: config.url, ...config.auth },
  rateLimit: config.rate ?? false,
});
const api = new OfflineEventsApi(client);

async function drain() {
  let events = 0;
  let requests = 0;
  let held; // {process_id, id[]} of the batch the "flow" has just finished
  for (;;) {
    const commands = {};
    if (held) commands.ack = api.clearCommand(held);
    commands.next = api.getCommand({ clear: 0, limit: config.limit });
    const outcome = await client.batch(commands);
    requests += outcome.requests;
    const failure = outcome.errors.ack ?? outcome.errors.next;
    if (failure) throw failure;
    const got = parseGetResult(outcome.result.next);
    events += got.events.length;
    held = got.events.length > 0 ? { process_id: got.process_id, id: got.events.map((e) => Number(e.ID)) } : undefined;
    if (got.events.length === 0) return { events, requests };
  }
}

process.on("message", (message) => {
  if (message.cmd !== "go") return;
  drain().then(
    (result) => {
      client.close();
      process.send({ type: "done", ...result });
    },
    (err) => process.send({ type: "error", message: `${err.code ?? ""} ${err.description ?? err.message}` }),
  );
});
process.send({ type: "ready" });
