// Starts raw-drain-child.mjs (our core client, no Node-RED) and runs one drain when told to.
import { fork } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { accountChild } from "./cpu-accounting.mjs";

const here = dirname(fileURLToPath(import.meta.url));

export async function startRawDrain(sandbox, { limit, rate = false }) {
  const c = sandbox.credentials;
  const config = {
    url: sandbox.url,
    limit,
    rate,
    auth: {
      clientId: c.clientId,
      clientSecret: c.clientSecret,
      accessToken: c.accessToken,
      refreshToken: c.refreshToken,
    },
  };
  const child = fork(join(here, "raw-drain-child.mjs"), [], {
    env: { ...process.env, BENCH_RAW_CONFIG: JSON.stringify(config) },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const next = () =>
    new Promise((resolve, reject) => {
      child.once("message", (m) => (m.type === "error" ? reject(new Error(`raw client: ${m.message}`)) : resolve(m)));
      child.once("exit", (code) => reject(new Error(`raw client exited (${code})`)));
    });
  await next();
  return {
    /** Resolves when the child has seen the queue empty. */
    go() {
      const done = next();
      child.send({ cmd: "go" });
      return done;
    },
    stop() {
      accountChild(child.pid);
      child.kill();
    },
  };
}
