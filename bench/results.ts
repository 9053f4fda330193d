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
  type Spread,
  type Style,
} from "./_meta.ts";

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
  /** The figures: Markdown after the metadata lines. */
  render: (data: Json) => string;
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
  deno: Spread & { rounds?: number[] };
  ratio: number;
}

/** The FFI-vs-C table, as `bench/ffi_vs_c.ts` prints it and this file renders it. */
export function ffiTable(results: FfiRow[], colour?: boolean): string {
  const rows: Cell[][] = results.map((r) => [
    /^\w+\(.*\)$/.test(r.call) ? `\`${r.call}\`` : r.call,
    range(r.c, (x) => num(x)),
    { text: range(r.deno, (x) => num(x)), style: "cyan" },
    { text: times(r.ratio), style: "bold" },
  ]);
  return markdownTable(
    columns(["call"], ["C ns/op", "Deno FFI ns/op", "Deno / C"]),
    rows,
    colour,
  );
}

function renderFfi(d: Json): string {
  const s = d.settings ?? {};
  return [
    `${s.iterations?.toLocaleString("en-US") ?? "?"} iterations per call, ${s.rounds ?? "?"} rounds; ns per call, ` +
    "median (min–max) over rounds; the C side is `bench/c/ffi_baseline.c` built with `cc -O2`.",
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
  const goal = (ok: unknown) => ok === true ? "met" : ok === false ? "**missed**" : "not measured";
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
    }${goal(d.summary?.fdloopEpollFlat)}`,
    `- Goal, fdloop epoll below CPython's EpollSelector at every N: ${
      goal(d.summary?.fdloopEpollBelowCPythonEverywhere)
    }`,
    ...(d.loadAverage ? [`- Load average before ${d.loadAverage.before}, after ${d.loadAverage.after}`] : []),
  ].join("\n");
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
  const targets: Json[] = d.targets ?? [];
  if (targets.length) {
    out.push("", "Targets:", "", ...targets.map((t) => `- ${t.met ? "met" : "**missed**"}: ${t.target} — ${t.value}`));
  }
  return out.join("\n");
}

const ratio = (s: Spread | null | undefined) => (s ? times(s.median) : "—");

/** Syscalls per round trip, one column per server, the frequent ones first and the rare ones summed as "other". */
function syscallTable(counts: Record<string, Json>): string {
  const servers = Object.keys(counts);
  const most = new Map<string, number>();
  for (const c of Object.values(counts)) {
    for (const [n, x] of Object.entries<number>(c.perRoundTrip ?? {})) most.set(n, Math.max(most.get(n) ?? 0, x));
  }
  const names = [...most].filter(([, x]) => x >= 0.01).sort((a, b) => b[1] - a[1]).map(([n]) => n);
  const rows = names.map((n) => [`\`${n}\``, ...servers.map((sv) => num(counts[sv].perRoundTrip?.[n] ?? 0, 2))]);
  const other = servers.map((sv) =>
    Object.entries<number>(counts[sv].perRoundTrip ?? {}).filter(([n]) => !names.includes(n))
      .reduce((a, [, x]) => a + x, 0)
  );
  if (other.some((x) => x >= 0.005)) rows.push(["other", ...other.map((x) => num(x, 2))]);
  return markdownTable(
    columns(["syscalls per round trip"], servers),
    rows,
    false,
  );
}

function renderEcho(d: Json): string {
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
    "are medians of per-round ratios; server CPU from `/proc/PID/stat`, all threads.",
    "",
    markdownTable(
      columns(["server"], [
        "round trips/s (min–max)",
        "vs C",
        "vs Deno.listen",
        "server CPU µs/rt (min–max)",
        "user + sys µs",
        "CPU/rt vs C",
        "CPU/rt vs Deno.listen",
        "server CPU",
        "load core",
      ]),
      d.summary.map((r: Json) => [
        r.label ?? r.server,
        isSpread(r.rate) ? range(r.rate, int) : cellOf(r.rate),
        ratio(r.rateVs?.c),
        ratio(r.rateVs?.deno),
        isSpread(r.cpuUs) ? range(r.cpuUs, (x) => num(x, 2)) : cellOf(r.cpuUs),
        `${num(r.userUs?.median ?? r.userUs ?? NaN, 2)} + ${num(r.sysUs?.median ?? r.sysUs ?? NaN, 2)}`,
        ratio(r.cpuVs?.c),
        ratio(r.cpuVs?.deno),
        typeof r.serverPct === "number" ? `${num(r.serverPct, 0)}%` : "—",
        typeof r.loadCorePct === "number" ? `${num(r.loadCorePct, 0)}%` : "—",
      ]),
      false,
    ),
  ];
  for (const [tool, title] of [["strace", "counted with `strace -c -f`"], ["perf", "counted with `perf stat`"]]) {
    const counts = d.syscalls?.[tool];
    if (counts && Object.keys(counts).length) {
      out.push("", `Syscalls per round trip, ${title}:`, "", syscallTable(counts));
    }
  }
  const targets: Json[] = d.targets ?? [];
  if (targets.length) {
    out.push("", "Targets:", "", ...targets.map((t) => `- ${t.met ? "met" : "**missed**"}: ${t.target} — ${t.value}`));
  }
  const notes: string[] = d.notes ?? [];
  if (notes.length) out.push("", ...notes.map((n) => `- Note: ${n}`));
  return out.join("\n");
}

function renderEchoAlloc(d: Json): string {
  const s = d.settings ?? {};
  if (!Array.isArray(d.rows)) return renderGeneric(d);
  return [
    `Heap allocated per echoed round trip of ${s.size ?? "?"} B: ${s.roundTrips ?? "?"} round trips per sample, ${
      s.samples ?? "?"
    } samples, median (min–max); "GCs" counts the collections during the samples.`,
    "",
    markdownTable(
      columns(["client", "measured", "loop"], [
        "connections",
        "heap bytes per round trip (min–max)",
        "GCs",
        "round trips/s",
      ]),
      d.rows.map((r: Json) => [
        String(r.client ?? "—"),
        String(r.side ?? "—"),
        r.mode ? `\`${r.mode}()\`` : "—",
        String(r.conns ?? "—"),
        `${num(r.bytesPerRoundTrip, 2)} (${num(r.min, 2)}–${num(r.max, 2)})`,
        String(r.gcDuringSamples ?? "—"),
        typeof r.roundTripsPerSecond === "number" ? int(r.roundTripsPerSecond) : "—",
      ]),
      false,
    ),
  ].join("\n");
}

function renderIdleMemory(d: Json): string {
  const s = d.settings ?? {};
  if (!Array.isArray(d.samples)) return renderGeneric(d);
  const servers = [...new Set<string>(d.samples.map((x: Json) => x.server))];
  const rows = servers.map((sv) => {
    const mine: Json[] = d.samples.filter((x: Json) => x.server === sv);
    const m = (k: string) => median(mine.map((x) => Number(x[k])));
    return [sv, int(m("rssBeforeKiB")), int(m("rssAfterKiB")), num(m("perConnectionKiB"), 2)];
  });
  return [
    `Resident memory of each server before and after ${s.conns ?? "?"} idle connections (each having echoed one ${
      s.messageBytes ?? "?"
    }-byte message), ${s.settleSeconds ?? "?"} s to settle; median of ${s.repeat ?? "?"} runs.`,
    "",
    markdownTable(
      columns(["server"], ["RSS before (KiB)", "RSS after (KiB)", "KiB per connection"]),
      rows,
      false,
    ),
  ].join("\n");
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
    run: "deno run -A --v8-flags=--expose-gc bench/echo_alloc.ts",
    render: renderEchoAlloc,
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
    out.push(metaLines(d, b.key), "", b.render(d));
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
