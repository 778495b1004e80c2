import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

/** A Node-RED started as a child process on its own user directory, as users run it. */
export interface NodeRedProcess {
  url: string;
  child: ChildProcess;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function startNodeRed(
  userDir: string,
  options: { lang?: string; settings?: Record<string, unknown>; nodeBinary?: string } = {},
): Promise<NodeRedProcess> {
  const port = await freePort();
  const settings = {
    uiHost: "127.0.0.1",
    uiPort: port,
    flowFile: "flows.json",
    credentialSecret: false,
    editorTheme: { tours: false },
    ...options.settings,
  };
  writeFileSync(join(userDir, "settings.js"), `module.exports = ${JSON.stringify(settings)};\n`);
  const child = spawn(
    options.nodeBinary ?? process.execPath,
    [require.resolve("node-red/red.js"), "--userDir", userDir, "--settings", join(userDir, "settings.js")],
    { env: { ...process.env, LANG: options.lang ?? "en_US.UTF-8" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    log += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    log += chunk.toString();
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30000;
  while (!/Started flows|Server now running/.test(log)) {
    if (child.exitCode !== null) throw new Error(`Node-RED exited (${child.exitCode}):\n${log}`);
    if (Date.now() > deadline) throw new Error(`Node-RED did not start in 30 s:\n${log}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    child,
    output: () => log,
    stop: (signal: NodeJS.Signals = "SIGINT") =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const timer = setTimeout(() => child.kill("SIGKILL"), 10000);
        child.once("exit", () => {
          clearTimeout(timer);
          resolve();
        });
        child.kill(signal);
      }),
  };
}
