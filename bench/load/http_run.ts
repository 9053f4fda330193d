/**
 * Side-by-side HTTP load benchmark: fdloop's `examples/http_server.ts` (raw
 * API with `run()` and `runSync()`, and the fetch-style `serve()`),
 * `Deno.serve`, Node's `http` and a C floor (`bench/c/http_baseline.c`: one
 * `recv` and one `send` per read on epoll, no HTTP rules, compiled with `cc`
 * for the run), under `wrk -t1 -c50` on `GET /`, then the same with 16
 * requests pipelined per connection (`bench/load/pipeline.lua`).
 *
 *   deno run -A bench/load/http_run.ts [--rounds 12] [--slice 1] [--only fdloop-raw,deno]
 *
 * Method (see "Benchmarks" in the design notes): every server is started at
 * once, pinned to one core (`taskset -c 0`), and stays up for the whole run,
 * idle while another is loaded; `wrk` runs pinned to the other core. After a
 * warm-up, each round loads every server for one short slice, in an order
 * rotated from round to round, and the comparison takes the median of the
 * per-round ratios against `Deno.serve`. The server's CPU time (user and
 * system, all threads, from `/proc/PID/stat`) is measured around each slice
 * and reported per request beside the throughput, since on two cores `wrk`
 * can saturate its core first. The interleaving is only fair if an idle
 * server burns no CPU: that is measured too (before, during others' slices,
 * and after).
 *
 * Prints a Markdown table to stdout (coloured when stdout is a terminal and
 * `NO_COLOR` is unset; progress to stderr) and writes the figures with the
 * run's metadata as JSON to `bench/results/http_load.json`, which renders
 * them into `bench/RESULTS.md`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { commandOutput, median, paint, Progress, runMeta, spreadOf } from "../_meta.ts";
import { type HttpSummary, httpTable, httpTargets, writeResults } from "../results.ts";
import {
  checkNumbers,
  checkServers,
  clkTckNote,
  compileC,
  cpuAround,
  cpus,
  type CpuShares,
  effectiveCpu,
  formatPcts,
  haveTaskset,
  idleCpu,
  idleDuringOthers,
  idleLine,
  list,
  parseWrk,
  pinned,
  Proc,
  ROOT,
  type WrkResult,
} from "./_proc.ts";

const HERE = new URL("./", import.meta.url);
const DENO = Deno.execPath();
const EXAMPLE = new URL("examples/http_server.ts", ROOT).pathname;

/** The servers, each printing `listening on HOST:PORT` and exiting 0 on SIGINT. */
const SERVERS: Record<string, { label: string; argv: string[] }> = {
  "fdloop-raw": {
    label: "fdloop raw API (`listenHttp`, `run()`)",
    argv: [DENO, "run", "--allow-ffi", EXAMPLE, "--port", "0", "--api", "raw"],
  },
  "fdloop-raw-sync": {
    label: "fdloop raw API (`listenHttp`, `runSync()`)",
    argv: [DENO, "run", "--allow-ffi", EXAMPLE, "--port", "0", "--api", "raw", "--sync"],
  },
  "fdloop-fetch": {
    label: "fdloop `serve()` (Request/Response)",
    argv: [DENO, "run", "--allow-ffi", EXAMPLE, "--port", "0", "--api", "fetch"],
  },
  "deno": {
    label: "`Deno.serve`",
    argv: [DENO, "run", "--allow-net", new URL("deno_http.ts", HERE).pathname, "--port", "0"],
  },
  "node": {
    label: "Node `http`",
    argv: ["node", new URL("node_http.mjs", HERE).pathname, "--port", "0"],
  },
  "c": {
    label: "C floor (`bench/c/http_baseline.c`, epoll)",
    argv: [], // set once compiled
  },
};
const BASELINE = "deno";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "12" },
    slice: { type: "string", default: "1" },
    warmup: { type: "string", default: "2" },
    only: { type: "string", default: "" },
    conns: { type: "string", default: "50" },
    depth: { type: "string", default: "16" },
    "no-pipeline": { type: "boolean" },
    "server-cpu": { type: "string", default: "0" },
    "load-cpu": { type: "string", default: "1" },
    out: { type: "string", default: new URL("bench/results/http_load.json", ROOT).pathname },
    help: { type: "boolean" },
  },
});

if (flags.help) {
  console.log(`Usage: deno run -A bench/load/http_run.ts [options]

Options:
  --rounds <n>        Rounds, each loading every server once, in a rotated order (default 12)
  --slice <s>         Seconds of wrk load per server per round, an integer (default 1)
  --warmup <s>        Seconds of load per server before measuring (default 2)
  --only <list>       Comma-separated subset of: ${Object.keys(SERVERS).join(", ")}
  --conns <n>         wrk connections (default 50)
  --depth <n>         Requests per connection per batch in the pipelining run (default 16)
  --no-pipeline       Skip the pipelining run
  --server-cpu <cpu>  Core for the servers (default 0)
  --load-cpu <cpu>    Core for wrk (default 1)
  --out <file>        JSON results (default bench/results/http_load.json)`);
  Deno.exit(0);
}

const rounds = Number(flags.rounds);
const slice = Number(flags.slice);
const warmup = Number(flags.warmup);
const conns = Number(flags.conns);
const depth = Number(flags.depth);
checkNumbers([
  ["rounds", rounds, 1, true],
  ["slice", slice, 1, true],
  ["warmup", warmup, 0, true],
  ["conns", conns, 1, true],
  ["depth", depth, 1, true],
]);
const names = flags.only === "" ? Object.keys(SERVERS) : list(flags.only);
checkServers(names, SERVERS);
if (names.includes("c")) {
  // The C floor is compiled for this run; without a compiler it is left out (or, asked for by name, an error).
  const bin = await compileC("http_baseline", "fdloop_http_bench_");
  if (bin) SERVERS.c.argv = [bin, "0"];
  else if (flags.only !== "") {
    console.error("Cannot compile bench/c/http_baseline.c (is cc installed?)");
    Deno.exit(1);
  } else {
    console.error("warning: cannot compile bench/c/http_baseline.c: the C floor is left out");
    names.splice(names.indexOf("c"), 1);
  }
}

// ---------------------------------------------------------------- processes and /proc

if (!haveTaskset) console.error("warning: taskset is missing: processes are not pinned");
else if (cpus < 2) console.error("warning: fewer than 2 CPUs: servers and load share a core");
if (commandOutput("wrk", ["-v"]) === "") {
  console.error("wrk is missing: apt-get install wrk");
  Deno.exit(1);
}

/** A server child, started at once. */
type Server = Proc;
const startServer = (name: string): Server => new Proc(name, SERVERS[name].argv, flags["server-cpu"]);
const cores = { loadCpu: flags["load-cpu"], serverCpu: flags["server-cpu"] };

// ---------------------------------------------------------------- wrk

const PIPELINE_LUA = new URL("pipeline.lua", HERE).pathname;

async function wrk(port: number, seconds: number, pipelined: boolean): Promise<WrkResult> {
  const argv = ["wrk", "-t1", `-c${conns}`, `-d${seconds}s`];
  if (pipelined) argv.push("-s", PIPELINE_LUA);
  argv.push(`http://127.0.0.1:${port}/`);
  if (pipelined) argv.push("--", String(depth));
  const [cmd, args] = pinned(flags["load-cpu"], argv);
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  const r = parseWrk(text);
  if (!out.success || !r) throw new Error(`wrk failed: ${text} ${new TextDecoder().decode(out.stderr)}`);
  if (r.requests <= 0) throw new Error(`wrk completed no 2xx/3xx request: ${text}`);
  return r;
}

// ---------------------------------------------------------------- measuring

interface Slice extends CpuShares {
  round: number;
  server: string;
  rate: number;
  requests: number;
  userUs: number;
  sysUs: number;
  cpuUs: number;
  errors: number;
  non2xx: number;
}

async function measure(servers: Server[], target: Server, round: number, pipelined: boolean): Promise<Slice> {
  const { result: w, user, sys, shares } = await cpuAround(
    servers,
    servers.indexOf(target),
    cores,
    () => wrk(target.port, slice, pipelined),
  );
  return {
    round,
    server: target.name,
    rate: w.rate,
    // Per 2xx/3xx request: an error response is no request served.
    requests: w.requests,
    userUs: (user / w.requests) * 1e6,
    sysUs: (sys / w.requests) * 1e6,
    cpuUs: ((user + sys) / w.requests) * 1e6,
    ...shares,
    errors: w.errors,
    non2xx: w.non2xx,
  };
}

// ---------------------------------------------------------------- statistics and the table

/** One server's figures over a scenario (the rows of `summary` in the JSON). */
type Summary = HttpSummary;

function summarize(slices: Slice[]): Summary[] {
  return names.map((name) => {
    const mine = slices.filter((s) => s.server === name);
    const ratios = (pick: (s: Slice) => number) => {
      if (!names.includes(BASELINE)) return null;
      const rs = mine.map((s) => {
        const base = slices.find((b) => b.server === BASELINE && b.round === s.round)!;
        return pick(s) / pick(base);
      });
      return spreadOf(rs);
    };
    return {
      server: name,
      label: SERVERS[name].label,
      rate: spreadOf(mine.map((s) => s.rate)),
      cpuUs: spreadOf(mine.map((s) => s.cpuUs)),
      userUs: median(mine.map((s) => s.userUs)),
      sysUs: median(mine.map((s) => s.sysUs)),
      rateVsDeno: ratios((s) => s.rate),
      cpuVsDeno: ratios((s) => s.cpuUs),
      serverPct: median(mine.map((s) => s.serverPct)),
      loadCorePct: median(mine.map((s) => s.loadCorePct)),
      otherPct: median(mine.map((s) => s.otherPct)),
      errors: mine.reduce((a, s) => a + s.errors, 0),
      non2xx: mine.reduce((a, s) => a + s.non2xx, 0),
    };
  });
}

const fmtRate = (x: number) => Math.round(x).toLocaleString("en-US");
const fmtUs = (x: number) => x.toFixed(2);

function table(title: string, summaries: Summary[]): string {
  return `${paint("bold", `### ${title}`)}\n\n${httpTable(summaries)}`;
}

// ---------------------------------------------------------------- the run

const meta = runMeta();
const progress = new Progress("http_run");
const started = performance.now();
progress.step(`starting ${names.length} servers: ${names.join(", ")}`);
const servers = names.map(startServer);
const stopNotes: Record<string, string> = {};
const scenarios: { name: string; title: string; pipelined: boolean; slices: Slice[] }[] = [];
let idleBefore: Record<string, number> = {};
let idleAfter: Record<string, number> = {};
try {
  for (const s of servers) await s.listening();
  progress.step(`servers up: ${servers.map((s) => `${s.name} :${s.port}`).join(", ")}`);

  // Warm up every server (JIT, buffers), plain and pipelined.
  for (const s of servers) {
    if (warmup > 0) {
      progress.step(`warming up ${s.name} (${warmup} s${flags["no-pipeline"] ? "" : " + 1 s pipelined"})`);
    }
    if (warmup > 0) await wrk(s.port, warmup, false);
    if (warmup > 0 && !flags["no-pipeline"]) await wrk(s.port, 1, true);
  }
  progress.step("measuring idle CPU (2 s)");
  idleBefore = await idleCpu(servers, 2);
  progress.step(
    `idle CPU before: ${formatPcts(idleBefore)}`,
  );

  const plan = [{
    name: "plain",
    title: `GET / — \`wrk -t1 -c${conns} -d${slice}s\`, ${rounds} rounds`,
    pipelined: false,
  }];
  if (!flags["no-pipeline"]) {
    plan.push({
      name: "pipelined",
      title: `GET /, ${depth} requests pipelined per connection — \`wrk -t1 -c${conns} -d${slice}s -s ` +
        `bench/load/pipeline.lua -- ${depth}\`, ${rounds} rounds`,
      pipelined: true,
    });
  }
  for (const p of plan) {
    const slices: Slice[] = [];
    for (let round = 0; round < rounds; round++) {
      const order = servers.map((_, i) => servers[(i + round) % servers.length]);
      for (const target of order) {
        const r = await measure(servers, target, round, p.pipelined);
        slices.push(r);
        progress.round(
          round + 1,
          rounds,
          `${p.name} ${target.name.padEnd(16)} ${fmtRate(r.rate).padStart(9)} req/s  ` +
            `${fmtUs(r.cpuUs)} µs/req (${fmtUs(r.userUs)} + ${fmtUs(r.sysUs)}, ${r.serverPct.toFixed(0)}% CPU)  ` +
            `load core ${r.loadCorePct.toFixed(0)}%  idle servers ${r.idleOthersPct.toFixed(1)}%  ` +
            `rest ${r.otherPct.toFixed(0)}%${r.errors + r.non2xx ? `  [${r.errors} errors, ${r.non2xx} non-2xx]` : ""}`,
        );
      }
    }
    scenarios.push({ ...p, slices });
  }
  progress.step("measuring idle CPU (2 s)");
  idleAfter = await idleCpu(servers, 2);
} finally {
  for (const s of servers) stopNotes[s.name] = await s.stop("SIGINT");
}

// ---------------------------------------------------------------- report

const { command, machine, versions } = meta;
console.log(
  `## HTTP load: ${names.length} servers up at once on CPU ${flags["server-cpu"]}, wrk on CPU ${flags["load-cpu"]}` +
    `${haveTaskset ? "" : " (not pinned: no taskset)"}\n\n` +
    `\`${command}\` — ${machine.cpu}, ${machine.cores} CPUs, Linux ${machine.kernel}, Deno ${versions.deno}, ` +
    `Node ${versions.node ?? "(none)"}, ` +
    `wrk ${versions.wrk}. ${slice} s slices after ${warmup} s warm-up, rotated order; medians (min–max) over rounds; ` +
    "ratios are medians of per-round ratios against `Deno.serve` measured in the same round.\n",
);
const results: Record<string, Summary[]> = {};
for (const sc of scenarios) {
  results[sc.name] = summarize(sc.slices);
  console.log(table(sc.title, results[sc.name]));
  console.log("");
}
const idleDuring = idleDuringOthers(names, scenarios.flatMap((sc) => sc.slices));
console.log(idleLine(idleBefore, idleAfter, idleDuring));
const notes = Object.entries(stopNotes).filter(([, n]) => n).map(([s, n]) => `${s}: ${n}`);
if (notes.length) console.log(`Shutdown: ${notes.join("; ")}.`);

// The issue's targets, as bench/RESULTS.md renders them from the same figures.
const targets = httpTargets(results, depth);
if (targets.length) {
  console.log("\nTargets (issue 7):\n");
  for (const t of targets) {
    const verdict = t.met === true ? paint("green", "met") : t.met === false ? paint("red", "MISSED") : "not measured";
    console.log(`- ${verdict}: ${t.target} — ${t.value}`);
  }
}
const total = (performance.now() - started) / 1000;
console.log(`\nTotal time ${total.toFixed(0)} s.`);

await writeResults(
  flags.out,
  {
    ...meta,
    settings: {
      rounds,
      sliceSeconds: slice,
      warmupSeconds: warmup,
      conns,
      depth,
      // The CPUs the processes were pinned to (CPU 0 for both on a one-CPU machine).
      serverCpu: effectiveCpu(flags["server-cpu"]) ?? flags["server-cpu"],
      loadCpu: effectiveCpu(flags["load-cpu"]) ?? flags["load-cpu"],
      pinned: haveTaskset,
    },
    notes: clkTckNote ? [clkTckNote] : [],
    servers: Object.fromEntries(names.map((n) => [n, SERVERS[n].label])),
    idleCpuPct: { before: idleBefore, after: idleAfter, duringOthersMax: idleDuring },
    shutdown: stopNotes,
    summary: results,
    targets,
    slices: Object.fromEntries(scenarios.map((sc) => [sc.name, sc.slices])),
    totalSeconds: total,
  },
);
