#!/usr/bin/env node
import { SEED_FLAGS, type SeedCounts } from "./crm/crm-store";
import { type Sandbox, startSandbox } from "./index";
/**
 * `bitrix24-sandbox`: runs the sandbox portal until SIGINT/SIGTERM. Prints ONE JSON line with the URL and
 * credentials on stdout once listening (so scripts can read it); everything else goes to stderr.
 */
import { INSTALL_SHAPES, type InstallShape } from "./oauth/app-install";

interface CliOptions {
  port: number;
  host: string;
  events: number;
  rateLimit: { burst: number; perSecond: number } | false | undefined;
  tokenTtlSec: number | undefined;
  trickle: number;
  objects: SeedCounts;
  scopes: string[] | undefined;
  /** Where to POST the application's installation once listening (the local application's installation path). */
  installTo: string | undefined;
  installShape: InstallShape;
}

const USAGE = `usage: bitrix24-sandbox [--port 0] [--host 127.0.0.1] [--events N] [--rate-limit off|BURST/PER_SECOND]
                        [--token-ttl SECONDS] [--trickle N/s]
                        [--deals N] [--contacts N] [--leads N] [--companies N]
                        [--items N] [--tasks N] [--users N] [--scopes crm,task,user]
                        [--install-to URL] [--install-shape auth|placement]`;

function fail(message: string): never {
  process.stderr.write(`bitrix24-sandbox: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function number(flag: string, text: string | undefined): number {
  const n = Number(text);
  if (text === undefined || text === "" || !Number.isFinite(n) || n < 0) fail(`${flag} needs a non-negative number`);
  return n;
}

export function parseArgs(argv: readonly string[]): CliOptions {
  const options: CliOptions = {
    port: 0,
    host: "127.0.0.1",
    events: 0,
    rateLimit: undefined,
    tokenTtlSec: undefined,
    trickle: 0,
    installTo: undefined,
    installShape: "auth",
    objects: {},
    scopes: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split("=", 2) as [string, string | undefined];
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case "--port":
        options.port = number(flag, value());
        break;
      case "--host":
        options.host = value() ?? fail("--host needs a value");
        break;
      case "--events":
        options.events = Math.floor(number(flag, value()));
        break;
      case "--rate-limit": {
        const text = value();
        if (text === "off") options.rateLimit = false;
        else {
          const m = /^(\d+(?:\.\d+)?)\/(\d+(?:\.\d+)?)$/.exec(text ?? "");
          if (!m) fail("--rate-limit takes off or BURST/PER_SECOND, e.g. 50/2");
          options.rateLimit = { burst: Number(m[1]), perSecond: Number(m[2]) };
        }
        break;
      }
      case "--token-ttl":
        options.tokenTtlSec = number(flag, value());
        break;
      case "--trickle": {
        const m = /^(\d+(?:\.\d+)?)(?:\/s)?$/.exec(value() ?? "");
        if (!m) fail("--trickle takes N/s, e.g. 5/s");
        options.trickle = Number(m[1]);
        break;
      }
      case "--install-to": {
        const url = value() ?? "";
        if (!/^https?:\/\/\S+$/.test(url)) fail("--install-to needs an http(s) URL");
        options.installTo = url;
        break;
      }
      case "--install-shape": {
        const shape = value() as InstallShape;
        if (!INSTALL_SHAPES.includes(shape)) fail(`--install-shape takes ${INSTALL_SHAPES.join(" or ")}`);
        options.installShape = shape;
        break;
      }
      case "--deals":
      case "--contacts":
      case "--leads":
      case "--companies":
      case "--items":
      case "--tasks":
      case "--users":
        options.objects[flag.slice(2) as keyof SeedCounts] = Math.floor(number(flag, value()));
        break;
      case "--scopes":
        options.scopes = (value() ?? fail("--scopes needs a list, e.g. crm,user")).split(",").filter(Boolean);
        break;
      case "--help":
      case "-h":
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
        break;
      default:
        fail(`unknown option ${flag}`);
    }
  }
  return options;
}

/** The target (a Node-RED still starting) may not listen yet: a refused connection is tried again for 30 s. */
async function installWhenReachable(
  sandbox: Sandbox,
  url: string,
  shape: InstallShape,
  log: (line: string) => void,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await sandbox.install(url, shape);
      log(`bitrix24-sandbox: installation (${shape}) -> ${url}: HTTP ${result.status} ${result.body.slice(0, 200)}`);
      return;
    } catch (err) {
      const refused = (err as NodeJS.ErrnoException).code === "ECONNREFUSED";
      if (!refused || attempt >= 30) {
        log(`bitrix24-sandbox: installation -> ${url} failed: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const sandbox = await startSandbox({
    port: options.port,
    host: options.host,
    events: options.events,
    rateLimit: options.rateLimit,
    tokenTtlSec: options.tokenTtlSec,
    objects: options.objects,
    scopes: options.scopes,
    log,
  });
  const c = sandbox.credentials;
  process.stdout.write(
    `${JSON.stringify({
      url: sandbox.url,
      clientId: c.clientId,
      clientSecret: c.clientSecret,
      accessToken: c.accessToken,
      refreshToken: c.refreshToken,
      applicationToken: c.applicationToken,
      webhookUrl: c.webhookUrl,
    })}\n`,
  );
  const seeded = SEED_FLAGS.filter((f) => options.objects[f]).map((f) => `${options.objects[f]} ${f}`);
  log(`bitrix24-sandbox: listening on ${sandbox.url} (${[`${options.events} events`, ...seeded].join(", ")} seeded)`);

  if (options.installTo) void installWhenReachable(sandbox, options.installTo, options.installShape, log);

  // The trickle spreads N events over each second in ticks of 100 ms; deal updates collapse per deal.
  let trickle: NodeJS.Timeout | undefined;
  if (options.trickle > 0) {
    let owed = 0;
    let tick = 0;
    trickle = setInterval(() => {
      owed += options.trickle / 10;
      const count = Math.floor(owed);
      owed -= count;
      tick++;
      if (count > 0) {
        sandbox.addEvents(count, {
          name: tick % 3 === 0 ? "ONCRMCONTACTADD" : "ONCRMDEALUPDATE",
          data: tick % 3 === 0 ? undefined : (i) => ({ FIELDS: { ID: String(1 + ((tick * 7 + i) % 500)) } }),
        });
      }
    }, 100);
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    if (trickle) clearInterval(trickle);
    log(`bitrix24-sandbox: ${signal}, stopping`);
    await sandbox.close();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`bitrix24-sandbox: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
