// bench/RESULTS.md from the results object that run.mjs also writes to results.json.

const fmt = (n, unit = "") => (n === null || n === undefined ? "n/a" : `${Number(n).toLocaleString("en-US")}${unit}`);
const pct = (r) => (r === null || r === undefined ? "n/a" : `${(r * 100).toFixed(1)} %`);
const verdict = (met) => (met === true ? "**met**" : met === false ? "**not met**" : "— (no goal)");

function table(header, rows) {
  return [
    `| ${header.join(" | ")} |`,
    `|${header.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

function summaryRows(byId) {
  const rows = [];
  const s1 = byId["rate-limited-drain"];
  if (s1?.rows) {
    const b = s1.config.bucket;
    for (const r of s1.rows) {
      rows.push([
        "1",
        `Rate-limited drain, ${r.label} (bucket ${b.burst} burst, ${b.perSecond}/s; ${fmt(r.events)} events)`,
        `${fmt(r.afterBurstPerSecond)} events/s after the burst; ${r.rejected503} × 503${r.objects ? `; ${fmt(r.objects.checked)} msgs checked, ${r.objects.wrong} without their object's latest state` : ""}`,
        `${fmt(r.bound)} events/s (Y × limit${r.prefetch > 1 ? " × prefetch" : ""}${r.objects ? ", as without objects" : ""})`,
        pct(r.ratioToBound),
        r.objects ? "≥ 90 % of the bound without objects, zero 503s, every msg's object right" : "≥ 90 %, zero 503s",
        verdict(r.met),
      ]);
    }
  }
  const s2 = byId["baseline-comparison"];
  if (s2?.ours) {
    rows.push([
      "2",
      `Same queue, ${s2.config.windowSeconds} s window, vs. core-nodes flow (bucket ${s2.config.bucket.burst}/${s2.config.bucket.perSecond} per s)`,
      `${fmt(s2.ours.perSecond)} events/s; ${s2.ours.rejected503} × 503`,
      `baseline ${fmt(s2.baseline.perSecond)} events/s; ${s2.baseline.rejected503} × 503; ${fmt(s2.baseline.heldAtWindowEnd)} events stranded`,
      `× ${fmt(s2.speedUp)}`,
      s2.goal.text,
      verdict(s2.goal.met),
    ]);
  }
  const s3 = byId["unlimited-drain"];
  if (s3?.raw) {
    rows.push([
      "3",
      `Unlimited drain, ${fmt(s3.config.events)} events, Node-RED get → clear`,
      `${fmt(s3.nodeRed.perSecond)} events/s (+${fmt(s3.overheadMicrosecondsPerEvent)} µs per event)`,
      `raw core client ${fmt(s3.raw.perSecond)} events/s`,
      pct(s3.shareOfRaw),
      "≥ 50 % of raw",
      verdict(s3.goal.met),
    ]);
  }
  const s4 = byId["push-latency"];
  if (s4?.push) {
    rows.push([
      "4",
      `Latency event → msg, p50 / p95 / p99 (${s4.push.samples} samples)`,
      `push (minTimeout ${s4.config.minTimeout}): ${fmt(s4.push.p50Ms)} / ${fmt(s4.push.p95Ms)} / ${fmt(s4.push.p99Ms)} ms`,
      `poll every ${s4.config.pollSeconds} s: ${fmt(s4.poll.p50Ms)} / ${fmt(s4.poll.p95Ms)} / ${fmt(s4.poll.p99Ms)} ms`,
      s4.push.p50Ms && s4.poll.p50Ms ? `p50 ÷ ${fmt(Math.round(s4.poll.p50Ms / s4.push.p50Ms))}` : "n/a",
      s4.goal.text,
      verdict(s4.goal.met),
    ]);
  }
  const s5 = byId.memory;
  if (s5?.heapMb) {
    rows.push([
      "5",
      `Memory draining ${fmt(s5.config.events)} events (heap after GC)`,
      `heap ${s5.heapMb.before} → peak ${s5.heapMb.duringMax} → ${s5.heapMb.after} MB; RSS peak ${s5.rssMb.duringMax} MB`,
      "flat (no growth with the queue)",
      `drift ${s5.driftMb} MB`,
      "flat",
      verdict(s5.goal.met),
    ]);
  }
  const s6 = byId["scale-out"];
  if (s6?.rows) {
    rows.push([
      "6",
      `Scale-out, ${fmt(s6.config.events)} events, bucket off`,
      s6.rows.map((r) => `${r.instances}×: ${fmt(r.perSecond)}/s`).join(", "),
      s6.rows.some((r) => r.instances === 1) ? "1 instance" : "— (quick mode: 4 instances, correctness only)",
      s6.rows.map((r) => `× ${fmt(r.speedUp)}`).join(", "),
      "0 duplicates, 0 lost",
      `${verdict(s6.goal.met)} (${s6.rows.reduce((n, r) => n + r.duplicates, 0)} duplicates, ${s6.rows.reduce((n, r) => n + r.neverDelivered, 0)} lost)`,
    ]);
  }
  const s7 = byId["call-all"];
  if (s7?.rows?.length) {
    const [main] = s7.rows;
    const base = s7.rows.at(-1);
    const b = s7.config.bucket;
    rows.push([
      "7",
      `Call node \`all\`: ${fmt(s7.config.deals)} deals (${main.label}; bucket ${b.burst} burst, ${b.perSecond}/s, after the burst)`,
      `${fmt(main.perSecond)} records/s in ${fmt(main.requests)} requests (≤ ${fmt(main.maxRequests)}); ${main.rejected503} × 503`,
      `${fmt(main.bound)} records/s (Y × 2 500); baseline one counted page per request ${fmt(base.perSecond)} records/s`,
      `${pct(main.ratioToBound)}; × ${fmt(s7.speedUp)} baseline`,
      "≥ 90 % of bound, zero 503s",
      verdict(s7.goal.met),
    ]);
  }
  const s8 = byId["call-each"];
  if (s8?.rows?.length) {
    const [main] = s8.rows;
    const base = s8.rows.at(-1);
    const b = s8.config.bucket;
    rows.push([
      "8",
      `Call node \`each\`: ${fmt(s8.config.items)} × crm.deal.get (bucket ${b.burst} burst, ${b.perSecond}/s, after the burst)`,
      `${fmt(main.perSecond)} items/s in ${fmt(main.requests)} requests; ${main.rejected503} × 503`,
      `${fmt(main.bound)} items/s (Y × 50); baseline one call per item ${fmt(base.perSecond)} items/s`,
      `${pct(main.ratioToBound)}; × ${fmt(s8.speedUp)} baseline`,
      "≥ 90 % of bound, zero 503s",
      verdict(s8.goal.met),
    ]);
  }
  const s9 = byId.changes;
  if (s9?.rows) {
    const [entityOnly, withChanges] = s9.rows;
    const t = s9.tracking?.[0];
    rows.push([
      "9",
      `What changed: rate-limited drain with changes on vs entity only (same run, ${fmt(s9.config.events)} events); ${fmt(s9.config.objects)} objects tracked`,
      `${fmt(withChanges.afterBurstPerSecond)} events/s after the burst; ${withChanges.rejected503} × 503${t ? `; heap ${fmt(t.heapBeforeMb)} → ${fmt(t.heapAfterMb)} MB, ${fmt(t.diskMb)} MB on disk, ${fmt(t.secondPassMsPerEvent)} ms/event` : ""}`,
      `entity only ${fmt(entityOnly.afterBurstPerSecond)} events/s`,
      pct(s9.ratioToEntity),
      "≥ 90 % of entity only, zero 503s, flat heap",
      verdict(s9.goal.met),
    ]);
  }
  const s10 = byId["ops-overhead"];
  if (s10?.rows?.length) {
    const b = s10.config.bucket;
    rows.push([
      "10",
      `Operations view: the drain of #1 (limit 50, bucket ${b.burst} burst, ${b.perSecond}/s; ${fmt(s10.config.events)} events) with the Bitrix24 sidebar open and metrics scraped every second`,
      `${fmt(s10.watched.afterBurstPerSecond)} events/s after the burst; Node-RED CPU ${fmt(s10.watched.cpuMicrosPerEvent)} µs/event`,
      `same drain, neither: ${fmt(s10.plain.afterBurstPerSecond)} events/s; ${fmt(s10.plain.cpuMicrosPerEvent)} µs/event`,
      pct(s10.rateRatio),
      s10.goal.text,
      verdict(s10.goal.met),
    ]);
  }
  const s11 = byId["postgres-store"];
  if (s11?.rows?.length) {
    const [a, b, c] = s11.rows;
    if (a) {
      rows.push([
        "11a",
        `Rate-limited drain with the PostgreSQL store (${fmt(a.events)} events, bucket ${a.bucket.burst} / ${a.bucket.perSecond}/s)`,
        `${fmt(a.store.afterBurstPerSecond)} events/s after the burst, ${a.store.rejected503} × 503`,
        `the same drain with files, same run: ${fmt(a.files.afterBurstPerSecond)} events/s`,
        pct(a.ratio),
        "≥ 95 %",
        verdict(a.met),
      ]);
    }
    if (b) {
      rows.push([
        "11b",
        `Two instances on one store, one shared bucket (${fmt(b.events)} events)`,
        `${fmt(b.afterBurstPerSecond)} events/s after the burst, ${b.rejected503} × 503`,
        `${fmt(b.bound)} events/s (Y × limit)`,
        pct(b.ratio),
        "≥ 90 %, zero 503s",
        verdict(b.met),
      ]);
    }
    if (c) {
      rows.push([
        "11c",
        `Unlimited drain with the store (${fmt(c.events)} events)`,
        `${fmt(c.store.perSecond)} events/s`,
        `the file journal: ${fmt(c.files.perSecond)} events/s`,
        `${pct(c.ratio)}; +${fmt(c.extraMsPerBatch)} ms per batch of 50`,
        "reported",
        "—",
      ]);
    }
  }
  for (const r of Object.values(byId)) {
    if (r.error)
      rows.push([r.number ?? "?", r.title, `**failed**: ${r.error.split("\n")[0]}`, "", "", "", "**not met**"]);
  }
  return rows;
}

function details(byId) {
  const out = [];
  const s1 = byId["rate-limited-drain"];
  if (s1?.rows) {
    out.push("### 1. Rate-limited drain", "");
    out.push(
      "The sandbox's bucket is on; the portal node is configured with the same numbers (as a user would). The flow is",
      'inject → get (ack mode, one msg per event) → clear. After the burst each request carries "clear the previous',
      'batch + get the next", so the bound is Y × limit (× prefetch) events/s. "After the burst" starts when a replay of',
      "the portal's bucket over the sampled request count is full.",
      "",
    );
    out.push(
      table(
        ["variant", "events", "total s", "overall/s", "after burst/s", "bound/s", "ratio", "503s (at s)", "requests"],
        s1.rows.map((r) => [
          r.label,
          fmt(r.events),
          fmt(r.seconds),
          fmt(r.overallPerSecond),
          fmt(r.afterBurstPerSecond),
          fmt(r.bound),
          pct(r.ratioToBound),
          `${r.rejected503}${r.rejected503AtSeconds?.length ? ` (${r.rejected503AtSeconds.join(", ")}; burst spent at ${r.burstSpentAtSeconds})` : ""}`,
          Object.entries(r.byMethod)
            .map(([m, n]) => `${m} ${n}`)
            .join(", "),
        ]),
      ),
      "",
    );
    const withObjects = s1.rows.filter((r) => r.objects);
    if (withObjects.length > 0) {
      out.push(
        "Rows with objects (issue 12): the get node's entity option on, same bucket, queue size and limit as the first",
        "row, so the bound is the one without objects. Before the drain every tenth object was changed after its event",
        "was queued (with the bucket off; those update calls are not counted above): a msg must carry the object as it",
        "is now. After the drain every msg is checked against the sandbox's object: same ID, same title (contacts:",
        "name) and modification date.",
        "",
        table(
          [
            "variant",
            "events queued",
            "msgs checked",
            "wrong or missing object",
            "changed after the event, seen changed",
            "not reported",
          ],
          withObjects.map((r) => [
            r.label,
            Object.entries(r.objects.queued ?? {})
              .map(([kind, n]) => `${kind} ${fmt(n)}`)
              .join(", "),
            fmt(r.objects.checked),
            fmt(r.objects.wrong),
            fmt(r.objects.changedSinceEvent),
            fmt(r.objects.unreported),
          ]),
        ),
        "",
        "**How the reads travel.** The objects of the events a request fetched are read by the NEXT request of the",
        "drain, the one that carries the acks of the batch before and the next get: `[acks of batch n-1] + [reads of",
        "batch n] + [get n+1]`, one list command per object type (and smart-process type id) with up to 50 IDs. The",
        "drain sends that request anyway, so the rate-limit cost is zero in the steady state; the price is that events",
        "leave one request later (1/Y s at the bucket's pace) and that a drain ends with one request that only reads",
        "(+1 request per drain, not per batch). Redeliveries and re-selects (ack timeout, restart, orphans,",
        "msg.processId) read their objects again in a batch request of their own: they have no drain request to ride",
        "with, and the object may have changed since the first delivery.",
        "",
        "**Why not `$result[...]` in the same request.** A reference names ONE value at a fixed path, e.g.",
        "`$result[offline_get_0][events][7][EVENT_DATA][FIELDS][ID]`. Which events of a batch are deals, contacts or",
        "tasks is known only from the answer, so the same request could only carry, for every object type the map",
        "knows, a list command with a reference to every one of the 50 positions (tasks keep their ID under",
        "`FIELDS_AFTER`, not `FIELDS`); a short batch leaves references unresolvable, whose substitution the docs do",
        "not describe (the sandbox, like PHP, leaves the literal text, which a numeric filter reads as 0,",
        "REFERENCE.md). Riding with the next get needs none of that and reads each object once; the rows above",
        "measure what it costs.",
        "",
      );
    }
  }
  const s2 = byId["baseline-comparison"];
  if (s2?.ours) {
    out.push("### 2. Side by side with the core-nodes flow", "");
    out.push(
      "`bench/baseline/flow.json` is what an integrator builds today: inject (every 1 s) → http request",
      "(event.offline.get, clear=0, limit 50) → function (one clear request per event) → split → http request",
      "(event.offline.clear). Both flows ran at the same time, each in its own Node-RED against its own sandbox",
      `with ${fmt(s2.config.events)} events and the bucket ${s2.config.bucket.burst} burst / ${s2.config.bucket.perSecond} per s.`,
      "Events the baseline fetched but could not clear stay held under a process id it never kept (the portal deletes",
      "them after ~30 days: they are lost to the integration).",
      "",
    );
    out.push(
      table(
        ["flow", "cleared in window", "events/s", "held at window end", "requests", "503s", "by method"],
        ["ours", "baseline"].map((k) => [
          k === "ours" ? "get → clear (this package)" : "core nodes (bench/baseline)",
          fmt(s2[k].cleared),
          fmt(s2[k].perSecond),
          fmt(s2[k].heldAtWindowEnd),
          fmt(s2[k].requests),
          fmt(s2[k].rejected503),
          Object.entries(s2[k].byMethod)
            .map(([m, n]) => `${m} ${n}`)
            .join(", "),
        ]),
      ),
      "",
      `Speed-up: × ${fmt(s2.speedUp)}.`,
      "",
    );
  }
  const s3 = byId["unlimited-drain"];
  if (s3?.raw) {
    out.push("### 3. Unlimited drain", "");
    out.push(
      "Bucket off, limit 50, ack mode. The raw loop (bench/lib/raw-drain-child.mjs) sends one batch per round with the",
      "clear of the previous batch and the next get, like the get node does, but keeps no journal and has no flow.",
      "Both run in a child process; the sandbox runs in the benchmark's process.",
      "",
    );
    const rows = [
      ["raw core client", fmt(s3.raw.seconds), fmt(s3.raw.perSecond), fmt(s3.raw.microsecondsPerEvent), "—"],
      [
        "Node-RED get → clear",
        fmt(s3.nodeRed.seconds),
        fmt(s3.nodeRed.perSecond),
        fmt(s3.nodeRed.microsecondsPerEvent),
        `+${fmt(s3.overheadMicrosecondsPerEvent)}`,
      ],
    ];
    if (s3.journalOnTmpfs) {
      rows.push([
        "same, user directory on tmpfs (diagnostic)",
        fmt(s3.journalOnTmpfs.seconds),
        fmt(s3.journalOnTmpfs.perSecond),
        fmt(s3.journalOnTmpfs.microsecondsPerEvent),
        `+${fmt(s3.journalOnTmpfs.overheadMicrosecondsPerEvent)}`,
      ]);
    }
    out.push(table(["path", "seconds", "events/s", "µs per event", "overhead µs/event"], rows), "");
    if (s3.journalOnTmpfs) {
      out.push(
        "The tmpfs row is the same flow with the user directory (where the process-id journal is fsync'd before every",
        "emit) on tmpfs: the difference to the row above is the cost of that durability on this machine's disk.",
        "",
      );
    }
  }
  const s4 = byId["push-latency"];
  if (s4?.push) {
    out.push("### 4. Latency", "");
    out.push(
      `One event every 250–750 ms for ${s4.config.windowSeconds} s, added to two sandboxes (bucket off) at the same moment.`,
      "Push: trigger node with an endpoint, ONOFFLINEEVENT bound with minTimeout 0, no polling. Poll: trigger polling",
      `every ${s4.config.pollSeconds} s. Measured from just before the sandbox stores the event to a function node wired`,
      "right after the get node (wall clock, both processes on one host).",
      "",
    );
    out.push(
      table(
        ["trigger", "samples", "p50 ms", "p95 ms", "p99 ms", "max ms", "pushes sent"],
        ["push", "poll"].map((k) => [
          k,
          fmt(s4[k].samples),
          fmt(s4[k].p50Ms),
          fmt(s4[k].p95Ms),
          fmt(s4[k].p99Ms),
          fmt(s4[k].maxMs),
          fmt(s4[k].pushesSent),
        ]),
      ),
      "",
    );
  }
  const s5 = byId.memory;
  if (s5?.heapMb) {
    out.push("### 5. Memory", "");
    out.push(
      `${fmt(s5.config.events)} events drained at ${fmt(s5.perSecond)} events/s (${fmt(s5.seconds)} s) by a Node-RED run with`,
      `--expose-gc; ${s5.config.readingsDuring} readings during the drain, each after a full GC. Limit ${s5.config.limit}, maxInFlight ${s5.config.maxInFlight}.`,
      "",
    );
    out.push(
      table(
        ["", "before", "during (min–max)", "first ¼ median", "last ¼ median", "after"],
        [
          [
            "heap used MB",
            fmt(s5.heapMb.before),
            `${fmt(s5.heapMb.duringMin)}–${fmt(s5.heapMb.duringMax)}`,
            fmt(s5.heapMb.firstQuarterMedian),
            fmt(s5.heapMb.lastQuarterMedian),
            fmt(s5.heapMb.after),
          ],
          ["RSS MB", fmt(s5.rssMb.before), `≤ ${fmt(s5.rssMb.duringMax)}`, "", "", fmt(s5.rssMb.after)],
        ],
      ),
      "",
      `Goal: ${s5.goal.text} — ${verdict(s5.goal.met)}.`,
      "",
    );
  }
  const s6 = byId["scale-out"];
  if (s6?.rows) {
    out.push("### 6. Scale-out", "");
    out.push(
      "N Node-RED processes, each with its own user directory and the same flow (inject → get → clear, plus a function",
      "node reporting every delivered record id), on one sandbox queue, bucket off. Duplicates and lost events are",
      `counted per record id. This machine has ${s6.config.cores} cores shared by the sandbox and all instances, so the`,
      "speed-up says more about CPU than about the design: the queue hands parallel readers disjoint sets.",
      "",
    );
    out.push(
      table(
        ["instances", "seconds", "events/s", "speed-up", "duplicates", "lost", "events per instance"],
        s6.rows.map((r) => [
          fmt(r.instances),
          fmt(r.seconds),
          fmt(r.perSecond),
          `× ${fmt(r.speedUp)}`,
          fmt(r.duplicates),
          fmt(r.neverDelivered),
          r.perInstance.map((n) => fmt(n)).join(" / "),
        ]),
      ),
      "",
    );
  }
  const s7 = byId["call-all"];
  if (s7?.rows?.length) {
    out.push("### 7. Call node engine: all records of a list", "");
    out.push(
      "`RestCalls.all` (src/core/calls/rest-calls.ts, built) reads crm.deal.list to the end: batches of 50 chained pages",
      "(`start=-1`, ID ascending, `>ID` from the previous page's last record), so Y × 2 500 records/s is the bound at Y",
      "requests/s. Before each row the client spends the bucket's burst with cheap calls, so the row runs at the steady",
      `rate. The sandbox holds ${fmt(s7.config.deals)} seeded deals; the baseline reads one page (with its count) per request`,
      `for ${fmt(s7.config.windowSeconds)} s through the same client. Records are checked: each ID once, none missing.`,
      "",
    );
    out.push(
      table(
        ["variant", "records", "seconds", "records/s", "bound/s", "ratio", "requests (max)", "503s", "goal"],
        s7.rows.map((r, i) => [
          r.label,
          fmt(r.records),
          fmt(r.seconds),
          fmt(r.perSecond),
          fmt(r.bound),
          pct(r.ratioToBound),
          r.maxRequests === null ? fmt(r.requests) : `${fmt(r.requests)} (${fmt(r.maxRequests)})`,
          fmt(r.rejected503),
          i === 0 ? verdict(s7.goal.met) : i === s7.rows.length - 1 ? "baseline" : "— (CPU cost)",
        ]),
      ),
      "",
    );
    if (s7.rows.length > 2) {
      out.push(
        '"Every field" sends about 1 KB of JSON per deal, 2 500 deals per batch answer: it shows what producing and',
        "reading that costs the sandbox and the client (one process, this machine's CPU), so it has no goal; a sync",
        "selects the fields it needs, as the docs advise, and the first row is measured against the bound.",
        "",
      );
    }
  }
  const s8 = byId["call-each"];
  if (s8?.rows?.length) {
    out.push("### 8. Call node engine: one call per item", "");
    out.push(
      `\`RestCalls.each\` runs crm.deal.get for ${fmt(s8.config.items)} IDs, 50 commands to a batch request, results in input order`,
      "(checked): the bound is Y × 50 items/s. The baseline sends one crm.deal.get per item through the same client for",
      `${fmt(s8.config.windowSeconds)} s (bound Y). Both start with the burst spent.`,
      "",
    );
    out.push(
      table(
        ["variant", "items", "seconds", "items/s", "bound/s", "ratio", "requests", "503s"],
        s8.rows.map((r) => [
          r.label,
          fmt(r.items),
          fmt(r.seconds),
          fmt(r.perSecond),
          fmt(r.bound),
          pct(r.ratioToBound),
          fmt(r.requests),
          fmt(r.rejected503),
        ]),
      ),
      "",
    );
  }
  const s9 = byId.changes;
  if (s9?.rows) {
    const b = s9.config.bucket;
    out.push("### 9. What changed (changes option)", "");
    out.push(
      `The same queue (${fmt(s9.config.events)} ONCRMDEALUPDATE events of seeded deals, limit 50, bucket ${b.burst} burst / ${b.perSecond} per s)`,
      "drained twice in this run through Node-RED: with only `entity` on, and with `changes` on watching STAGE_ID and",
      "OPPORTUNITY. Every event of the second drain is a first sight (a fresh user directory): each one reads the",
      "embedded store, stages its state before it is emitted and commits it when the clear node's ack is confirmed.",
      "",
    );
    out.push(
      table(
        ["variant", "events", "seconds", "events/s after the burst", "bound/s", "ratio to bound", "503s", "requests"],
        s9.rows.map((r) => [
          r.label,
          fmt(r.events),
          fmt(r.seconds),
          fmt(r.afterBurstPerSecond),
          fmt(r.bound),
          pct(r.ratioToBound),
          fmt(r.rejected503),
          fmt(r.requests),
        ]),
      ),
      "",
      `Changes on / entity only: ${pct(s9.ratioToEntity)}.`,
      "",
      `Tracking ${fmt(s9.config.objects)} objects with the built tracker over the embedded store (lmdb), as the get node drives`,
      "it (batches of 50: read the acked states, compare, stage; then the ack commits). Heap after a full GC, before the",
      "first object and after the second pass; the second pass brings every object again, one in ten with a new stage.",
      "",
      table(
        [
          "kept per object",
          "objects",
          "heap before",
          "heap after",
          "on disk",
          "bytes/object",
          "ms/event, first sight",
          "ms/event, compared",
          "unchanged",
        ],
        s9.tracking.map((t) => [
          t.label,
          fmt(t.objects),
          `${fmt(t.heapBeforeMb)} MB`,
          `${fmt(t.heapAfterMb)} MB`,
          `${fmt(t.diskMb)} MB`,
          fmt(t.bytesPerObject),
          fmt(t.firstSightMsPerEvent),
          fmt(t.secondPassMsPerEvent),
          fmt(t.secondPassUnchanged),
        ]),
      ),
      "",
      `Goal: ${s9.goal.text} — ${verdict(s9.goal.met)}.`,
      "",
    );
  }
  const s10 = byId["ops-overhead"];
  if (s10?.rows?.length) {
    out.push("### 10. Operations view overhead", "");
    out.push(
      "The drain of #1 (inject → get, limit 50 → clear) twice without and twice with what an open Bitrix24 sidebar and",
      "a Prometheus cause: the editor's comms client subscribed to the sidebar's pushes (lease renewed every 15 s, so",
      "the runtime publishes once a second and looks at the queue once a minute), and metricsPath scraped every second.",
      `Order ${s10.config.order.join(", ")}, each with a fresh Node-RED and sandbox. CPU is the Node-RED process's own`,
      "(user + system, /proc) from the trigger to the last ack.",
      "",
    );
    out.push(
      table(
        [
          "run",
          "seconds",
          "after burst/s",
          "ratio to bound",
          "503s",
          "requests (list)",
          "Node-RED CPU ms",
          "µs/event",
          "pushes (KB)",
          "scrapes (KB)",
        ],
        s10.rows.map((r) => [
          r.variant,
          fmt(r.seconds),
          fmt(r.afterBurstPerSecond),
          pct(r.ratioToBound),
          fmt(r.rejected503),
          `${fmt(r.requests)} (${fmt(r.listRequests)})`,
          fmt(r.cpuMs),
          fmt(r.cpuMicrosPerEvent),
          r.pushes === undefined ? "—" : `${fmt(r.pushes)} (${fmt(r.pushKb)})`,
          r.scrapes === undefined ? "—" : `${fmt(r.scrapes)} (${fmt(r.scrapeKb)})`,
        ]),
      ),
      "",
    );
    const c = s10.costs;
    if (c) {
      out.push(
        `In this process, with a finer clock (a portal with 5 get nodes, 10 methods, 20 errors, 15 full minutes of series): one push ${fmt(c.pushMicros)} µs,`,
        `a tab opening (the whole 15 minutes) ${fmt(c.openMicros)} µs, one scrape ${fmt(c.scrapeMicros)} µs (${fmt(c.scrapeBytes)} bytes); always on, whether watched or`,
        `not: a 50-event batch delivered and acked ${fmt(c.batchMicros)} µs.`,
        "",
      );
    }
  }
  const s11 = byId["postgres-store"];
  if (s11?.rows?.length) {
    out.push("### 11. PostgreSQL store", "");
    out.push(
      "The same inject → get → clear flow with the portal's `store` naming a `bitrix24-postgres` node (an embedded",
      "PostgreSQL on loopback, durable: fsync on), against the same flow with files, in the same run. Row b runs two",
      "Node-RED processes on one store: they draw from one bucket row, so together they must stay under the portal's",
      "bound. Row c shows what a database round trip per batch costs where nothing else limits the drain.",
      "",
      "```json",
      JSON.stringify(s11.rows, null, 2),
      "```",
      "",
    );
  }
  return out.join("\n");
}

/**
 * RESULTS.md ends with notes written by hand (before/after comparisons across commits, findings): everything
 * below this line is carried over when the file is regenerated, so a full run cannot erase them.
 */
export const KEPT_NOTES_MARKER =
  "<!-- Written by hand below this line: bench/lib/report.mjs keeps it when it regenerates this file. -->";

/** The hand-written notes of an earlier RESULTS.md ("" when it has none). */
export function keptNotes(previousMarkdown) {
  const at = previousMarkdown.indexOf(KEPT_NOTES_MARKER);
  return at < 0 ? "" : previousMarkdown.slice(at + KEPT_NOTES_MARKER.length).trim();
}

export function renderMarkdown(results, notesByHand = "") {
  const env = results.environment;
  const byId = Object.fromEntries(results.measurements.map((m) => [m.id, m]));
  const lines = [
    `# Benchmark results${results.quick ? " (quick mode)" : ""}`,
    "",
    `Measured ${env.date} with \`${results.command}\` in ${fmt(results.seconds)} s.`,
    "",
    table(
      ["machine", "Node", "Node-RED", "package"],
      [
        [
          `${env.cpu}, ${env.cores} cores, ${env.memoryGb} GB RAM, ${env.os}`,
          env.node,
          env.nodeRed,
          `${env.package}${env.commit ? ` (${env.commit})` : ""}`,
        ],
      ],
    ),
    "",
    `Load average (1/5/15 min) at start ${env.loadAtStart.join(" / ")}, at end ${results.loadAtEnd.join(" / ")}. ${results.busyNote}`,
    "",
    "Every number below was measured in this run, next to its bound or baseline from the same run; the sandbox is",
    "the embedded Bitrix24 emulator (src/sandbox) on loopback, so absolute rates are what this machine does, not a",
    "real portal's network round trips.",
    "",
    "## Summary",
    "",
    table(["#", "measurement", "result", "bound / baseline", "ratio", "goal", "verdict"], summaryRows(byId)),
    "",
    "## Details",
    "",
    details(byId),
    "",
    "## How busy the machine was",
    "",
    "CPU share of all cores used by the benchmark's own processes and by everything else (machine CPU time from",
    "os.cpus() minus the benchmark's processes, read from /proc), and the load average around each measurement.",
    "",
    table(
      ["measurement", "seconds", "benchmark CPU", "other processes' CPU", "load before", "load after"],
      results.measurements.map((m) => [
        m.title,
        fmt(m.seconds),
        pct(m.cpu?.ownCpuShare),
        pct(m.cpu?.otherCpuShare),
        m.loadBefore.join(" / "),
        m.loadAfter.join(" / "),
      ]),
    ),
    "",
  ];
  if (results.notes?.length > 0) {
    lines.push("## Notes", "", ...results.notes.map((n) => `- ${n}`), "");
  }
  if (results.problems.length > 0) {
    lines.push("## Correctness problems", "", ...results.problems.map((p) => `- ${p}`), "");
  }
  lines.push(
    "Raw data: `results.json` beside this file. Reproduce: `npm run bench` (or `npm run bench -- --quick`).",
    "",
  );
  if (notesByHand) lines.push(KEPT_NOTES_MARKER, "", notesByHand, "");
  return lines.join("\n");
}
