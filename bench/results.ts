/**
 * Renders `bench/RESULTS.md`, the latest figures of every benchmark, from the
 * JSON files the benchmarks write to `bench/results/`.
 *
 *   deno task bench:results            (deno run -A bench/results.ts)
 *   deno run -A bench/results.ts --check   (exits 1 if bench/RESULTS.md is not what the JSON renders to)
 *
 * {@linkcode renderResults} is a pure function of the parsed files, with no
 * time of rendering in its output, so the committed `RESULTS.md` can be
 * checked against the committed JSON. {@linkcode writeResults} is what the
 * benchmarks call to save their JSON: a file saved into `bench/results/`
 * also renders `RESULTS.md` anew.
 *
 * @module
 */

import {
  type Cell,
  columns,
  formatNs,
  formatNsSpread,
  markdownTable,
  median,
  type RunMeta,
  type Spread,
  spreadOf,
  type Style,
} from "./_meta.ts";
import { ALLOC_V8_FLAGS } from "./_alloc.ts";

/** Where the benchmarks write their JSON. */
export const RESULTS_DIR: URL = new URL("./results/", import.meta.url);
/** The rendered file. */
export const RESULTS_MD: URL = new URL("./RESULTS.md", import.meta.url);

/** A parsed JSON file (`undefined`: the file does not exist). */
// deno-lint-ignore no-explicit-any
type Json = any;

/** One benchmark of the results file. */
export interface Bench {
  /** JSON file name in `bench/results/` without `.json`. */
  key: string;
  title: string;
  /** What it measures, one or two sentences. */
  about: string;
  /** How to run it (shown while it has not been run; the JSON's own command wins once it has). */
  run: string;
  /** The figures: Markdown after the metadata lines (`files`: every results file, for figures across them). */
  render: (data: Json, files: Record<string, Json>) => string;
  /** Left out entirely (rather than "not run yet") while its file is missing. */
  optional?: boolean;
}

// ---------------------------------------------------------------- formatting

const num = (x: number, digits = 1) => x.toFixed(digits);
const int = (x: number) => Math.round(x).toLocaleString("en-US");
const times = (x: number) => `${x.toFixed(2)}×`;
const range = (s: Spread, f: (x: number) => string) => `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
const isSpread = (v: unknown): v is Spread =>
  typeof v === "object" && v !== null && ["median", "min", "max"].every((k) => typeof (v as Json)[k] === "number");

/** `2026-11-26T03:01:49.822Z` → `2026-11-26 03:01 UTC`. */
export function formatDate(iso: unknown): string {
  if (typeof iso !== "string") return "unknown";
  const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)/.exec(iso);
  return m ? `${m[1]} ${m[2]} UTC` : iso;
}

/** Machine fields, from `machine` or (older files) from `versions.cpu/cpus/linux`. */
function machineOf(d: Json): { cpu: string; cores: string; kernel: string } {
  const m = d?.machine ?? {}, v = d?.versions ?? {};
  return {
    cpu: String(m.cpu ?? v.cpu ?? "unknown"),
    cores: String(m.cores ?? m.cpus ?? v.cpus ?? v.cores ?? "?"),
    kernel: String(m.kernel ?? m.linux ?? v.linux ?? v.kernel ?? "unknown"),
  };
}

function versionText(v: Json, key: string, name: string): string {
  if (v === undefined || v === null || !(key in v)) return `${name} not recorded`;
  const x = v[key];
  return x === null || x === "" ? `${name} not installed` : `${name} ${String(x).replace(/^v(?=\d)/, "")}`;
}

/** The metadata lines every section starts with. */
export function metaLines(d: Json, key: string): string {
  const m = machineOf(d), v = d?.versions;
  const tools = [versionText(v, "deno", "Deno"), versionText(v, "node", "Node"), versionText(v, "python", "Python")];
  for (const [k, name] of [["wrk", "wrk"], ["cc", "cc"]]) if (v?.[k]) tools.push(versionText(v, k, name));
  return [
    `- **Date:** ${formatDate(d?.date)}`,
    `- **Machine:** ${m.cpu}, ${m.cores} cores, Linux ${m.kernel}`,
    `- **Versions:** ${tools.join(", ")}`,
    `- **Command:** \`${d?.command ?? "unknown"}\`${d?.task ? ` (or \`${d.task}\`)` : ""}`,
    `- **Data:** [\`results/${key}.json\`](results/${key}.json)`,
  ].join("\n");
}

// ---------------------------------------------------------------- the benchmarks

/** One call of `ffi_vs_c.json`: ns per call from C and from Deno FFI over rounds, and Deno ÷ C of the medians. */
export interface FfiRow {
  call: string;
  c: Spread & { rounds?: number[] };
  /** The C loop's user and system CPU per call (getrusage), where recorded. */
  cUser?: Spread & { rounds?: number[] };
  cSys?: Spread & { rounds?: number[] };
  deno: Spread & { rounds?: number[] };
  ratio: number;
}

/** The FFI-vs-C table, as `bench/ffi_vs_c.ts` prints it and this file renders it. */
export function ffiTable(results: FfiRow[], colour?: boolean): string {
  const rows: Cell[][] = results.map((r) => [
    /^\w+\(.*\)$/.test(r.call) ? `\`${r.call}\`` : r.call,
    range(r.c, (x) => num(x)),
    r.cUser && r.cSys ? `${num(r.cUser.median)} + ${num(r.cSys.median)}` : "—",
    { text: range(r.deno, (x) => num(x)), style: "cyan" },
    { text: times(r.ratio), style: "bold" },
  ]);
  return markdownTable(
    columns(["call"], ["C ns/op", "C user + sys ns/op", "Deno FFI ns/op", "Deno / C"]),
    rows,
    colour,
  );
}

/** What the C rows' user/system split says, computed from them ("" when the run did not record it). */
function userShareNote(d: Json): string {
  const rows = ((d.results ?? []) as FfiRow[]).filter((r) => r.cUser && r.cSys);
  if (rows.length === 0) return "";
  const shares = rows.map((r) => r.cUser!.median / (r.cUser!.median + r.cSys!.median));
  const pct = (x: number) => `${Math.round(x * 100)}%`;
  const trivial = rows.filter((r) => /^(fcntl|epoll_wait)\(/.test(r.call))
    .map((r) => `\`${r.call}\` ${num(r.cUser!.median, 0)} ns`);
  return ' "C user + sys" is the CPU time `getrusage()` charged the C loop per call (medians): ' +
    `${pct(Math.min(...shares))}–${pct(Math.max(...shares))} of it is user time, although the C code around each ` +
    "call is a few instructions: on this machine the kernel charges part of a syscall's own cost to user time" +
    (trivial.length > 0 ? ` (user time per call: ${trivial.join(", ")})` : "") +
    ". A server's user CPU per message cannot fall below its syscalls per message times that user share.";
}

function renderFfi(d: Json): string {
  const s = d.settings ?? {};
  return [
    `${s.iterations?.toLocaleString("en-US") ?? "?"} iterations per call, ${s.rounds ?? "?"} rounds; ns per call, ` +
    "median (min–max) over rounds; the C side is `bench/c/ffi_baseline.c` built with `cc -O2`." + userShareNote(d),
    "",
    ffiTable(d.results ?? [], false),
  ].join("\n");
}

/** One (N, backend) of `selectors.json`: ns per `select(0)` over rounds, or why it was skipped. */
export type SelectorRow =
  & { n: number; backend: string }
  & ({ ns: Spread & { rounds?: number[] } } | { skipped: string; short?: string });

const BACKEND_STYLE: Record<string, Style> = { epoll: "green", poll: "blue", select: "red" };

/** The selectors table (N down, backends across), as `bench/selector_bench.ts` prints it and this file renders it. */
export function selectorTable(results: SelectorRow[], sizes: number[], backends: string[], colour?: boolean): string {
  const rows: Cell[][] = sizes.map((n) => [
    String(n),
    ...backends.map((b): Cell => {
      const r = results.find((x) => x.n === n && x.backend === b);
      if (!r) return "—";
      if ("skipped" in r) return { text: `— (${r.short ?? "skipped"})`, style: "dim" };
      return { text: formatNsSpread(r.ns), style: BACKEND_STYLE[b] };
    }),
  ]);
  return markdownTable(
    columns([], ["N idle", ...backends]),
    rows,
    colour,
  );
}

function renderSelectors(d: Json): string {
  const s = d.settings ?? {};
  const results: SelectorRow[] = d.results ?? [];
  const backends: string[] = s.backends ?? [...new Set(results.map((r) => r.backend))];
  const sizes: number[] = s.sizes ?? [...new Set(results.map((r) => r.n))];
  const skipped = results.flatMap((r) => "skipped" in r ? [`- ${r.backend} at N = ${r.n}: ${r.skipped}`] : []);
  return [
    `\`Selector.select(0)\` with 1 ready fd among N idle registered fds; median (min–max) over ${
      s.rounds ?? "?"
    } rounds of ${s.sampleMs ?? "?"} ms samples.`,
    "",
    selectorTable(results, sizes, backends, false),
    ...(skipped.length ? ["", ...skipped] : []),
  ].join("\n");
}

const CPYTHON: Record<string, string> = { epoll: "EpollSelector", poll: "PollSelector", select: "SelectSelector" };

function renderScaling(d: Json): string {
  const s = d.settings ?? {};
  const series: Json[] = d.results ?? [];
  const label = (x: Json) =>
    x.impl === "fdloop" ? `fdloop ${x.mechanism}` : `CPython ${CPYTHON[x.mechanism] ?? x.mechanism}`;
  const sizes: number[] = s.sizes ?? [...new Set(series.flatMap((x) => x.points.map((p: Json) => p.n)))];
  const ratios: Record<string, Record<string, number>> = d.summary?.cpythonOverFdloop ?? {};
  const ratioMechs = Object.keys(ratios).filter((m) => Object.keys(ratios[m]).length);
  const rows = sizes.map((n) => [
    String(n),
    ...series.map((x) => {
      const p = x.points.find((q: Json) => q.n === n);
      return p ? formatNs(p.ns) : "—";
    }),
    ...ratioMechs.map((m) => (ratios[m][n] === undefined ? "—" : times(ratios[m][n]))),
  ]);
  const growth = d.summary?.growth ?? {};
  rows.push([
    "growth",
    ...series.map((x) => {
      const g = growth[label(x)];
      return g ? `${g.perRound >= 100 ? g.perRound.toFixed(0) : g.perRound.toFixed(2)}×` : "—";
    }),
    ...ratioMechs.map(() => ""),
  ]);
  const goal = (ok: unknown) => ok === true ? "met" : ok === false ? "**MISSED**" : "not measured";
  // The goals from the figures where the rounds are in the file (older files: their own verdicts).
  const goals = scalingGoals(series) ?? {
    flat: d.summary?.fdloopEpollFlat,
    below: d.summary?.fdloopEpollBelowCPythonEverywhere,
  };
  const stops = series.filter((x) => x.stopped).map((x) =>
    `- ${label(x)} stops at N = ${x.stopped.n} (FD_SETSIZE: fds ≥ 1024 cannot be watched): \`${x.stopped.error}\``
  );
  const fe = series.find((x) => x.impl === "fdloop" && x.mechanism === "epoll");
  const feGrowth = fe ? growth[label(fe)] : undefined;
  return [
    `One \`select(0)\` call with 1 ready fd among N idle fds, median over ${s.rounds ?? "?"} rounds of ${
      s.sampleMs ?? "?"
    } ms samples; fdloop and CPython alternate within each round. Ratios and growth (last N ÷ first N) are medians ` +
    "of per-round ratios; CPython ÷ fdloop > 1 means fdloop is faster.",
    ...(s.rlimit?.fdloop?.message ? ["", `${s.rlimit.fdloop.message}.`] : []),
    ...(s.rlimit?.capped ? ["", `Note: ${s.rlimit.capped}.`] : []),
    "",
    "![select(0) cost against N, log-log: fdloop's backends solid, CPython's selectors dashed](scaling.svg)",
    "",
    markdownTable(
      columns([], ["N", ...series.map(label), ...ratioMechs.map((m) => `CPython ÷ fdloop ${m}`)]),
      rows,
      false,
    ),
    ...(stops.length ? ["", ...stops] : []),
    "",
    `- Goal, fdloop epoll flat (≤ 1.2× from the first N to the last): ${
      feGrowth ? `${times(feGrowth.perRound)} (ratio of medians ${times(feGrowth.ofMedians)}) → ` : ""
    }${goal(goals.flat)}`,
    `- Goal, fdloop epoll below CPython's EpollSelector at every N: ${goal(goals.below)}`,
    ...(d.loadAverage ? [`- Load average before ${d.loadAverage.before}, after ${d.loadAverage.after}`] : []),
  ].join("\n");
}

/** Median over the rounds both have of `b`'s time ÷ `a`'s in the same round. */
function perRoundRatio(a: number[], b: number[]): number {
  const k = Math.min(a.length, b.length);
  return median(Array.from({ length: k }, (_, i) => b[i] / a[i]));
}

/**
 * The goals of `scaling.json` from its series (the thresholds of
 * `bench/scaling.ts`): fdloop's epoll flat, ≤ 1.2× from the first N to the
 * last both as the median of per-round ratios and as the ratio of medians;
 * and below CPython's EpollSelector at every N, both by medians and per round
 * (`null`: CPython not run). `null` when a point lacks its rounds.
 */
export function scalingGoals(series: Json[]): { flat: boolean; below: boolean | null } | null {
  const fe = series.find((x) => x.impl === "fdloop" && x.mechanism === "epoll");
  const ce = series.find((x) => x.impl === "CPython" && x.mechanism === "epoll");
  const points: Json[] = [...(fe?.points ?? []), ...(ce?.points ?? [])];
  if (!fe || fe.points.length < 2 || !points.every((p) => Array.isArray(p.rounds) && p.rounds.length)) return null;
  const first = fe.points[0], last = fe.points.at(-1);
  const flat = perRoundRatio(first.rounds, last.rounds) <= 1.2 && last.ns / first.ns <= 1.2;
  const below = ce
    ? fe.points.every((p: Json) => {
      const c = ce.points.find((q: Json) => q.n === p.n);
      return c !== undefined && p.ns < c.ns && perRoundRatio(p.rounds, c.rounds) > 1;
    })
    : null;
  return { flat, below };
}

/** One server's figures in `http_load.json` (`summary.<scenario>[]`), as `bench/load/http_run.ts` writes them. */
export interface HttpSummary {
  server: string;
  label: string;
  rate: Spread;
  cpuUs: Spread;
  userUs: number;
  sysUs: number;
  /** Median (min–max) over rounds of this server's req/s ÷ `Deno.serve`'s in the same round. */
  rateVsDeno: Spread | null;
  /** The same for CPU per request. */
  cpuVsDeno: Spread | null;
  serverPct: number;
  loadCorePct: number;
  otherPct: number;
  errors: number;
  non2xx: number;
}

/** A ratio against Deno.serve, green where it is better (`higherIsBetter`: above 1), red where worse. */
function ratioCell(s: Spread | null, higherIsBetter: boolean): Cell {
  if (!s) return "—";
  const better = higherIsBetter ? s.median >= 1 : s.median <= 1;
  return { text: range(s, times), style: Math.abs(s.median - 1) < 0.05 ? undefined : better ? "green" : "red" };
}

/**
 * The HTTP load table, as `bench/load/http_run.ts` prints it and this file
 * renders it: one row per server, coloured when `colour` (by default: stdout
 * is a terminal and `NO_COLOR` is unset).
 */
export function httpTable(summaries: HttpSummary[], colour?: boolean): string {
  const rows: Cell[][] = summaries.map((s) => [
    { text: s.label, style: s.server === "deno" ? "bold" : s.server.startsWith("fdloop") ? "cyan" : undefined },
    { text: range(s.rate, int), style: "bold" },
    ratioCell(s.rateVsDeno, true),
    range(s.cpuUs, (x) => num(x, 2)),
    `${num(s.userUs, 2)} + ${num(s.sysUs, 2)}`,
    ratioCell(s.cpuVsDeno, false),
    `${num(s.serverPct, 0)}%`,
    `${num(s.loadCorePct, 0)}%`,
    { text: String(s.errors + s.non2xx), style: s.errors + s.non2xx ? "red" : undefined },
  ]);
  return markdownTable(
    columns(["server"], [
      "req/s median (min–max)",
      "req/s vs Deno.serve",
      "server CPU µs/req (min–max)",
      "user + sys",
      "CPU/req vs Deno.serve",
      "server CPU",
      "load core",
      "errors",
    ]),
    rows,
    colour,
  );
}

function renderHttp(d: Json): string {
  const s = d.settings ?? {};
  const titles: Record<string, string> = {
    plain: `\`GET /\` — \`wrk -t1 -c${s.conns ?? "?"}\``,
    pipelined: `\`GET /\`, ${s.depth ?? "?"} requests pipelined per connection — \`wrk -t1 -c${
      s.conns ?? "?"
    } -s bench/load/pipeline.lua -- ${s.depth ?? "?"}\``,
  };
  const out = [
    `Every server up at once on CPU ${s.serverCpu ?? "?"}${
      s.pinned === false ? " (not pinned: no taskset)" : ""
    }, \`wrk\` on CPU ${s.loadCpu ?? "?"}; ${s.rounds ?? "?"} rounds of ${
      s.sliceSeconds ?? "?"
    } s slices in rotated order after a ${s.warmupSeconds ?? "?"} s warm-up; median (min–max) over rounds, ratios ` +
    "are medians of per-round ratios against `Deno.serve`; server CPU from `/proc/PID/stat`, all threads.",
  ];
  for (const [name, rows] of Object.entries<HttpSummary[]>(d.summary ?? {})) {
    out.push("", `### ${titles[name] ?? name}`, "", httpTable(rows, false));
  }
  // The verdicts come from the figures, with the thresholds of issue 7 (not from the file's own `targets`).
  const targets = httpTargets(d.summary ?? {}, s.depth ?? 16);
  if (targets.length) out.push("", "Issue 7's targets:", "", ...targetLines(targets));
  const notes: string[] = d.notes ?? [];
  if (notes.length) out.push("", ...notes.map((n) => `- Note: ${n}`));
  return out.join("\n");
}

/**
 * The median busy share of wrk's core (%) from which a req/s comparison is
 * load-bound: wrk, not the server, sets the rate, so two servers come out
 * alike whatever they cost and only CPU per request tells them apart.
 */
export const LOAD_BOUND_PCT = 95;

/**
 * Issue 7's targets from the summaries of `http_load.json` (`summary.plain`,
 * `summary.pipelined`): the raw API (`fdloop-raw`, `run()`) ≥ 1.2× Deno.serve's
 * req/s or ≤ 0.8× its CPU per request, its user CPU ≤ 1.0 µs per request,
 * `serve()` (`fdloop-fetch`) ≥ 1.0× Deno.serve, and the raw API ≥ 6×
 * Deno.serve with `depth` requests pipelined.
 *
 * `serve()`'s "≥ 1.0×" is a req/s ratio; where wrk's core was saturated for
 * either server (median ≥ {@linkcode LOAD_BOUND_PCT}%) that ratio measures
 * wrk, so `serve()` must also spend no more CPU per request than Deno.serve.
 * A server that had socket errors or non-2xx responses in the scenario does
 * not meet a target; errors on Deno.serve's side leave it not measured.
 */
export function httpTargets(summary: Record<string, HttpSummary[]>, depth: number | string = 16): Target[] {
  const find = (sc: string, name: string) => summary[sc]?.find((s) => s.server === name);
  const faults = (s: HttpSummary | undefined) => (s ? (s.errors ?? 0) + (s.non2xx ?? 0) : 0);
  /** met, unless the fdloop server (false) or Deno.serve (null) had errors; the value says so. */
  const judged = (target: string, value: string, met: boolean, mine: HttpSummary, deno?: HttpSummary): Target => {
    const notes = [[mine, faults(mine)], [deno, faults(deno)]].flatMap(([s, n]) =>
      s && n ? [`${n} socket errors or non-2xx responses on ${(s as HttpSummary).server}`] : []
    );
    const text = notes.length ? `${value}; ${notes.join(", ")}` : value;
    return { target, value: text, met: faults(mine) ? false : faults(deno) ? null : met };
  };
  const targets: Target[] = [];
  const deno = find("plain", "deno");
  const raw = find("plain", "fdloop-raw");
  // The C floor in the same run: what the machine allows a server that does nothing but recv, a static answer, send.
  const floor = find("plain", "c");
  if (raw?.rateVsDeno && raw.cpuVsDeno) {
    const cFloor = floor?.rateVsDeno && floor.cpuVsDeno
      ? `; the C floor ${times(floor.rateVsDeno.median)} req/s, ${times(floor.cpuVsDeno.median)} CPU/request`
      : "";
    targets.push(judged(
      "raw API ≥ 1.2× Deno.serve req/s, or CPU/request ≤ 0.8× Deno.serve's",
      `${times(raw.rateVsDeno.median)} req/s, ${times(raw.cpuVsDeno.median)} CPU/request${cFloor}`,
      raw.rateVsDeno.median >= 1.2 || raw.cpuVsDeno.median <= 0.8,
      raw,
      deno,
    ));
  }
  if (raw) {
    const cUser = floor ? `; the C floor ${num(floor.userUs, 2)} µs` : "";
    targets.push(
      judged("raw API user CPU ≤ 1.0 µs/request", `${num(raw.userUs, 2)} µs${cUser}`, raw.userUs <= 1.0, raw),
    );
  }
  const fetchApi = find("plain", "fdloop-fetch");
  if (fetchApi?.rateVsDeno && fetchApi.cpuVsDeno) {
    const wrkCore = [fetchApi.loadCorePct, deno?.loadCorePct ?? 0];
    const bound = Math.max(...wrkCore) >= LOAD_BOUND_PCT;
    const rate = fetchApi.rateVsDeno.median, cpu = fetchApi.cpuVsDeno.median;
    targets.push(judged(
      "serve() ≥ 1.0× Deno.serve req/s (and CPU/request ≤ 1.0× Deno.serve's where wrk's core is saturated, as " +
        "req/s then measures wrk)",
      `${times(rate)} req/s, CPU/request ${times(cpu)}; wrk's core ${
        wrkCore.map((x) => `${num(x, 0)}%`).join(
          " / ",
        )
      }${bound ? ": load-bound" : ""}`,
      rate >= 1.0 && (!bound || cpu <= 1.0),
      fetchApi,
      deno,
    ));
  }
  const piped = find("pipelined", "fdloop-raw");
  if (piped?.rateVsDeno) {
    targets.push(judged(
      `${depth}-deep pipelining, raw API ≥ 6× Deno.serve`,
      times(piped.rateVsDeno.median),
      piped.rateVsDeno.median >= 6,
      piped,
      find("pipelined", "deno"),
    ));
  }
  return targets;
}

/** A ratio's median (min–max), or "—". */
const vs = (s: Spread | null | undefined) => (s ? range(s, times) : "—");

/** A target of an issue, met or not by the figures (`met: null`: not measured). */
export interface Target {
  target: string;
  value: string;
  met: boolean | null;
}

/** The targets as list items: met, **MISSED** (as the benchmarks print them) or not measured. */
function targetLines(targets: Target[]): string[] {
  return targets.map((t) =>
    `- ${t.met === true ? "met" : t.met === false ? "**MISSED**" : "not measured"}: ${t.target} — ${t.value}`
  );
}

/** One server's figures in `echo_load.json` (`summary[]`), as `bench/load/run.ts` writes them. */
export interface EchoSummary {
  server: string;
  label: string;
  rate: Spread;
  cpuUs: Spread;
  /**
   * Busy time of the server core per round trip, µs: the server's CPU plus the interrupt and softirq work
   * (loopback TCP) done on that core while the server slept, which /proc charges to no task.
   */
  coreUs: Spread;
  userUs: Spread;
  sysUs: Spread;
  /** Medians over rounds of this server's round trips/s ÷ the reference's (`c`, `deno`) in the same round. */
  rateVs: Record<string, Spread | null>;
  /** Medians over rounds of this server's CPU per round trip ÷ the reference's in the same round. */
  cpuVs: Record<string, Spread | null>;
  /** The same for the server core's busy time per round trip. */
  coreVs: Record<string, Spread | null>;
  serverPct: number;
  loadCorePct: number;
  otherPct: number;
}

/** One server's syscall counts in `echo_load.json` (`syscalls.strace.<server>`, `syscalls.perf.<server>`). */
export interface EchoSyscalls {
  /** Round trips while strace or perf was attached (drained ones included). */
  roundTrips: number;
  /** Seconds of load. */
  seconds: number;
  /** Syscalls per round trip, by name. */
  perRoundTrip: Record<string, number>;
  /** Failed calls per round trip (EAGAIN, EINTR …), by name (strace only). */
  errorsPerRoundTrip: Record<string, number>;
  total: number;
}

/**
 * The echo load table, as `bench/load/run.ts` prints it and this file
 * renders it: one row per server; fdloop's ratios to C green within issue
 * 9's bound (≤ 1.10×), red past it, when `colour`.
 */
export function echoTable(summaries: EchoSummary[], colour?: boolean): string {
  const bound = (s: Spread | null | undefined, fdloop: boolean): Cell =>
    fdloop && s ? { text: vs(s), style: s.median <= 1.1 ? "green" : "red" } : vs(s);
  const rows = summaries.map((s): Cell[] => {
    const fdloop = s.server.startsWith("fdloop");
    return [
      fdloop ? { text: s.label, style: "bold" } : s.label,
      range(s.rate, int),
      vs(s.rateVs?.c),
      vs(s.rateVs?.deno),
      range(s.cpuUs, (x) => num(x, 2)),
      `${num(s.userUs.median, 2)} + ${num(s.sysUs.median, 2)}`,
      bound(s.cpuVs?.c, fdloop),
      vs(s.cpuVs?.deno),
      s.coreUs ? range(s.coreUs, (x) => num(x, 2)) : "—",
      bound(s.coreVs?.c, fdloop),
      `${num(s.serverPct, 0)}%`,
      `${num(s.loadCorePct, 0)}%`,
    ];
  });
  return markdownTable(
    columns(["server"], [
      "round trips/s (min–max)",
      "rt/s vs C",
      "rt/s vs Deno.listen",
      "server CPU µs/rt (min–max)",
      "user + sys µs",
      "CPU/rt vs C",
      "CPU/rt vs Deno.listen",
      "server core µs/rt",
      "core/rt vs C",
      "server CPU",
      "load core",
    ]),
    rows,
    colour,
  );
}

/**
 * Syscalls per round trip, one column per server, the most frequent first;
 * calls below 0.001 per round trip (setup, timers, signals) summed into
 * "other", then the total and the round trips counted.
 */
export function syscallTable(counts: Record<string, EchoSyscalls>, colour?: boolean): string {
  const servers = Object.keys(counts);
  const all = new Map<string, number>();
  for (const c of Object.values(counts)) {
    for (const [n, x] of Object.entries(c.perRoundTrip)) all.set(n, Math.max(all.get(n) ?? 0, x));
  }
  const shown = [...all].filter(([, x]) => x >= 0.001).sort((a, b) => b[1] - a[1]).map(([n]) => n);
  const fmt = (x: number | undefined) => x === undefined ? "—" : x.toFixed(3);
  const other = (c: EchoSyscalls) =>
    Object.entries(c.perRoundTrip).filter(([n]) => !shown.includes(n)).reduce((a, [, x]) => a + x, 0);
  const rows: Cell[][] = [
    ...shown.map((n) => [n, ...servers.map((s) => fmt(counts[s].perRoundTrip[n]))]),
    ["other", ...servers.map((s) => fmt(other(counts[s])))],
    [{ text: "total", style: "bold" }, ...servers.map((s): Cell => ({ text: fmt(counts[s].total), style: "bold" }))],
    ["round trips counted", ...servers.map((s) => int(counts[s].roundTrips))],
  ];
  return markdownTable(columns(["syscall"], servers), rows, colour);
}

/** The load slices `echoTargets()` reads: one server's round trips/s in one round. */
export interface EchoSlice {
  round: number;
  server: string;
  rate: number;
}

/**
 * Issue 9's targets that the echo load run measures, from its summary (and
 * its slices, for the runSync()/run() ratio per round): user CPU per round
 * trip, CPU per round trip against C, and runSync() against run().
 */
export function echoTargets(summary: EchoSummary[], slices: EchoSlice[] = []): Target[] {
  const find = (name: string) => summary.find((s) => s.server === name);
  const targets: Target[] = [];
  const run = find("fdloop");
  const sync = find("fdloop-sync");
  const c = find("c");
  // The C server's user CPU in the same run: the floor this machine charges for the same syscalls.
  const cUser = c ? `; the C server ${num(c.userUs.median, 2)} µs` : "";
  if (sync) {
    targets.push({
      target: "runSync() user CPU ≤ 0.4 µs/round trip",
      value: `${num(sync.userUs.median, 2)} µs${cUser}`,
      met: sync.userUs.median <= 0.4,
    });
  }
  if (run) {
    targets.push({
      target: "run() user CPU ≤ 0.5 µs/round trip",
      value: `${num(run.userUs.median, 2)} µs${cUser}`,
      met: run.userUs.median <= 0.5,
    });
  }
  for (const s of [sync, run]) {
    if (!s?.cpuVs?.c || !s.coreVs?.c) continue;
    targets.push({
      target: `${s.server === "fdloop" ? "run()" : "runSync()"} CPU/round trip ≤ 1.10× the C server's`,
      value: `server CPU ${times(s.cpuVs.c.median)}, server core ${times(s.coreVs.c.median)}`,
      met: s.cpuVs.c.median <= 1.1 && s.coreVs.c.median <= 1.1,
    });
  }
  if (run && sync) {
    // Per-round ratios where the slices are there; else the ratio of the medians.
    const perRound = slices.filter((s) => s.server === "fdloop-sync").flatMap((s) => {
      const r = slices.find((x) => x.server === "fdloop" && x.round === s.round);
      return r ? [s.rate / r.rate] : [];
    });
    const ratio = perRound.length
      ? range(spreadOf(perRound), times)
      : `${times(sync.rate.median / run.rate.median)} (ratio of medians)`;
    const mid = perRound.length ? spreadOf(perRound).median : sync.rate.median / run.rate.median;
    targets.push({
      target: "runSync() round trips/s ≥ run()'s, and run() ≥ 0.95× runSync()",
      value: `runSync()/run() ${ratio}`,
      met: mid >= 1 && mid <= 1 / 0.95,
    });
  }
  return targets;
}

/** Heap bytes per round trip below which an echo path counts as allocating nothing per message. */
export const NO_ALLOCATION_BYTES = 2;

/**
 * Issue 9's "no allocation per message" from `echo_alloc.json`: every row at
 * the load benchmark's 50 connections (or the most connections measured)
 * below {@linkcode NO_ALLOCATION_BYTES} per round trip (a forced GC and
 * `heapUsed` leave a little per-batch noise; one small object per message is
 * 16 bytes or more).
 */
export function allocTarget(d: Json): Target {
  const target = `no allocation per message: < ${NO_ALLOCATION_BYTES} B of heap per round trip at 50 connections, ` +
    "every client and loop mode (`bench/echo_alloc.ts`)";
  const rows: Json[] = Array.isArray(d?.rows) ? d.rows : [];
  if (!rows.length) return { target, value: "`results/echo_alloc.json` missing", met: null };
  const conns = rows.some((r) => r.conns === 50) ? 50 : Math.max(...rows.map((r) => Number(r.conns) || 0));
  const mine = rows.filter((r) => r.conns === conns).sort((a, b) => b.bytesPerRoundTrip - a.bytesPerRoundTrip);
  const worst = mine[0];
  const value = `worst ${num(worst.bytesPerRoundTrip, 2)} B (${worst.client}, \`${worst.mode}()\`${
    conns === 50 ? "" : `, ${conns} connections`
  })`;
  const under = worst.bytesPerRoundTrip < NO_ALLOCATION_BYTES;
  // A GC within a sample makes heapUsed read low: a figure under the bound from such samples proves nothing.
  const gcRows = mine.filter((r) => r.gcDuringSamples > 0);
  if (under && gcRows.length) {
    return {
      target,
      value: `${value}; a GC ran during samples of ${gcRows.length} row(s), which then read low: not conclusive`,
      met: null,
    };
  }
  return { target, value, met: under };
}

/** Median KiB per idle connection by server, from `echo_idle_memory.json`'s samples. */
function idlePerConnection(d: Json): Map<string, number> {
  const samples: Json[] = Array.isArray(d?.samples) ? d.samples : [];
  const out = new Map<string, number>();
  for (const sv of new Set<string>(samples.map((x) => x.server))) {
    out.set(sv, median(samples.filter((x) => x.server === sv).map((x) => Number(x.perConnectionKiB))));
  }
  return out;
}

/** Issue 9's "≤ 2 KiB of RSS per idle connection" for every fdloop server of `echo_idle_memory.json`. */
export function idleMemoryTarget(d: Json): Target {
  const target = "≤ 2 KiB of RSS per idle connection (`bench/load/idle_memory.ts`)";
  const fdloop = [...idlePerConnection(d)].filter(([sv]) => sv.startsWith("fdloop"));
  if (!fdloop.length) return { target, value: "`results/echo_idle_memory.json` missing", met: null };
  return {
    target,
    value: fdloop.map(([sv, k]) => `${sv} ${num(k, 2)} KiB`).join(", "),
    met: fdloop.every(([, k]) => k <= 2),
  };
}

function renderEcho(d: Json, files: Record<string, Json>): string {
  const s = d.settings ?? {};
  if (!Array.isArray(d.summary)) return renderGeneric(d);
  const out = [
    `${s.conns ?? "?"} connections ping-ponging ${s.size ?? "?"}-byte messages (${
      s.inFlightPerConnection ?? 1
    } in flight each), every server up at once on CPU ${s.serverCpu ?? "?"}${
      s.pinned === false ? " (not pinned: no taskset)" : ""
    }, the load generator on CPU ${s.loadCpu ?? "?"}; ${s.rounds ?? "?"} rounds of ${
      s.sliceSeconds ?? "?"
    } s slices in rotated order after a ${s.warmupSeconds ?? "?"} s warm-up; median (min–max) over rounds, ratios ` +
    "are medians of per-round ratios; server CPU (user + sys) from `/proc/PID/stat`, all threads; server core is " +
    "the busy time of the servers' core per round trip (`/proc/stat`), which adds the loopback interrupt work done " +
    "while the server slept.",
    "",
    echoTable(d.summary, false),
  ];
  const tools = [
    [
      "perf",
      `counted at full speed with \`perf stat\` on the syscall tracepoints, ${s.perfSeconds ?? "?"} s per server`,
    ],
    ["strace", `counted with \`strace -c -f\`, ${s.straceSeconds ?? "?"} s per server (strace slows the server)`],
  ];
  for (const [tool, title] of tools) {
    const counts = d.syscalls?.[tool];
    if (counts && Object.keys(counts).length) {
      out.push("", `Syscalls per round trip, ${title}:`, "", syscallTable(counts, false));
    }
  }
  const targets = [
    ...echoTargets(d.summary, Array.isArray(d.slices) ? d.slices : []),
    allocTarget(files.echo_alloc),
    idleMemoryTarget(files.echo_idle_memory),
  ];
  out.push("", "Issue 9's targets (the last two from the sections below):", "", ...targetLines(targets));
  const notes: string[] = d.notes ?? [];
  if (notes.length) out.push("", ...notes.map((n) => `- Note: ${n}`));
  return out.join("\n");
}

const MODE_TEXT: Record<string, string> = { runOnce: "`runOnce()` loop", run: "`await run()`", runSync: "`runSync()`" };

function renderEchoAlloc(d: Json): string {
  const s = d.settings ?? {};
  if (!Array.isArray(d.rows)) return renderGeneric(d);
  const rows: Json[] = d.rows;
  const clients = [...new Set<string>(rows.map((r) => r.client))];
  const conns = [...new Set<number>(rows.map((r) => r.conns))].sort((a, b) => a - b);
  const modes = [...new Set<string>(rows.map((r) => r.mode))];
  const cell = (client: string, mode: string, n: number): Cell => {
    const r = rows.find((x) => x.client === client && x.mode === mode && x.conns === n);
    if (!r) return "—";
    const text = `${num(r.bytesPerRoundTrip, 2)} (${num(r.min, 2)}–${num(r.max, 2)})${r.gcDuringSamples ? " †" : ""}`;
    return text;
  };
  const side = (client: string) => rows.find((r) => r.client === client)?.side ?? "";
  return [
    `Heap bytes allocated per echoed round trip of ${s.size ?? "?"} B, median (min–max) over ${
      s.samples ?? "?"
    } samples of ${s.roundTrips ?? "?"} round trips, each after a forced GC. The **raw** client is a bare socket ` +
    "(the figure is the server side's alone); the **Connection** client is fdloop's own (both sides).",
    "",
    markdownTable(
      columns(["client", "loop"], conns.map((n) => `B/rt, ${n} connection${n === 1 ? "" : "s"}`)),
      clients.flatMap((c) =>
        modes.map((m): Cell[] => [`${c} (${side(c)})`, MODE_TEXT[m] ?? m, ...conns.map((n) => cell(c, m, n))])
      ),
      false,
    ),
    ...(rows.some((r) => r.gcDuringSamples) ? ["", "† a GC ran during some samples: those read low."] : []),
    "",
    ...targetLines([allocTarget(d)]),
  ].join("\n");
}

const HTTP_ALLOC_SERVER: Record<string, string> = { raw: "raw (`listenHttp()`)", serve: "`serve()`" };

function renderHttpAlloc(d: Json): string {
  const s = d.settings ?? {};
  if (!Array.isArray(d.rows)) return renderGeneric(d);
  const rows: Json[] = d.rows;
  const sizes = [...new Set<number>(rows.map((r) => r.responseBytes).filter((x) => typeof x === "number"))];
  const mib = typeof s.newSpaceBytes === "number" ? `${Math.round(s.newSpaceBytes / 2 ** 20)} MiB` : "a";
  // serve() ÷ raw at the same loop mode and connection count.
  const ratios = rows.flatMap((r) => {
    if (r.server !== "serve") return [];
    const raw = rows.find((x) => x.server === "raw" && x.mode === r.mode && x.conns === r.conns);
    return raw && raw.bytesPerRequest > 0 ? [r.bytesPerRequest / raw.bytesPerRequest] : [];
  });
  return [
    `Heap bytes allocated per \`GET /\` request on the server side, median (min–max) over ${
      s.samples ?? "?"
    } samples ` +
    `of ${typeof s.requests === "number" ? int(s.requests) : "?"} keep-alive requests, each after a forced GC (and ` +
    `${s.warmupBatches ?? "?"} warm-up batches). The clients are bare sockets on the same reactor, one request in ` +
    `flight per connection${sizes.length === 1 ? ` (${sizes[0]}-byte responses)` : ""}, so the figure is the ` +
    "server's alone. **raw**: `listenHttp()` answering `res.setHeaders(plain).end(HELLO)` (prepared headers, body " +
    'bytes encoded once); **`serve()`**: `() => new Response("Hello, World!", { headers: { "content-type": ' +
    `"text/plain" } })\`. The young generation holds ${mib} (\`--min-semi-space-size\`/\`--max-semi-space-size\`), ` +
    "so no scavenge runs within a sample (watched with `node:v8`'s `GCProfiler`): a GC mid-sample makes `heapUsed` " +
    "read low.",
    "",
    markdownTable(
      columns(["server", "loop"], ["connections", "B/request median (min–max)", "requests/s in-process"]),
      rows.map((r): Cell[] => [
        HTTP_ALLOC_SERVER[r.server] ?? String(r.server),
        MODE_TEXT[r.mode] ?? String(r.mode),
        String(r.conns),
        `${num(r.bytesPerRequest)} (${num(r.min)}–${num(r.max)})${r.gcDuringSamples ? " †" : ""}`,
        typeof r.requestsPerSecond === "number" ? int(r.requestsPerSecond) : "—",
      ]),
      false,
    ),
    ...(rows.some((r) => r.gcDuringSamples) ? ["", "† a GC ran during some samples: those read low."] : []),
    ...(ratios.length
      ? [
        "",
        `\`serve()\` allocates ${range(spreadOf(ratios), times)} the raw API's bytes per request at the same loop ` +
        "mode and connection count (median (min–max) over those pairs).",
      ]
      : []),
  ].join("\n");
}

function renderIdleMemory(d: Json): string {
  const s = d.settings ?? {};
  if (!Array.isArray(d.samples)) return renderGeneric(d);
  const per = idlePerConnection(d);
  const rows = [...per].map(([sv, kib]): Cell[] => {
    const mine: Json[] = d.samples.filter((x: Json) => x.server === sv);
    const m = (k: string) => median(mine.map((x) => Number(x[k])));
    return [
      d.servers?.[sv] ?? sv,
      int(m("rssBeforeKiB")),
      int(m("rssAfterKiB")),
      num(kib, 2),
      mine.map((x) => num(Number(x.perConnectionKiB), 2)).join(", "),
    ];
  });
  return [
    `Resident memory (\`VmRSS\`) of each server before and after ${
      typeof s.conns === "number" ? int(s.conns) : "?"
    } idle connections, each having echoed one ${s.messageBytes ?? "?"}-byte message, ${
      s.settleSeconds ?? "?"
    } s to settle; KiB per idle connection = the RSS delta ÷ the connections, median of ${s.repeat ?? "?"} runs.`,
    "",
    markdownTable(
      columns(["server"], ["RSS before (KiB)", "RSS after (KiB)", "KiB per idle connection", "runs"]),
      rows,
      false,
    ),
    "",
    ...targetLines([idleMemoryTarget(d)]),
  ].join("\n");
}

// ---------------------------------------------------------------- profile.json

/** The categories of user-space samples in `profile.json`, in the order of the tables. */
export const PROFILE_CATEGORIES = [
  { key: "syscalls", title: "libc syscall wrappers (`send`, `recv`, `epoll_wait` …)" },
  { key: "js", title: "JavaScript, JIT-compiled (by function below)" },
  { key: "builtins", title: "V8 builtins (embedded blob)" },
  { key: "native", title: "other native code in deno (V8 runtime, GC, ops; stripped)" },
  { key: "trampolines", title: "FFI call trampolines (unnamed JIT code outside V8's code space)" },
  { key: "other", title: "everything else (libc outside syscalls, vdso, the C server's own code)" },
] as const;

/** A key of {@linkcode PROFILE_CATEGORIES}. */
export type ProfileCategory = typeof PROFILE_CATEGORIES[number]["key"];

/** Samples of one category or symbol: how many, their share of the user samples, and µs of user CPU per operation. */
export interface ProfileShare {
  samples: number;
  share: number;
  us: number;
}

/** One server's profile in `profile.json`, as `bench/load/profile.ts` writes it. */
export interface ProfileServer {
  server: string;
  label: string;
  kind: "echo" | "http";
  /** Round trips (echo) or requests (HTTP) in the slice without perf. */
  ops: number;
  seconds: number;
  rate: number;
  /** The server's user and system CPU per operation over that slice, µs (`/proc/PID/stat`, all threads). */
  userUs: number;
  sysUs: number;
  /** User CPU over that slice, % of one core. */
  userPct: number;
  /** The same figures over the slice perf sampled (perf's interrupts slow the server). */
  sampled?: { ops: number; seconds: number; rate: number; userUs: number; sysUs: number; userPct: number };
  /** User-space samples perf took. */
  samples: number;
  /** The samples as % of one core over the sampled slice (a check on `sampled.userPct`). */
  perfUserPct: number;
  categories: Record<ProfileCategory, ProfileShare>;
  /** The JavaScript functions with the most samples: name, repository-relative `file:line:column`, V8 tiers seen. */
  topJs: (ProfileShare & { fn: string; location: string; tiers: string })[];
  topBuiltins: (ProfileShare & { name: string })[];
  syscallSites: (ProfileShare & { name: string })[];
  other: (ProfileShare & { name: string })[];
}

/** One labelled run of `profile.json` (`runs.before`, `runs.after`): its metadata, the commit profiled, the servers. */
export interface ProfileRun extends RunMeta {
  /** The commit of the tree whose examples ran (`--root`). */
  commit: string | null;
  subject: string | null;
  /** That tree had uncommitted changes to the library or the examples. */
  dirty: boolean;
  servers: ProfileServer[];
}

const TIER_TEXT: Record<string, string> = { "*": "TurboFan", "+": "Maglev", "^": "Sparkplug", "~": "Ignition" };
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const us = (x: number) => x.toFixed(3);

/** The labels of `runs`, `before` first. */
function profileLabels(runs: Record<string, ProfileRun>): string[] {
  const labels = Object.keys(runs);
  return [...labels.filter((l) => l === "before"), ...labels.filter((l) => l !== "before")];
}

/**
 * One server's categories side by side across the labelled runs: share of
 * the user samples and µs per operation, then the total user CPU.
 */
export function profileTable(rows: [string, ProfileServer | undefined][], colour?: boolean): string {
  const unit = rows.find(([, s]) => s)?.[1]?.kind === "http" ? "req" : "rt";
  const cell = (s: ProfileServer | undefined, f: (s: ProfileServer) => string) => (s ? f(s) : "—");
  return markdownTable(
    columns(["user-space samples in"], rows.flatMap(([l]) => [`${l}: share`, `${l}: µs/${unit}`])),
    [
      // A category no server of the row has samples in (JavaScript for a C server) is left out.
      ...PROFILE_CATEGORIES.filter((c) => rows.some(([, s]) => s && s.categories[c.key].samples > 0)).map((
        c,
      ): Cell[] => [
        c.title,
        ...rows.flatMap((
          [, s],
        ) => [cell(s, (x) => pct(x.categories[c.key].share)), cell(s, (x) => us(x.categories[c.key].us))]),
      ]),
      [
        { text: "user CPU, total", style: "bold" },
        ...rows.flatMap((
          [, s],
        ): Cell[] => [cell(s, () => "100%"), { text: cell(s, (x) => us(x.userUs)), style: "bold" }]),
      ],
    ],
    colour,
  );
}

/** The JavaScript functions with the most samples of one server. */
export function profileJsTable(s: ProfileServer, colour?: boolean): string {
  const unit = s.kind === "http" ? "req" : "rt";
  return markdownTable(
    columns(["function", "location", "tier"], ["share", `µs/${unit}`]),
    s.topJs.map((f) => [
      `\`${f.fn.replace(/\|/g, "\\|")}\``,
      f.location ? `\`${f.location}\`` : "—",
      [...f.tiers].map((t) => TIER_TEXT[t] ?? t).join(", ") || "—",
      pct(f.share),
      us(f.us),
    ]),
    colour,
  );
}

/** `1.234 µs of user CPU per round trip, 6.17× the C floor's 0.200 µs; outside libc's syscall wrappers …`. */
function floorNote(s: ProfileServer, c: ProfileServer | undefined): string {
  const unit = s.kind === "http" ? "request" : "round trip";
  const beyond = (x: ProfileServer) => x.userUs - x.categories.syscalls.us;
  const text = `${us(s.userUs)} µs of user CPU per ${unit}`;
  if (!c) return `${text} (no C floor in this run)`;
  return `${text}, ${times(s.userUs / c.userUs)} the C floor's ${us(c.userUs)} µs; outside libc's syscall wrappers ` +
    `${us(beyond(s))} µs against the C floor's ${us(beyond(c))} µs`;
}

function renderProfile(d: Json): string {
  const s = d.settings ?? {};
  const runs: Record<string, ProfileRun> = d.runs ?? {};
  const labels = profileLabels(runs);
  if (!labels.length) return renderGeneric(d);
  const out = [
    `Each server alone on CPU ${s.serverCpu ?? "?"}, its load on CPU ${s.loadCpu ?? "?"}: for echo ` +
    `\`bench/load/echo_load.mjs\` (${s.conns ?? "?"} connections, one ${s.echoSize ?? "?"}-byte message in flight ` +
    `each), for HTTP \`wrk -t1 -c${s.conns ?? "?"}\` on \`GET /\`. After a ${s.warmupSeconds ?? "?"} s warm-up, ` +
    `${s.seconds ?? "?"} s of load give the server's user CPU per operation (\`/proc/PID/stat\`, all threads), then ` +
    `${s.seconds ?? "?"} s more are sampled by \`perf record -e cpu-clock:u -g -F ${s.frequency ?? "?"}\`; the Deno ` +
    "servers run with `--v8-flags=--perf-basic-prof`. A share is of the server's user-space samples; µs per round " +
    "trip (rt) or request (req) is the share times the user CPU per operation measured without perf (sampling at " +
    "this rate slows the server: its figures under perf are in the JSON). On this VM the cost of a syscall " +
    "instruction is charged to the libc wrapper that makes it. Builtins run from V8's remapped copy of the deno " +
    "binary's embedded blob: perf files them under the stripped binary, and the script names them from the perf map.",
    "",
    ...labels.map((l) => {
      const r = runs[l];
      const c = r.commit ? `commit \`${r.commit.slice(0, 7)}\`${r.subject ? ` (${r.subject})` : ""}` : "commit unknown";
      return `- **${l}**: ${c}${r.dirty ? ", with uncommitted changes" : ""}; ${formatDate(r.date)}; \`${r.command}\``;
    }),
  ];
  const names: string[] = [];
  for (const l of labels) for (const sv of runs[l].servers ?? []) if (!names.includes(sv.server)) names.push(sv.server);
  const ordered = [...names.filter((n) => !n.startsWith("c-")), ...names.filter((n) => n.startsWith("c-"))];
  for (const name of ordered) {
    const rows = labels.map((l): [string, ProfileServer | undefined] => [
      l,
      runs[l].servers?.find((x) => x.server === name),
    ]);
    const shown = rows.filter(([, x]) => x).at(-1)!;
    const sv = shown[1]!;
    const unit = sv.kind === "http" ? "requests" : "round trips";
    out.push("", `### ${sv.label}`, "", profileTable(rows, false), "");
    out.push(
      ...rows.filter(([, x]) => x).map(([l, x]) =>
        `- ${l}: ${int(x!.rate)} ${unit}/s, ${x!.samples.toLocaleString("en-US")} user samples, system CPU ${
          us(x!.sysUs)
        } µs/${sv.kind === "http" ? "req" : "rt"}` +
        (name.startsWith("c-") ? "" : `; ${floorNote(x!, runs[l].servers?.find((c) => c.server === `c-${sv.kind}`))}`)
      ),
    );
    if (sv.topJs?.length) {
      out.push("", `JavaScript functions with the most samples, ${shown[0]}:`, "", profileJsTable(sv, false));
    }
    const lists: [string, (ProfileShare & { name: string })[]][] = [
      ["Builtins", sv.topBuiltins ?? []],
      ["libc syscall wrappers", sv.syscallSites ?? []],
    ];
    for (const [title, xs] of lists) {
      if (xs.length) {
        out.push(
          "",
          `${title}, ${shown[0]}: ${xs.slice(0, 6).map((x) => `\`${x.name}\` ${pct(x.share)}`).join(", ")}.`,
        );
      }
    }
  }
  return out.join("\n");
}

/** A scalar cell of the generic table. */
function cellOf(v: unknown): string {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number") return Number.isInteger(v) ? v.toLocaleString("en-US") : v.toFixed(2);
  if (isSpread(v)) return range(v, (x) => (Number.isInteger(x) ? x.toLocaleString("en-US") : x.toFixed(2)));
  if (typeof v === "object") {
    return Object.entries(v as Record<string, unknown>).map(([k, x]) => `${k} ${cellOf(x)}`).join(", ");
  }
  return String(v).replace(/\|/g, "\\|");
}

/**
 * The figures of a file whose shape is not known here: the first list (or
 * record) of per-row objects under `summary`, `results`, `rows`, `samples`,
 * `servers`, `figures` or any other key, one column per field (lists of
 * rounds left out).
 */
export function renderGeneric(d: Json): string {
  const keys = ["summary", "results", "rows", "samples", "servers", "figures"];
  for (const [k, v] of Object.entries(d ?? {})) if (Array.isArray(v) && !keys.includes(k)) keys.push(k);
  for (const key of keys) {
    let rows: Json = d?.[key];
    if (rows && !Array.isArray(rows) && typeof rows === "object") {
      const vals = Object.values(rows);
      if (vals.length && vals.every((v) => Array.isArray(v))) {
        // { scenario: [rows] }: one table per scenario.
        return Object.entries(rows).map(([name, rs]) => `### ${name}\n\n${genericTable(rs as Json[])}`).join("\n\n");
      }
      if (vals.length && vals.every((v) => typeof v === "object" && v !== null)) {
        rows = Object.entries(rows).map(([name, v]) => ({ name, ...(v as object) }));
      }
    }
    if (Array.isArray(rows) && rows.length && rows.every((r) => typeof r === "object" && r !== null)) {
      return genericTable(rows);
    }
  }
  return "No table of figures was found in this file; see the JSON.";
}

function genericTable(rows: Json[]): string {
  const keys: string[] = [];
  for (const r of rows) {
    for (const [k, v] of Object.entries(r)) if (!Array.isArray(v) && !keys.includes(k)) keys.push(k);
  }
  return markdownTable(
    columns(keys.slice(0, 1), keys.slice(1)),
    rows.map((r) => keys.map((k) => cellOf(r[k]))),
    false,
  );
}

/** The benchmarks, in the order of the file. */
export const BENCHES: Bench[] = [
  {
    key: "ffi_vs_c",
    title: "FFI call cost against the same call from C",
    about: "The same libc calls timed in a C loop and in a Deno FFI loop, alternating rounds.",
    run: "taskset -c 1 deno run -A bench/ffi_vs_c.ts",
    render: renderFfi,
  },
  {
    key: "selectors",
    title: "Selector.select(0) with N idle fds and 1 ready",
    about: "How the cost of a non-blocking wait grows with the registration count, per fdloop backend.",
    run: "deno run -A bench/selector_bench.ts",
    render: renderSelectors,
  },
  {
    key: "scaling",
    title: "Backend scaling beside CPython",
    about: "One `select(0)` per backend for N = 16 … 16384 registered fds, fdloop's backends against CPython's " +
      "`selectors` in the same run.",
    run: "deno task bench:scaling",
    render: renderScaling,
  },
  {
    key: "echo_load",
    title: "Echo servers side by side",
    about: "fdloop's echo server against Deno, Node and C echo servers under the same load, with the server's CPU " +
      "time per round trip.",
    run: "deno task bench:load",
    render: renderEcho,
  },
  {
    key: "http_load",
    title: "HTTP servers side by side",
    about: "fdloop's raw HTTP API and `serve()` against `Deno.serve`, Node `http` and a C floor under `wrk`, plain " +
      "and pipelined.",
    run: "deno task bench:http",
    render: renderHttp,
  },
  {
    key: "echo_alloc",
    title: "Allocation on the echo path",
    about: "Heap allocated per echoed message, by fdloop's loop mode and connection count.",
    run: `deno run -A --v8-flags=${ALLOC_V8_FLAGS} bench/echo_alloc.ts`,
    render: renderEchoAlloc,
    optional: true,
  },
  {
    key: "http_alloc",
    title: "Allocation on the HTTP path",
    about: "Heap allocated per HTTP request on the server side, by handler API, loop mode and connection count.",
    run: `deno run -A --v8-flags=${ALLOC_V8_FLAGS} bench/http_alloc.ts`,
    render: renderHttpAlloc,
    optional: true,
  },
  {
    key: "echo_idle_memory",
    title: "Memory per idle connection",
    about: "What an open, idle connection costs each echo server in resident memory.",
    run: "deno run -A bench/load/idle_memory.ts",
    render: renderIdleMemory,
    optional: true,
  },
  {
    key: "profile",
    title: "Where the user-space time goes",
    about: "The servers' user-space CPU under load, sampled with `perf` and sorted into syscall wrappers, " +
      "JavaScript by function, V8 builtins and native code: before and after this round of changes, beside the C " +
      "floor.",
    run: "deno task bench:profile",
    render: renderProfile,
    optional: true,
  },
];

// ---------------------------------------------------------------- the file

/** Words of a prose line, inline code spans kept whole. */
function words(text: string): string[] {
  return text.match(/(?:`[^`]*`|[^\s`])+/g) ?? [];
}

/**
 * Wraps the prose lines and list items of Markdown at `width` columns the
 * way `deno fmt` does (greedy, inline code unbroken, list continuations
 * indented), so the rendered file is already formatted; tables, headings,
 * comments and images are left alone.
 */
export function wrapMarkdown(text: string, width = 120): string {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    if (line.length <= width || /^(\||#|<!--|!\[|\s)/.test(line)) {
      out.push(line);
      continue;
    }
    const item = line.startsWith("- ");
    const room = width - (item ? 2 : 0);
    const lines: string[] = [];
    let cur = "";
    for (const w of words(item ? line.slice(2) : line)) {
      // A word that would start a line as a list marker, quote or heading stays on the line before.
      if (cur === "" || cur.length + 1 + w.length <= room || /^([-+*>#]|\d+[.)])$/.test(w)) {
        cur = cur === "" ? w : `${cur} ${w}`;
      } else {
        lines.push(cur);
        cur = w;
      }
    }
    lines.push(cur);
    out.push(...lines.map((l, i) => (item ? (i === 0 ? "- " : "  ") : "") + l));
  }
  return out.join("\n");
}

const anchor = (title: string) => title.toLowerCase().replace(/[^\p{L}\p{N} -]/gu, "").replace(/ /g, "-");

/**
 * The text of `RESULTS.md` from the parsed JSON files, by name without
 * `.json` (a missing name: not run yet). Files of no known benchmark get a
 * generic section at the end. Pure and deterministic.
 */
export function renderResults(files: Record<string, Json>): string {
  const benches: Bench[] = BENCHES.filter((b) => !b.optional || files[b.key] !== undefined);
  for (const key of Object.keys(files).sort()) {
    if (!BENCHES.some((b) => b.key === key)) {
      benches.push({ key, title: key, about: `Figures from \`results/${key}.json\`.`, run: "", render: renderGeneric });
    }
  }
  const out = [
    "# Benchmark results",
    "",
    "<!-- Generated by `deno task bench:results` (bench/results.ts) from bench/results/*.json: do not edit by hand. -->",
    "",
    "Generated by `deno task bench:results` from the JSON files in [`results/`](results/); **do not edit by hand**: " +
    "run a benchmark (it rewrites its JSON file, and the file here), or `deno task bench:results` after changing " +
    "`bench/results.ts`. Each section gives when and where its figures were taken and the command that reproduces " +
    "them; run the commands from the repository root. `tests/bench_results_test.ts` checks that this file is what " +
    "the JSON renders to.",
    "",
    markdownTable(
      columns(["benchmark", "last run", "machine", "data"]),
      benches.map((b) => {
        const d = files[b.key];
        const m = machineOf(d);
        return [
          `[${b.title}](#${anchor(b.title)})`,
          d === undefined ? "not run yet" : formatDate(d.date),
          d === undefined ? "—" : `${m.cpu}, ${m.cores} cores`,
          d === undefined ? "—" : `[\`${b.key}.json\`](results/${b.key}.json)`,
        ];
      }),
      false,
    ),
  ];
  for (const b of benches) {
    const d = files[b.key];
    out.push("", `## ${b.title}`, "", b.about, "");
    if (d === undefined) {
      out.push(`Not run yet: \`results/${b.key}.json\` does not exist. Run \`${b.run}\`.`);
      continue;
    }
    out.push(metaLines(d, b.key), "", b.render(d, files));
  }
  return wrapMarkdown(out.join("\n")) + "\n";
}

/** The JSON files of `dir`, parsed, by name without `.json`. */
export function readResults(dir: URL = RESULTS_DIR): Record<string, Json> {
  const files: Record<string, Json> = {};
  let entries: Deno.DirEntry[] = [];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (!e.isFile || !e.name.endsWith(".json")) continue;
    files[e.name.slice(0, -5)] = JSON.parse(Deno.readTextFileSync(new URL(e.name, dir)));
  }
  return files;
}

/**
 * Saves a benchmark's results as JSON; when the file lies in
 * `bench/results/`, renders `bench/RESULTS.md` anew from every file there.
 */
export async function writeResults(path: string | URL, data: unknown): Promise<void> {
  const file = typeof path === "string" ? new URL(path, `file://${Deno.cwd()}/`) : path;
  const dir = file.pathname.slice(0, file.pathname.lastIndexOf("/") + 1);
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(file, JSON.stringify(data, null, 2) + "\n");
  console.error(`wrote ${file.pathname}`);
  if (dir === RESULTS_DIR.pathname) {
    await Deno.writeTextFile(RESULTS_MD, renderResults(readResults()));
    console.error(`updated ${RESULTS_MD.pathname}`);
  }
}

if (import.meta.main) {
  const text = renderResults(readResults());
  if (Deno.args.includes("--check")) {
    let current = "";
    try {
      current = Deno.readTextFileSync(RESULTS_MD);
    } catch { /* missing */ }
    if (current !== text) {
      console.error("bench/RESULTS.md is out of date: run `deno task bench:results`");
      Deno.exit(1);
    }
    console.log("bench/RESULTS.md is up to date");
  } else {
    Deno.writeTextFileSync(RESULTS_MD, text);
    console.log(`wrote ${RESULTS_MD.pathname}`);
  }
}
