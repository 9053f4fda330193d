/**
 * Side-by-side load benchmark of TCP echo servers: fdloop's `examples/echo.ts`
 * in both run modes, a `Deno.listen` server, a Node `net` server and a C
 * ceiling (`bench/c/echo_baseline.c`: level-triggered epoll, one `recv` and
 * one `send` per readable event, compiled with `cc -O2` for the run), under
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
import { type Cell, markdownTable, paint, Progress, runMeta, type Spread, spreadOf } from "../_meta.ts";
import { CLK_TCK, commandOutput, cpus, cpuTimes, haveTaskset, pinned } from "./_proc.ts";

const HERE = new URL("./", import.meta.url);
const ROOT = new URL("../../", import.meta.url);
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
const numeric: [string, number, number, boolean][] = [
  ["rounds", rounds, 1, true],
  ["slice", slice, 0.1, false],
  ["warmup", warmup, 0, false],
  ["conns", conns, 1, true],
  ["size", size, 1, true],
  ["strace", straceSeconds, 0, false],
  ["perf", perfSeconds, 0, false],
];
for (const [name, v, min, integer] of numeric) {
  if (!(v >= min) || (integer && !Number.isInteger(v))) {
    console.error(
      `--${name} must be ${integer ? "an integer" : "a number"} ≥ ${min}, got ${JSON.stringify(String(v))}`,
    );
    Deno.exit(2);
  }
}
const list = (s: string) => s.split(",").map((x) => x.trim()).filter((x) => x);
const names = flags.only === "" ? Object.keys(SERVERS) : list(flags.only);
for (const n of [...names, ...list(flags["syscalls-of"])]) {
  if (!(n in SERVERS)) {
    console.error(`Unknown server ${JSON.stringify(n)}: use some of ${Object.keys(SERVERS).join(", ")}`);
    Deno.exit(2);
  }
}

const notes: string[] = [];
if (names.includes("c")) {
  // The C ceiling is compiled for this run; without a compiler it is left out (or, asked for by name, an error).
  const bin = `${await Deno.makeTempDir({ prefix: "fdloop_echo_bench_" })}/echo_baseline`;
  const src = new URL("bench/c/echo_baseline.c", ROOT).pathname;
  let built = false;
  try {
    built =
      (await new Deno.Command("cc", { args: ["-O2", "-o", bin, src], stdout: "null", stderr: "inherit" }).output())
        .success;
  } catch {
    built = false;
  }
  if (built) SERVERS.c.argv = [bin, "0"];
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

/** Busy CPU seconds (not idle or iowait) of the whole machine, the load core and the server core, from `/proc/stat`. */
function machineTimes(): { busy: number; loadCore: number; serverCore: number } {
  const lines = Deno.readTextFileSync("/proc/stat").split("\n");
  const busy = (line: string | undefined) => {
    if (line === undefined) return 0;
    // user nice system idle iowait irq softirq steal …
    const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
    return (f.reduce((a, b) => a + b, 0) - f[3] - f[4]) / CLK_TCK;
  };
  const loadCpu = `cpu${cpus < 2 ? 0 : flags["load-cpu"]} `;
  const serverCpu = `cpu${cpus < 2 ? 0 : flags["server-cpu"]} `;
  return {
    busy: busy(lines[0]),
    loadCore: busy(lines.find((l) => l.startsWith(loadCpu))),
    serverCore: busy(lines.find((l) => l.startsWith(serverCpu))),
  };
}

/** A child whose stdout is read line by line, and whose stdin can be written to. */
class Proc {
  readonly name: string;
  readonly proc: Deno.ChildProcess;
  readonly done: Promise<Deno.CommandStatus>;
  stderr = "";
  readonly #lines: string[] = [];
  #ended = false;
  #changed: (() => void) | null = null;
  #stdin: WritableStreamDefaultWriter<Uint8Array> | null = null;

  constructor(name: string, argv: string[], cpu: string, stdin: boolean) {
    this.name = name;
    const [cmd, args] = pinned(cpu, argv);
    this.proc = new Deno.Command(cmd, {
      args,
      cwd: ROOT.pathname,
      stdin: stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    if (stdin) this.#stdin = this.proc.stdin.getWriter();
    const out = async () => {
      let buf = "";
      for await (const text of this.proc.stdout.pipeThrough(new TextDecoderStream())) {
        buf += text;
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          this.#lines.push(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
        }
        this.#changed?.();
      }
    };
    const err = async () => {
      for await (const text of this.proc.stderr.pipeThrough(new TextDecoderStream())) this.stderr += text;
    };
    this.done = Promise.all([out(), err()]).then(() => this.proc.status);
    void this.done.then(() => {
      this.#ended = true;
      this.#changed?.();
    });
  }

  get pid(): number {
    return this.proc.pid;
  }

  async send(line: string): Promise<void> {
    await this.#stdin!.write(new TextEncoder().encode(`${line}\n`));
  }

  /** The next stdout line matching `re` (earlier lines are skipped); fails after `timeoutMs`. */
  async expect(re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      while (this.#lines.length > 0) {
        const m = re.exec(this.#lines.shift()!);
        if (m) return m;
      }
      if (this.#ended) throw new Error(`${this.name} ended before printing ${re}; stderr: ${this.stderr}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`${this.name} printed no ${re} within ${timeoutMs} ms; stderr: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#changed = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#changed = null;
    }
  }

  /** Sends `signal` (or closes stdin), then SIGKILL after `timeoutMs`. Returns a note, "" for a clean exit. */
  async stop(signal: Deno.Signal | "stdin", timeoutMs = 5000): Promise<string> {
    const kill = (s: Deno.Signal) => {
      try {
        this.proc.kill(s);
      } catch {
        // Already gone.
      }
    };
    if (signal === "stdin") await this.#stdin?.close().catch(() => {});
    else kill(signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), timeoutMs)));
    const status = await Promise.race([this.done, late]);
    clearTimeout(timer);
    if (status !== "late") return status.success ? "" : `exit code ${status.code} after ${signal}`;
    kill("SIGKILL");
    await this.done;
    return `needed SIGKILL after ${signal}`;
  }
}

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

interface Slice {
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
  /** % of one core used by the server during the slice. */
  serverPct: number;
  /** % busy of the load core (the load generator, plus whatever else ran there). */
  loadCorePct: number;
  /** Busy CPU of the machine outside the servers and the load core, % of one core. */
  otherPct: number;
  /** CPU the idle servers used meanwhile, % of one core, summed over them. */
  idleOthersPct: number;
  /** The same, server by server. */
  idleByServer: Record<string, number>;
}

async function measure(pairs: Pair[], target: Pair, round: number): Promise<Slice> {
  const before = pairs.map((p) => cpuTimes(p.server.pid));
  const m0 = machineTimes();
  const t0 = performance.now();
  const r = await loadFor(target, slice);
  const wall = (performance.now() - t0) / 1000;
  const m1 = machineTimes();
  const after = pairs.map((p) => cpuTimes(p.server.pid));
  const i = pairs.indexOf(target);
  const user = after[i].user - before[i].user;
  const sys = after[i].sys - before[i].sys;
  let idleOthers = 0;
  const idleByServer: Record<string, number> = {};
  pairs.forEach((p, j) => {
    if (j === i) return;
    const used = after[j].user + after[j].sys - before[j].user - before[j].sys;
    idleOthers += used;
    idleByServer[p.name] = (used / wall) * 100;
  });
  const loadCore = m1.loadCore - m0.loadCore;
  // CPU is charged for every round trip of the slice, the drained ones included.
  return {
    round,
    server: target.name,
    rate: r.roundTrips / r.seconds,
    roundTrips: r.roundTrips,
    userUs: (user / r.all) * 1e6,
    sysUs: (sys / r.all) * 1e6,
    cpuUs: ((user + sys) / r.all) * 1e6,
    coreUs: ((m1.serverCore - m0.serverCore - idleOthers) / r.all) * 1e6,
    serverPct: ((user + sys) / wall) * 100,
    loadCorePct: (loadCore / wall) * 100,
    otherPct: ((m1.busy - m0.busy - user - sys - loadCore - idleOthers) / wall) * 100,
    idleOthersPct: (idleOthers / wall) * 100,
    idleByServer,
  };
}

/** CPU each server uses while nothing loads it, as % of one core over `seconds`. */
async function idleCheck(pairs: Pair[], seconds: number): Promise<Record<string, number>> {
  const before = pairs.map((p) => cpuTimes(p.server.pid));
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const after = pairs.map((p) => cpuTimes(p.server.pid));
  return Object.fromEntries(
    pairs.map((p, i) => [p.name, ((after[i].user + after[i].sys - before[i].user - before[i].sys) / seconds) * 100]),
  );
}

interface Syscalls {
  /** Round trips while strace was attached (drained ones included). */
  roundTrips: number;
  /** Seconds of load. */
  seconds: number;
  /** Syscalls per round trip, by name, most frequent first. */
  perRoundTrip: Record<string, number>;
  /** Failed calls per round trip (EAGAIN, EINTR …), by name. */
  errorsPerRoundTrip: Record<string, number>;
  total: number;
}

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

type Stats = Spread;
const stats = spreadOf;
const median = (xs: number[]) => spreadOf(xs).median;

interface Summary {
  server: string;
  label: string;
  rate: Stats;
  cpuUs: Stats;
  coreUs: Stats;
  userUs: Stats;
  sysUs: Stats;
  /** Medians over rounds of this server's round trips/s ÷ the reference's in the same round. */
  rateVs: Record<string, Stats | null>;
  /** Medians over rounds of this server's CPU per round trip ÷ the reference's in the same round. */
  cpuVs: Record<string, Stats | null>;
  /** The same for the server core's busy time per round trip. */
  coreVs: Record<string, Stats | null>;
  serverPct: number;
  loadCorePct: number;
  otherPct: number;
}

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
const fmtX = (x: number) => `${x.toFixed(2)}×`;
const spread = (s: Stats, f: (x: number) => string) => `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
const vs = (s: Stats | null, f: (x: number) => string = fmtX) => s ? spread(s, f) : "—";

function table(summaries: Summary[]): string {
  const right = (title: string) => ({ title, align: "right" as const });
  const columns = [
    { title: "server" },
    right("round trips/s (min–max)"),
    right("rt/s vs C"),
    right("rt/s vs Deno.listen"),
    right("server CPU µs/rt (min–max)"),
    right("user + sys µs"),
    right("CPU/rt vs C"),
    right("CPU/rt vs Deno.listen"),
    right("server core µs/rt"),
    right("core/rt vs C"),
    right("server CPU"),
    right("load core"),
  ];
  const rows = summaries.map((s): Cell[] => {
    const fdloop = s.server.startsWith("fdloop");
    return [
      fdloop ? { text: s.label, style: "bold" } : s.label,
      spread(s.rate, fmtRate),
      vs(s.rateVs.c),
      vs(s.rateVs.deno),
      spread(s.cpuUs, fmtUs),
      `${fmtUs(s.userUs.median)} + ${fmtUs(s.sysUs.median)}`,
      // The issue's bound: fdloop's CPU per round trip ≤ 1.10× C's.
      fdloop && s.cpuVs.c ? { text: vs(s.cpuVs.c), style: s.cpuVs.c.median <= 1.1 ? "green" : "red" } : vs(s.cpuVs.c),
      vs(s.cpuVs.deno),
      spread(s.coreUs, fmtUs),
      fdloop && s.coreVs.c
        ? { text: vs(s.coreVs.c), style: s.coreVs.c.median <= 1.1 ? "green" : "red" }
        : vs(s.coreVs.c),
      `${s.serverPct.toFixed(0)}%`,
      `${s.loadCorePct.toFixed(0)}%`,
    ];
  });
  return markdownTable(columns, rows);
}

/** Syscalls per round trip, one column per server, the most frequent first. */
function syscallTable(counts: Record<string, Syscalls>): string {
  const servers = Object.keys(counts);
  const all = new Map<string, number>();
  for (const c of Object.values(counts)) {
    for (const [n, x] of Object.entries(c.perRoundTrip)) all.set(n, Math.max(all.get(n) ?? 0, x));
  }
  // Calls below 0.001 per round trip (setup, timers, signals) are summed into "other".
  const shown = [...all].filter(([, x]) => x >= 0.001).sort((a, b) => b[1] - a[1]).map(([n]) => n);
  const fmt = (x: number | undefined) => x === undefined ? "—" : x.toFixed(3);
  const other = (c: Syscalls) =>
    Object.entries(c.perRoundTrip).filter(([n]) => !shown.includes(n)).reduce((a, [, x]) => a + x, 0);
  const rows: Cell[][] = [
    ...shown.map((n) => [n, ...servers.map((s) => fmt(counts[s].perRoundTrip[n]))]),
    ["other", ...servers.map((s) => fmt(other(counts[s])))],
    [{ text: "total", style: "bold" }, ...servers.map((s): Cell => ({ text: fmt(counts[s].total), style: "bold" }))],
    ["round trips counted", ...servers.map((s) => fmtRate(counts[s].roundTrips))],
  ];
  return markdownTable([{ title: "syscall" }, ...servers.map((s) => ({ title: s, align: "right" as const }))], rows);
}

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
    const m = await server.expect(/^listening on (?:[\d.]+|\[[\da-f:]+\]):(\d+)$/, 15_000);
    pair.port = Number(m[1]);
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
  idleBefore = await idleCheck(pairs, 2);
  progress.step(`idle CPU before: ${Object.entries(idleBefore).map(([n, p]) => `${n} ${p.toFixed(1)}%`).join(", ")}`);

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
  idleAfter = await idleCheck(pairs, 2);

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
console.log(table(summary));
console.log("");
const fmtIdle = (m: Record<string, number>) => Object.entries(m).map(([n, p]) => `${n} ${p.toFixed(1)}%`).join(", ");
// Each server's CPU while another one is loaded: the mean over those slices, and the worst slice.
const idleDuring = Object.fromEntries(names.map((n) => {
  const xs = slices.filter((s) => s.server !== n).map((s) => s.idleByServer[n]);
  return [n, { mean: xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length), max: Math.max(0, ...xs) }];
}));
console.log(
  `Idle servers' CPU (% of one core; /proc ticks are 10 ms, so ±1% per 1 s slice is noise): before ${
    fmtIdle(idleBefore)
  }; after ${fmtIdle(idleAfter)}; while another server is loaded, mean (worst slice): ${
    Object.entries(idleDuring).map(([n, p]) => `${n} ${p.mean.toFixed(1)}% (${p.max.toFixed(0)}%)`).join(", ")
  }.`,
);
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
const find = (name: string) => summary.find((s) => s.server === name);
const targets: { target: string; value: string; met: boolean }[] = [];
const run = find("fdloop");
const sync = find("fdloop-sync");
if (sync) {
  targets.push({
    target: "runSync() user CPU ≤ 0.4 µs/round trip",
    value: `${fmtUs(sync.userUs.median)} µs`,
    met: sync.userUs.median <= 0.4,
  });
}
if (run) {
  targets.push({
    target: "run() user CPU ≤ 0.5 µs/round trip",
    value: `${fmtUs(run.userUs.median)} µs`,
    met: run.userUs.median <= 0.5,
  });
}
for (const s of [sync, run]) {
  if (!s?.cpuVs.c || !s.coreVs.c) continue;
  targets.push({
    target: `${s.server === "fdloop" ? "run()" : "runSync()"} CPU/round trip ≤ 1.10× the C server's`,
    value: `server CPU ${fmtX(s.cpuVs.c.median)}, server core ${fmtX(s.coreVs.c.median)}`,
    met: s.cpuVs.c.median <= 1.1 && s.coreVs.c.median <= 1.1,
  });
}
if (run && sync) {
  const ratio = stats(
    slices.filter((s) => s.server === "fdloop-sync").map((s) =>
      s.rate / slices.find((r) => r.server === "fdloop" && r.round === s.round)!.rate
    ),
  );
  targets.push({
    target: "runSync() round trips/s ≥ run()'s, and run() ≥ 0.95× runSync()",
    value: `runSync()/run() ${spread(ratio, fmtX)}`,
    met: ratio.median >= 1 && ratio.median <= 1 / 0.95,
  });
}
if (targets.length) {
  console.log("\nTargets (issue 9):\n");
  for (const t of targets) {
    console.log(`- ${t.met ? paint("green", "met") : paint(["bold", "red"], "MISSED")}: ${t.target} — ${t.value}`);
  }
}
const total = (performance.now() - started) / 1000;
console.log(`\nTotal time ${total.toFixed(0)} s.`);

const outDir = flags.out.includes("/") ? flags.out.slice(0, flags.out.lastIndexOf("/")) : ".";
await Deno.mkdir(outDir || "/", { recursive: true });
await Deno.writeTextFile(
  flags.out,
  JSON.stringify(
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
        serverCpu: flags["server-cpu"],
        loadCpu: flags["load-cpu"],
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
    null,
    2,
  ) + "\n",
);
console.error(`wrote ${flags.out}`);
