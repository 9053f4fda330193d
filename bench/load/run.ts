/**
 * Side-by-side load benchmark of TCP echo servers: fdloop's `examples/echo.ts`
 * in both run modes, a `Deno.listen` server, a Node `net` server, a C
 * ceiling (`bench/c/echo_baseline.c`: level-triggered epoll, one `recv` and
 * one `send` per readable event, compiled with `cc -O2` for the run) and the
 * same loop in TypeScript on fdloop's FFI bindings with no framework
 * (`bench/load/bare_echo.ts`), under
 * the same request/response ping-pong load: `--conns` connections with one
 * `--size`-byte message in flight each (default 50 × 64 bytes).
 *
 *   deno run -A bench/load/run.ts [--rounds 12] [--slice 1] [--only fdloop,c] [--strace 2] [--perf 2]
 *
 * Method (see "Benchmarks" in the design notes): every server is started at
 * once, pinned to one core (`taskset -c 0`), and stays up for the whole run,
 * each with its own load generator (`bench/load/echo_load.mjs`, Node, in
 * control mode) pinned to the other core, connected all along and idle
 * while another server is loaded. After a warm-up, each round loads every
 * server for one short slice, in an order rotated from round to round; the
 * comparisons are medians of per-round ratios against the C server and
 * `Deno.listen` measured in the same round. The server's CPU time (user and
 * system, all threads, from `/proc/PID/stat`) is measured around each slice
 * and reported per round trip beside the throughput, since on two cores
 * the load generator saturates its core first. The interleaving is only fair
 * if an idle server burns no CPU: that is measured too.
 *
 * Then, in a separate and shorter run per server, `strace -c -f -p PID`
 * counts the syscalls per round trip by name. strace slows the server a lot,
 * which changes how many events each `epoll_wait` returns; so another short
 * run per server counts them with `perf stat` on the syscall tracepoints,
 * which barely slows it, when perf can.
 *
 * Prints a Markdown table to stdout (progress to stderr; colours on a TTY
 * unless NO_COLOR is set) and writes the figures as JSON to
 * `bench/results/echo_load.json`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { commandOutput, paint, Progress, runMeta, spreadOf } from "../_meta.ts";
import { type EchoSummary, type EchoSyscalls, echoTable, echoTargets, syscallTable, writeResults } from "../results.ts";
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
  Proc,
  ROOT,
} from "./_proc.ts";

const HERE = new URL("./", import.meta.url);
const DENO = Deno.execPath();
const ECHO = new URL("examples/echo.ts", ROOT).pathname;

/** The servers, each printing `listening on HOST:PORT` and exiting 0 on SIGINT. */
const SERVERS: Record<string, { label: string; argv: string[] }> = {
  "fdloop": {
    label: "fdloop `run()` (`examples/echo.ts`)",
    argv: [DENO, "run", "--allow-ffi", ECHO, "--port", "0"],
  },
  "fdloop-sync": {
    label: "fdloop `runSync()` (`examples/echo.ts --sync`)",
    argv: [DENO, "run", "--allow-ffi", ECHO, "--port", "0", "--sync"],
  },
  "deno": {
    label: "`Deno.listen` (`bench/load/deno_echo.ts`)",
    argv: [DENO, "run", "--allow-net", new URL("deno_echo.ts", HERE).pathname, "--port", "0"],
  },
  "node": {
    label: "Node `net` (`bench/load/node_echo.mjs`)",
    argv: ["node", new URL("node_echo.mjs", HERE).pathname, "--port", "0"],
  },
  "bare": {
    label: "bare FFI loop, no framework (`bench/load/bare_echo.ts`)",
    argv: [DENO, "run", "--allow-ffi", new URL("bare_echo.ts", HERE).pathname, "--port", "0"],
  },
  "c": {
    label: "C epoll (`bench/c/echo_baseline.c`)",
    argv: [], // set once compiled
  },
};
/** The references of the ratio columns. */
const REFS = ["c", "deno"] as const;

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "12" },
    slice: { type: "string", default: "1" },
    warmup: { type: "string", default: "2" },
    only: { type: "string", default: "" },
    conns: { type: "string", default: "50" },
    size: { type: "string", default: "64" },
    strace: { type: "string", default: "2" },
    perf: { type: "string", default: "2" },
    "syscalls-of": { type: "string", default: "" },
    "server-cpu": { type: "string", default: "0" },
    "load-cpu": { type: "string", default: "1" },
    out: { type: "string", default: new URL("bench/results/echo_load.json", ROOT).pathname },
    help: { type: "boolean" },
  },
});

if (flags.help) {
  console.log(`Usage: deno run -A bench/load/run.ts [options]

Options:
  --rounds <n>         Rounds, each loading every server once, in a rotated order (default 12)
  --slice <s>          Seconds of load per server per round (default 1)
  --warmup <s>         Seconds of load per server before measuring (default 2)
  --only <list>        Comma-separated subset of: ${Object.keys(SERVERS).join(", ")}
  --conns <n>          Connections per server, one message in flight each (default 50)
  --size <bytes>       Message size (default 64)
  --strace <s>         Seconds of load per server under strace -c for the syscall counts; 0 skips (default 2)
  --syscalls-of <list> Servers to count syscalls of (default: every server of the run)
  --perf <s>           Seconds of load per server under perf stat on syscall tracepoints; 0 skips (default 2)
  --server-cpu <cpu>   Core for the servers (default 0)
  --load-cpu <cpu>     Core for the load generators (default 1)
  --out <file>         JSON results (default bench/results/echo_load.json)`);
  Deno.exit(0);
}

const rounds = Number(flags.rounds);
const slice = Number(flags.slice);
const warmup = Number(flags.warmup);
const conns = Number(flags.conns);
const size = Number(flags.size);
const straceSeconds = Number(flags.strace);
const perfSeconds = Number(flags.perf);
checkNumbers([
  ["rounds", rounds, 1, true],
  ["slice", slice, 0.1, false],
  ["warmup", warmup, 0, false],
  ["conns", conns, 1, true],
  ["size", size, 1, true],
  ["strace", straceSeconds, 0, false],
  ["perf", perfSeconds, 0, false],
]);
const names = flags.only === "" ? Object.keys(SERVERS) : list(flags.only);
checkServers([...names, ...list(flags["syscalls-of"])], SERVERS);

const notes: string[] = clkTckNote ? [clkTckNote] : [];
if (names.includes("c")) {
  // The C ceiling is compiled for this run; without a compiler it is left out (or, asked for by name, an error).
  const bin = await compileC("echo_baseline", "fdloop_echo_bench_");
  if (bin) SERVERS.c.argv = [bin, "0"];
  else if (flags.only !== "") {
    console.error("Cannot compile bench/c/echo_baseline.c (is cc installed?)");
    Deno.exit(1);
  } else {
    const note = "cannot compile bench/c/echo_baseline.c (no cc?): the C ceiling is left out";
    console.error(`warning: ${note}`);
    notes.push(note);
    names.splice(names.indexOf("c"), 1);
  }
}
const countedNames = flags["syscalls-of"] === "" ? names : list(flags["syscalls-of"]).filter((n) => names.includes(n));
const straceNames = straceSeconds === 0 ? [] : [...countedNames];
if (straceNames.length > 0 && commandOutput("strace", ["-V"]) === "") {
  const note = "strace is missing: no syscall counts";
  console.error(`warning: ${note}`);
  notes.push(note);
  straceNames.length = 0;
}
/** Syscalls counted by `perf stat` (each its own tracepoint), beside the total of `raw_syscalls:sys_enter`. */
const PERF_SYSCALLS = [
  "recvfrom",
  "sendto",
  "read",
  "write",
  "readv",
  "writev",
  "epoll_wait",
  "epoll_pwait",
  "epoll_ctl",
  "futex",
  "sched_yield",
  "madvise",
  "mprotect",
  "mmap",
  "munmap",
  "ioctl",
  "fcntl",
  "getpid",
];
let perfNames = perfSeconds === 0 ? [] : countedNames;
if (
  perfNames.length > 0 && !commandOutput("perf", ["stat", "-e", "raw_syscalls:sys_enter", "true"]).includes("sys_enter")
) {
  const note = "perf cannot count syscall tracepoints here (no perf, or perf_event_paranoid): no perf counts";
  console.error(`warning: ${note}`);
  notes.push(note);
  perfNames = [];
}

// ---------------------------------------------------------------- processes and /proc

if (!haveTaskset) console.error("warning: taskset is missing: processes are not pinned");
else if (cpus < 2) console.error("warning: fewer than 2 CPUs: servers and load share a core");

const cores = { loadCpu: flags["load-cpu"], serverCpu: flags["server-cpu"] };

/** A server under test and its own load generator. */
interface Pair {
  name: string;
  server: Proc;
  load: Proc;
  port: number;
}

interface LoadResult {
  /** Round trips completed within the window. */
  roundTrips: number;
  seconds: number;
  /** Round trips including the messages in flight drained after the window. */
  all: number;
}

async function loadFor(pair: Pair, seconds: number): Promise<LoadResult> {
  await pair.load.send(`run ${seconds}`);
  const m = await pair.load.expect(/^done (.*)$/, seconds * 1000 + 15_000);
  return JSON.parse(m[1]) as LoadResult;
}

// ---------------------------------------------------------------- measuring

interface Slice extends CpuShares {
  round: number;
  server: string;
  rate: number;
  roundTrips: number;
  userUs: number;
  sysUs: number;
  cpuUs: number;
  /**
   * Busy time of the server core per round trip, µs: the server's CPU plus the interrupt and softirq work
   * (loopback TCP) done on that core while the server slept, which /proc charges to no task.
   */
  coreUs: number;
}

async function measure(pairs: Pair[], target: Pair, round: number): Promise<Slice> {
  const servers = pairs.map((p) => ({ name: p.name, pid: p.server.pid }));
  const { result: r, user, sys, serverCore, shares } = await cpuAround(
    servers,
    pairs.indexOf(target),
    cores,
    () => loadFor(target, slice),
  );
  // CPU is charged for every round trip of the slice, the drained ones included.
  return {
    round,
    server: target.name,
    rate: r.roundTrips / r.seconds,
    roundTrips: r.roundTrips,
    userUs: (user / r.all) * 1e6,
    sysUs: (sys / r.all) * 1e6,
    cpuUs: ((user + sys) / r.all) * 1e6,
    coreUs: (serverCore / r.all) * 1e6,
    ...shares,
  };
}

type Syscalls = EchoSyscalls;

/** Loads `pair` for `seconds` with `perf stat` counting its server's syscalls (every thread). */
async function perfCount(pair: Pair, seconds: number): Promise<Syscalls> {
  const dir = await Deno.makeTempDir({ prefix: "fdloop_echo_perf_" });
  const file = `${dir}/perf.txt`;
  const events = ["raw_syscalls:sys_enter", ...PERF_SYSCALLS.map((n) => `syscalls:sys_enter_${n}`)].join(",");
  const perf = new Proc(
    `perf ${pair.name}`,
    ["perf", "stat", "-x", ",", "-o", file, "-e", events, "-p", String(pair.server.pid)],
    flags["load-cpu"],
    false,
  );
  try {
    await new Promise((r) => setTimeout(r, 500)); // perf prints nothing when it is in: give it time
    const r = await loadFor(pair, seconds);
    await perf.stop("SIGINT", 10_000);
    const text = await Deno.readTextFile(file);
    const perRoundTrip: Record<string, number> = {};
    let total = 0;
    // "COUNT,UNIT,EVENT,…" ("<not counted>" for none).
    for (const line of text.split("\n")) {
      const f = line.split(",");
      if (f.length < 3 || !/^\d+$/.test(f[0])) continue;
      const x = Number(f[0]) / r.all;
      if (f[2] === "raw_syscalls:sys_enter") total = x;
      else if (f[2].startsWith("syscalls:sys_enter_")) perRoundTrip[f[2].slice("syscalls:sys_enter_".length)] = x;
    }
    const named = Object.values(perRoundTrip).reduce((a, b) => a + b, 0);
    if (total > named) perRoundTrip["(others)"] = total - named;
    return { roundTrips: r.all, seconds: r.seconds, perRoundTrip, errorsPerRoundTrip: {}, total };
  } finally {
    await perf.stop("SIGKILL", 2000);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Loads `pair` for `seconds` with `strace -c -f -p PID` attached to its server. */
async function straceCount(pair: Pair, seconds: number): Promise<Syscalls> {
  const dir = await Deno.makeTempDir({ prefix: "fdloop_echo_strace_" });
  const file = `${dir}/strace.txt`;
  const strace = new Proc(
    `strace ${pair.name}`,
    ["strace", "-c", "-f", "-o", file, "-p", String(pair.server.pid)],
    flags["load-cpu"],
    false,
  );
  try {
    // strace says "Process PID attached" on stderr once it is in.
    const deadline = performance.now() + 10_000;
    while (!/attached/.test(strace.stderr)) {
      if (performance.now() > deadline) throw new Error(`strace did not attach: ${strace.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 200));
    const r = await loadFor(pair, seconds);
    await strace.stop("SIGINT", 10_000);
    const text = await Deno.readTextFile(file);
    const perRoundTrip: Record<string, number> = {};
    const errorsPerRoundTrip: Record<string, number> = {};
    let total = 0;
    // "% time     seconds  usecs/call     calls    errors syscall", the errors column may be empty.
    for (const line of text.split("\n")) {
      const f = line.trim().split(/\s+/);
      if (f.length < 5 || !/^[\d.]+$/.test(f[0]) || f[f.length - 1] === "total") continue;
      const name = f[f.length - 1];
      const calls = Number(f[3]);
      perRoundTrip[name] = calls / r.all;
      if (f.length >= 6) errorsPerRoundTrip[name] = Number(f[4]) / r.all;
      total += calls / r.all;
    }
    return { roundTrips: r.all, seconds: r.seconds, perRoundTrip, errorsPerRoundTrip, total };
  } finally {
    await strace.stop("SIGKILL", 2000);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

// ---------------------------------------------------------------- statistics and the table

const stats = spreadOf;
const median = (xs: number[]) => spreadOf(xs).median;

type Summary = EchoSummary;

function summarize(slices: Slice[]): Summary[] {
  const ratios = (mine: Slice[], ref: string, pick: (s: Slice) => number) => {
    if (!names.includes(ref)) return null;
    return stats(mine.map((s) => pick(s) / pick(slices.find((b) => b.server === ref && b.round === s.round)!)));
  };
  return names.map((name) => {
    const mine = slices.filter((s) => s.server === name);
    return {
      server: name,
      label: SERVERS[name].label,
      rate: stats(mine.map((s) => s.rate)),
      cpuUs: stats(mine.map((s) => s.cpuUs)),
      coreUs: stats(mine.map((s) => s.coreUs)),
      userUs: stats(mine.map((s) => s.userUs)),
      sysUs: stats(mine.map((s) => s.sysUs)),
      rateVs: Object.fromEntries(REFS.map((ref) => [ref, ratios(mine, ref, (s) => s.rate)])),
      cpuVs: Object.fromEntries(REFS.map((ref) => [ref, ratios(mine, ref, (s) => s.cpuUs)])),
      coreVs: Object.fromEntries(REFS.map((ref) => [ref, ratios(mine, ref, (s) => s.coreUs)])),
      serverPct: median(mine.map((s) => s.serverPct)),
      loadCorePct: median(mine.map((s) => s.loadCorePct)),
      otherPct: median(mine.map((s) => s.otherPct)),
    };
  });
}

const fmtRate = (x: number) => Math.round(x).toLocaleString("en-US");
const fmtUs = (x: number) => x.toFixed(2);

// ---------------------------------------------------------------- the run

const started = performance.now();
const progress = new Progress("echo_load");
const pairs: Pair[] = [];
const stopNotes: Record<string, string> = {};
const slices: Slice[] = [];
const syscalls: Record<string, Syscalls> = {};
const perfSyscalls: Record<string, Syscalls> = {};
let idleBefore: Record<string, number> = {};
let idleAfter: Record<string, number> = {};
try {
  for (const name of names) {
    const server = new Proc(name, SERVERS[name].argv, flags["server-cpu"], false);
    // The pair is registered before anything can fail, so the finally below stops what was started.
    const pair = { name, server, load: null as unknown as Proc, port: 0 };
    pairs.push(pair);
    pair.port = await server.listening();
    const loadArgv = [
      "node",
      new URL("echo_load.mjs", HERE).pathname,
      "--control",
      "--port",
      String(pair.port),
      "--conns",
      String(conns),
      "--size",
      String(size),
    ];
    pair.load = new Proc(`echo_load ${name}`, loadArgv, flags["load-cpu"], true);
    await pair.load.expect(/^connected$/, 15_000);
  }
  progress.step(`servers up, ${conns} connections each: ${pairs.map((p) => `${p.name} :${p.port}`).join(", ")}`);

  // Warm up every server (JIT, buffers).
  if (warmup > 0) {
    for (const p of pairs) {
      progress.step(`warm-up ${p.name} ${warmup} s`);
      await loadFor(p, warmup);
    }
  }
  idleBefore = await idleCpu(pairs.map((p) => ({ name: p.name, pid: p.server.pid })), 2);
  progress.step(`idle CPU before: ${formatPcts(idleBefore)}`);

  for (let round = 0; round < rounds; round++) {
    const order = pairs.map((_, i) => pairs[(i + round) % pairs.length]);
    for (const target of order) {
      const r = await measure(pairs, target, round);
      slices.push(r);
      progress.round(
        round + 1,
        rounds,
        `${target.name.padEnd(12)} ${fmtRate(r.rate).padStart(9)} rt/s  ` +
          `${fmtUs(r.cpuUs)} µs/rt (${fmtUs(r.userUs)} + ${fmtUs(r.sysUs)}, ${r.serverPct.toFixed(0)}% CPU)  ` +
          `core ${fmtUs(r.coreUs)} µs/rt  ` +
          `load core ${r.loadCorePct.toFixed(0)}%  idle servers ${r.idleOthersPct.toFixed(1)}%  ` +
          `rest ${r.otherPct.toFixed(0)}%`,
      );
    }
  }
  idleAfter = await idleCpu(pairs.map((p) => ({ name: p.name, pid: p.server.pid })), 2);

  for (const name of straceNames) {
    progress.step(`strace -c -f: ${name}, ${straceSeconds} s of load`);
    syscalls[name] = await straceCount(pairs.find((p) => p.name === name)!, straceSeconds);
  }
  for (const name of perfNames) {
    progress.step(`perf stat (syscall tracepoints): ${name}, ${perfSeconds} s of load`);
    perfSyscalls[name] = await perfCount(pairs.find((p) => p.name === name)!, perfSeconds);
  }
} finally {
  for (const p of pairs) {
    if (p.load) await p.load.stop("stdin", 3000);
    stopNotes[p.name] = await p.server.stop("SIGINT");
  }
}

// ---------------------------------------------------------------- report

const meta = runMeta();
const mach = meta.machine;
const versions = {
  ...meta.versions,
  strace: commandOutput("strace", ["-V"]).split("\n")[0] || null,
  perf: commandOutput("perf", ["--version"]) || null,
};
const command = meta.command;
console.log(
  paint(
    "bold",
    `## Echo ping-pong: ${conns} connections × ${size}-byte messages, one in flight each; ${names.length} servers ` +
      `up at once on CPU ${flags["server-cpu"]}, load (Node) on CPU ${flags["load-cpu"]}`,
  ) +
    `${haveTaskset ? "" : " (not pinned: no taskset)"}\n\n` +
    `\`${command}\` — ${mach.cpu}, ${mach.cores} CPUs, Linux ${mach.kernel}, Deno ${versions.deno}, ` +
    `Node ${versions.node}. ${slice} s slices after ${warmup} s warm-up, ${rounds} rounds, rotated order; medians ` +
    "(min–max) over rounds; ratios are medians of per-round ratios against the C server and `Deno.listen` " +
    "measured in the same round.\n",
);
const summary = summarize(slices);
console.log(echoTable(summary));
console.log("");
const idleDuring = idleDuringOthers(names, slices);
console.log(idleLine(idleBefore, idleAfter, idleDuring));
console.log(
  "\"Server core\" is the busy time of the servers' core per round trip (`/proc/stat`, less the idle servers' " +
    "CPU): the server's CPU plus the interrupt and loopback softirq work done on that core while the server " +
    "slept, which `/proc/PID/stat` charges to no task; a server that sleeps often (C, `runSync()`) looks cheaper " +
    "by the server CPU column than it is, one that polls (`run()`) absorbs that work into its own system time. " +
    "CPU per round trip counts the round trips drained after each slice too. The total is the kernel's exact run " +
    "time; its user/sys split comes from 10 ms tick samples (CONFIG_TICK_CPU_ACCOUNTING), so it is coarse for one " +
    "slice and steadier as a median.",
);
const stopped = Object.entries(stopNotes).filter(([, n]) => n).map(([s, n]) => `${s}: ${n}`);
if (stopped.length) console.log(`Shutdown: ${stopped.join("; ")}.`);
for (const n of notes) console.log(`Note: ${n}.`);

if (Object.keys(syscalls).length > 0) {
  console.log(
    `\n### Syscalls per round trip (\`strace -c -f -p PID\`, ${straceSeconds} s of the same load per server, ` +
      "separately: strace slows the servers, so only the counts mean anything)\n",
  );
  console.log(syscallTable(syscalls));
}
if (Object.keys(perfSyscalls).length > 0) {
  console.log(
    `\n### Syscalls per round trip at full speed (\`perf stat -e syscalls:sys_enter_* -p PID\`, ${perfSeconds} s ` +
      'of the same load per server, separately; "(others)" is the rest of `raw_syscalls:sys_enter`)\n',
  );
  console.log(syscallTable(perfSyscalls));
}

// The issue's targets.
const targets = echoTargets(summary, slices);
if (targets.length) {
  console.log("\nTargets (issue 9):\n");
  for (const t of targets) {
    console.log(`- ${t.met ? paint("green", "met") : paint(["bold", "red"], "MISSED")}: ${t.target} — ${t.value}`);
  }
}
const total = (performance.now() - started) / 1000;
console.log(`\nTotal time ${total.toFixed(0)} s.`);

await writeResults(
  flags.out,
  {
    date: meta.date,
    command,
    machine: mach,
    versions,
    settings: {
      rounds,
      sliceSeconds: slice,
      warmupSeconds: warmup,
      conns,
      size,
      inFlightPerConnection: 1,
      straceSeconds,
      perfSeconds,
      // The CPUs the processes were pinned to (CPU 0 for both on a one-CPU machine).
      serverCpu: effectiveCpu(flags["server-cpu"]) ?? flags["server-cpu"],
      loadCpu: effectiveCpu(flags["load-cpu"]) ?? flags["load-cpu"],
      pinned: haveTaskset,
    },
    servers: Object.fromEntries(names.map((n) => [n, SERVERS[n].label])),
    notes,
    idleCpuPct: { before: idleBefore, after: idleAfter, duringOthers: idleDuring },
    shutdown: stopNotes,
    summary,
    syscalls: { strace: syscalls, perf: perfSyscalls },
    targets,
    slices,
    totalSeconds: total,
  },
);
