/**
 * Backend scaling, beside CPython: the cost of one `select(0)` call with 1
 * ready fd among N idle registered fds, for fdloop's epoll, poll and select
 * backends and for CPython's `selectors.EpollSelector`, `PollSelector` and
 * `SelectSelector`, measured in the same run.
 *
 *   deno task bench:scaling            (deno run -A bench/scaling.ts: FFI, spawning python3, and
 *                                       reading /proc/cpuinfo, which Deno grants only with --allow-all)
 *   deno task bench:scaling --help
 *
 * Method (the same in `bench/scaling_selectors.py`):
 * - the idle fds are both ends of N/2 `AF_UNIX` socketpairs: an idle end has
 *   nothing to read, so registering both halves the fds a size needs
 *   (N = 16384 takes 16386 fds, under this machine's hard limit of 20000;
 *   one end per pair would take 32770);
 * - one more socketpair has a byte written into it and its reading end is
 *   registered last, so exactly one fd is ready on every call (level-triggered,
 *   never read); that pair is opened first, so select() sees low fd numbers;
 * - every sample lasts about as long (15 ms): a ~3 ms warm-up of `select(0)`
 *   calls gives the time per call, which sets the number of timed calls (about
 *   8000 for epoll, 3 for poll at N = 16384, which costs
 *   milliseconds a call). Equal durations matter on a shared machine: with a
 *   fixed call count, the fast samples last longest and catch the most
 *   interference from other processes, which bends a flat curve;
 * - rounds (21) alternate fdloop and CPython, rotate the backend order and
 *   alternate the direction of N; each figure is the median over rounds (min
 *   and max are in the JSON), each ratio the median of the per-round ratios.
 *
 * `RLIMIT_NOFILE` is raised through `setrlimit` (FFI) when the largest N needs
 * more fds than the soft limit, up to the hard limit; when even the hard limit
 * is too low, the largest sizes register fewer fds and the output says so.
 * (Deno itself raises the soft limit to the hard one at startup, so under
 * `deno run` the FFI call only matters when an embedder or a future Deno does not.)
 * `select` stops at the first N whose fds reach FD_SETSIZE (1024): the
 * backend refuses to register them, and the error is quoted.
 *
 * Writes `bench/results/scaling.json` and the chart `bench/scaling.svg`
 * ({@linkcode renderScalingSvg}, a pure function).
 *
 * @module
 */

import { formatNs, loadAverage, median, pad, paint, Progress, runMeta, which } from "./_meta.ts";
import { writeResults } from "./results.ts";
import {
  AF_UNIX,
  close,
  F_GETFD,
  FD_SETSIZE,
  getRlimit,
  type ResourceLimit,
  RLIMIT_NOFILE,
  setRlimit,
  SOCK_STREAM,
  socketpair,
  sym,
  write,
} from "../ffi/mod.ts";
import { createSelector } from "../reactor/default.ts";
import { type BackendName, EVENT_READ, type Selector } from "../reactor/selector.ts";

export { formatNs, median };

// ---------------------------------------------------------------- settings

/** The registration counts measured by default. */
export const SIZES: readonly number[] = [16, 64, 256, 1024, 4096, 16384];
/** The mechanisms, in table and legend order. */
export const MECHANISMS: readonly BackendName[] = ["epoll", "poll", "select"];
/** How long each sample and its warm-up last. */
export interface Timing {
  /** Target duration of the timed calls, in ms. */
  sampleMs: number;
  /** Duration of the untimed calls before them, in ms; they also give the time per call. */
  warmupMs: number;
}

/** The default: 15 ms samples after 3 ms warm-ups. */
export const DEFAULT_TIMING: Timing = { sampleMs: 15, warmupMs: 3 };

// ---------------------------------------------------------------- the fds

/** The fds of one run: the ready fd (a byte waiting), its writer, and idle fds (both ends of socketpairs). */
export interface FdSet {
  /** The reading end of the pair holding one unread byte: always readable. */
  readonly ready: number;
  /** Its other end (never registered). */
  readonly readyWriter: number;
  /** Idle fds, in opening order: `idle[2k]` and `idle[2k+1]` are the two ends of one socketpair. */
  readonly idle: readonly number[];
  /** Closes every fd of the set. */
  close(): void;
}

/**
 * Opens the ready pair first (low fd numbers), then `idleCount` idle fds
 * (rounded up to a whole socketpair). Closes what it opened if it fails.
 *
 * @throws {OSError} EMFILE when the fd limit is too low.
 */
export function openFdSet(idleCount: number): FdSet {
  const all: number[] = [];
  try {
    const [ready, readyWriter] = socketpair(AF_UNIX, SOCK_STREAM);
    all.push(ready, readyWriter);
    write(readyWriter, new Uint8Array([1]));
    const idle: number[] = [];
    while (idle.length < idleCount) {
      const [a, b] = socketpair(AF_UNIX, SOCK_STREAM);
      all.push(a, b);
      idle.push(a, b);
    }
    let closed = false;
    return {
      ready,
      readyWriter,
      idle,
      close() {
        if (closed) return;
        closed = true;
        for (const fd of all) close(fd);
      },
    };
  } catch (err) {
    for (const fd of all) close(fd);
    throw err;
  }
}

// ---------------------------------------------------------------- measuring

/** One sample: ns per call, or why the backend could not take this size. */
export type Sample = { ns: number; calls: number } | { error: string };

/**
 * Calls `sel.select(0)` for `timing.warmupMs` (at least 3 calls), then times
 * as many calls as should take `timing.sampleMs` at the rate the warm-up saw.
 *
 * @returns Nanoseconds per call and the number of timed calls.
 * @throws {Error} if a call does not report exactly one ready fd.
 */
export function timeSelect(sel: Selector, timing: Timing): { ns: number; calls: number } {
  let warm = 0, spent = 0;
  const w0 = performance.now();
  do {
    sel.select(0);
    warm++;
    spent = performance.now() - w0;
  } while (spent < timing.warmupMs || warm < 3);
  const calls = Math.max(3, Math.round(timing.sampleMs / (spent / warm)));
  let ready = 0;
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) ready += sel.select(0);
  const ns = (performance.now() - t0) * 1e6 / calls;
  if (ready !== calls) {
    throw new Error(`${sel.name}: ${calls} calls of select(0) reported ${ready} ready fds, expected one each`);
  }
  return { ns, calls };
}

/**
 * One sample of `backend` with `idle[0..n)` and then the ready fd registered:
 * a fresh selector, registered, timed and closed. A backend that refuses a
 * registration (select at FD_SETSIZE) gives `{ error }` with its message.
 */
export function sampleBackend(
  backend: BackendName,
  fds: FdSet,
  n: number,
  timing: Timing,
): Sample {
  if (n > fds.idle.length) throw new RangeError(`Asked for ${n} idle fds, the set has ${fds.idle.length}`);
  const sel = createSelector<null>(backend);
  try {
    try {
      for (let i = 0; i < n; i++) sel.register(fds.idle[i], EVENT_READ, null);
      sel.register(fds.ready, EVENT_READ, null);
    } catch (err) {
      return { error: `${(err as Error).name}: ${(err as Error).message}` };
    }
    return timeSelect(sel, timing);
  } finally {
    sel.close();
  }
}

/**
 * The median over rounds of `b ÷ a` within each round: steadier than the ratio of
 * two medians on a shared machine, where a disturbance hits both sides of one
 * round alike (both were measured seconds apart).
 */
export function roundRatio(a: Pick<Point, "rounds">, b: Pick<Point, "rounds">): number {
  const k = Math.min(a.rounds.length, b.rounds.length);
  if (k === 0) throw new RangeError("No common round to compare");
  const ratios: number[] = [];
  for (let i = 0; i < k; i++) ratios.push(b.rounds[i] / a.rounds[i]);
  return median(ratios);
}

// ---------------------------------------------------------------- results

/** One point of a series: the median and range over rounds. */
export interface Point {
  /** Registered idle fds (the ready fd comes on top). */
  n: number;
  /** Median ns per call. */
  ns: number;
  /** Fastest round. */
  min: number;
  /** Slowest round. */
  max: number;
  /** Every round's ns per call, in round order. */
  rounds: number[];
}

/** One line of the chart: an implementation's mechanism across N. */
export interface Series {
  /** `"fdloop"` (solid line) or `"CPython"` (dashed). */
  impl: "fdloop" | "CPython";
  /** The mechanism; one colour per mechanism. */
  mechanism: BackendName;
  /** Points in increasing N. */
  points: Point[];
  /** Where the series ends early and why (select at FD_SETSIZE). */
  stopped?: { n: number; error: string };
}

/** What {@linkcode renderScalingSvg} draws. */
export interface ChartInput {
  /** The lines. Points need only `n` and `ns`. */
  series: { impl: Series["impl"]; mechanism: BackendName; points: { n: number; ns: number }[] }[];
  /** A second title line (machine, date). */
  subtitle?: string;
  /** Draws the FD_SETSIZE marker at this N when a series stopped there (default 1024). */
  fdSetSize?: number;
}

// ---------------------------------------------------------------- the chart

const COLOURS: Record<BackendName, string> = { epoll: "#1b7837", poll: "#2166ac", select: "#b2182b" };
const CPYTHON_NAMES: Record<BackendName, string> = {
  epoll: "EpollSelector",
  poll: "PollSelector",
  select: "SelectSelector",
};

/** The label of a series in the legend and the table. */
export function seriesLabel(impl: Series["impl"], mechanism: BackendName): string {
  return impl === "fdloop" ? `fdloop ${mechanism}` : `CPython ${CPYTHON_NAMES[mechanism]}`;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function decadeLabel(ns: number): string {
  return ns >= 1e6 ? `${ns / 1e6} ms` : ns >= 1e3 ? `${ns / 1e3} µs` : `${ns} ns`;
}

/**
 * Draws the scaling chart as a standalone SVG document: log-log axes (N on
 * x, ns per call on y) with tick labels, one solid line per fdloop backend
 * and one dashed line per CPython selector (one colour per mechanism), point
 * markers with tooltips, a legend, a title, and a marker at FD_SETSIZE when a
 * series stops there. Pure: the same input gives the same text.
 *
 * @param input The series to draw (points with `n > 0`, `ns > 0`).
 * @returns The SVG text.
 * @throws {RangeError} when there is no point to draw.
 */
export function renderScalingSvg(input: ChartInput): string {
  const W = 860, H = 500;
  const left = 78, right = 640, top = 70, bottom = 430;
  const series = input.series.filter((s) => s.points.length > 0);
  const pts = series.flatMap((s) => s.points);
  if (pts.length === 0) throw new RangeError("Nothing to draw: no series has a point");
  for (const p of pts) {
    if (!(p.n > 0 && p.ns > 0 && Number.isFinite(p.ns))) throw new RangeError(`Cannot plot n=${p.n}, ns=${p.ns}`);
  }
  const nMin = Math.min(...pts.map((p) => p.n)), nMax = Math.max(...pts.map((p) => p.n));
  const x0 = Math.log2(nMin) - 0.4, x1 = Math.log2(Math.max(nMax, nMin * 2)) + 0.4;
  const y0 = Math.floor(Math.log10(Math.min(...pts.map((p) => p.ns)))),
    y1Raw = Math.log10(Math.max(...pts.map((p) => p.ns)));
  const y1 = Math.max(Math.ceil(y1Raw), y0 + 1);
  const X = (n: number) => left + (Math.log2(n) - x0) / (x1 - x0) * (right - left);
  const Y = (ns: number) => bottom - (Math.log10(ns) - y0) / (y1 - y0) * (bottom - top);
  const f = (v: number) => v.toFixed(1);
  const out: string[] = [];
  out.push(
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="26" text-anchor="middle" font-size="16" font-weight="bold">` +
      `Cost of one select(0) with 1 ready fd among N idle fds (log–log)</text>`,
  );
  if (input.subtitle) {
    out.push(`<text x="${W / 2}" y="46" text-anchor="middle" fill="#555">${escapeXml(input.subtitle)}</text>`);
  }
  // Grid and y ticks: decades labelled, 2× and 5× as faint lines.
  out.push(`<g class="grid" stroke="#e4e4e4" stroke-width="1">`);
  for (let d = y0; d < y1; d++) {
    for (const m of [2, 5]) {
      out.push(
        `<line x1="${left}" x2="${right}" y1="${f(Y(m * 10 ** d))}" y2="${f(Y(m * 10 ** d))}" stroke="#f2f2f2"/>`,
      );
    }
  }
  for (let d = y0; d <= y1; d++) {
    out.push(`<line x1="${left}" x2="${right}" y1="${f(Y(10 ** d))}" y2="${f(Y(10 ** d))}"/>`);
  }
  const xTicks: number[] = [];
  for (let e = Math.ceil(x0); e <= Math.floor(x1); e++) if (e % 2 === 0 || x1 - x0 < 8) xTicks.push(2 ** e);
  for (const n of xTicks) out.push(`<line x1="${f(X(n))}" x2="${f(X(n))}" y1="${top}" y2="${bottom}"/>`);
  out.push(`</g>`);
  // Axes, tick labels, axis titles.
  out.push(
    `<g class="axes" stroke="#333" stroke-width="1.2">`,
    `<line x1="${left}" x2="${right}" y1="${bottom}" y2="${bottom}"/>`,
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${bottom}"/>`,
    `</g>`,
    `<g class="ticks" fill="#333">`,
  );
  for (let d = y0; d <= y1; d++) {
    out.push(`<text x="${left - 8}" y="${f(Y(10 ** d) + 4)}" text-anchor="end">${decadeLabel(10 ** d)}</text>`);
  }
  for (const n of xTicks) out.push(`<text x="${f(X(n))}" y="${bottom + 18}" text-anchor="middle">${n}</text>`);
  out.push(
    `</g>`,
    `<text class="axis-label" x="${(left + right) / 2}" y="${bottom + 42}" text-anchor="middle" font-size="13">` +
      `N: registered idle fds (log scale)</text>`,
    `<text class="axis-label" transform="translate(20 ${(top + bottom) / 2}) rotate(-90)" text-anchor="middle" ` +
      `font-size="13">time per select(0) call (log scale)</text>`,
  );
  // FD_SETSIZE: where select stops.
  const fdSetSize = input.fdSetSize ?? FD_SETSIZE;
  if (fdSetSize > nMin && fdSetSize <= nMax * 2) {
    const x = f(X(fdSetSize));
    out.push(
      `<line class="fd-setsize" x1="${x}" x2="${x}" y1="${top}" y2="${bottom}" stroke="#b2182b" stroke-width="1" stroke-dasharray="2 3" opacity="0.7"/>`,
      `<text x="${f(X(fdSetSize) + 4)}" y="${top + 12}" fill="#b2182b" font-size="11">FD_SETSIZE ${fdSetSize}:</text>`,
      `<text x="${f(X(fdSetSize) + 4)}" y="${top + 25}" fill="#b2182b" font-size="11">select stops</text>`,
    );
  }
  // The lines, then the markers on top.
  for (const s of series) {
    const colour = COLOURS[s.mechanism];
    const dash = s.impl === "CPython" ? ` stroke-dasharray="7 4"` : "";
    const d = s.points.map((p, i) => `${i === 0 ? "M" : "L"}${f(X(p.n))},${f(Y(p.ns))}`).join(" ");
    out.push(
      `<path class="series ${s.impl} ${s.mechanism}" d="${d}" fill="none" stroke="${colour}" stroke-width="2.2"${dash}/>`,
    );
  }
  for (const s of series) {
    const colour = COLOURS[s.mechanism];
    const label = escapeXml(seriesLabel(s.impl, s.mechanism));
    for (const p of s.points) {
      const tip = `<title>${label}, N=${p.n}: ${formatNs(p.ns)}</title>`;
      out.push(
        s.impl === "fdloop"
          ? `<circle class="marker" cx="${f(X(p.n))}" cy="${f(Y(p.ns))}" r="4" fill="${colour}">${tip}</circle>`
          : `<rect class="marker" x="${f(X(p.n) - 3.5)}" y="${f(Y(p.ns) - 3.5)}" width="7" height="7" fill="#fff" ` +
            `stroke="${colour}" stroke-width="1.8">${tip}</rect>`,
      );
    }
  }
  // Legend.
  const lx = right + 24;
  out.push(`<g class="legend">`);
  series.forEach((s, i) => {
    const y = top + 10 + i * 24;
    const colour = COLOURS[s.mechanism];
    const dash = s.impl === "CPython" ? ` stroke-dasharray="7 4"` : "";
    const marker = s.impl === "fdloop"
      ? `<circle cx="${lx + 15}" cy="${y}" r="4" fill="${colour}"/>`
      : `<rect x="${lx + 11.5}" y="${
        y - 3.5
      }" width="7" height="7" fill="#fff" stroke="${colour}" stroke-width="1.8"/>`;
    out.push(
      `<line x1="${lx}" x2="${lx + 30}" y1="${y}" y2="${y}" stroke="${colour}" stroke-width="2.2"${dash}/>`,
      marker,
      `<text x="${lx + 38}" y="${y + 4}">${escapeXml(seriesLabel(s.impl, s.mechanism))}</text>`,
    );
  });
  const ny = top + 10 + series.length * 24 + 8;
  out.push(
    `<text x="${lx}" y="${ny}" fill="#555" font-size="11">solid: fdloop (Deno FFI)</text>`,
    `<text x="${lx}" y="${ny + 15}" fill="#555" font-size="11">dashed: CPython selectors</text>`,
    `</g>`,
    `</svg>`,
    ``,
  );
  return out.join("\n");
}

// ---------------------------------------------------------------- the run

interface Options {
  rounds: number;
  sizes: number[];
  timing: Timing;
  python: boolean;
  json: string;
  svg: string;
}

const HELP = `deno task bench:scaling [options]

Measures one select(0) call with 1 ready fd among N idle fds, per fdloop backend
(epoll, poll, select) and per CPython selector, and writes a table, a JSON file
and an SVG chart.

Options:
  --rounds=R      rounds per (backend, N); the median is reported (default 21)
  --sizes=A,B,..  N values (default ${SIZES.join(",")})
  --sample-ms=T   length of one sample in ms (default ${DEFAULT_TIMING.sampleMs})
  --warmup-ms=T   untimed calls before each sample, in ms (default ${DEFAULT_TIMING.warmupMs})
  --no-python     skip CPython
  --json=PATH     results file (default bench/results/scaling.json)
  --svg=PATH      chart file (default bench/scaling.svg)
  --help          this text`;

function parseArgs(args: string[]): Options {
  const o: Options = {
    rounds: 21,
    sizes: [...SIZES],
    timing: { ...DEFAULT_TIMING },
    python: true,
    json: new URL("./results/scaling.json", import.meta.url).pathname,
    svg: new URL("./scaling.svg", import.meta.url).pathname,
  };
  for (const a of args) {
    const [k, v] = a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a, ""];
    const int = () => {
      const x = Number(v);
      if (!Number.isInteger(x) || x < 1) throw new Error(`${k} needs a positive integer, got ${JSON.stringify(v)}`);
      return x;
    };
    if (k === "--help" || k === "-h") {
      console.log(HELP);
      Deno.exit(0);
    } else if (k === "--rounds") o.rounds = int();
    else if (k === "--sample-ms") o.timing.sampleMs = int();
    else if (k === "--warmup-ms") o.timing.warmupMs = int();
    else if (k === "--no-python") o.python = false;
    else if (k === "--json") o.json = v;
    else if (k === "--svg") o.svg = v;
    else if (k === "--sizes") {
      o.sizes = v.split(",").map(Number);
      if (o.sizes.some((n) => !Number.isInteger(n) || n < 2 || n % 2)) {
        throw new Error(`--sizes needs even integers ≥ 2, got ${v}`);
      }
      o.sizes.sort((a, b) => a - b);
    } else throw new Error(`Unknown option ${a}; see --help`);
  }
  return o;
}

/** Open descriptors, by probing numbers below the soft limit (no /proc permission needed). */
function openFdCount(limit: number): number {
  let n = 0;
  for (let fd = 0; fd < Math.min(limit, 65536); fd++) if (sym.fcntl(fd, F_GETFD, 0) >= 0) n++;
  return n;
}

/** Raises the soft fd limit for `needed` more fds where the hard limit allows; returns what it did and how many fit. */
function ensureFdLimit(needed: number): { before: ResourceLimit; after: ResourceLimit; message: string; fit: number } {
  const before = getRlimit(RLIMIT_NOFILE);
  const inUse = openFdCount(before.soft);
  const margin = 32;
  const want = inUse + needed + margin;
  let after = before;
  let message: string;
  if (before.soft >= want) {
    message = `RLIMIT_NOFILE soft ${before.soft} (hard ${before.hard}): enough for ${needed} fds, not changed`;
    if (before.soft === before.hard) message += " (Deno raises the soft limit to the hard one at startup)";
  } else if (before.soft >= before.hard) {
    message = `RLIMIT_NOFILE soft ${before.soft} is already the hard limit: cannot raise it`;
  } else {
    const target = Math.min(before.hard, want);
    setRlimit(RLIMIT_NOFILE, { soft: target, hard: before.hard });
    after = getRlimit(RLIMIT_NOFILE);
    message = `RLIMIT_NOFILE soft ${before.soft} → ${after.soft} (hard ${after.hard})`;
  }
  const fit = Math.min(needed, after.soft - inUse - margin);
  if (fit < needed) message += `; the hard limit leaves room for ${fit} of the ${needed} fds wanted`;
  return { before, after, message, fit };
}

interface PythonRound {
  python: string;
  rlimit: { before: ResourceLimit; after: ResourceLimit };
  results: Record<BackendName, Record<string, number[]>>;
  stopped: Partial<Record<BackendName, { n: number; error: string }>>;
}

async function runPython(
  python: string,
  sizes: number[],
  timing: Timing,
): Promise<PythonRound> {
  const script = new URL("./scaling_selectors.py", import.meta.url).pathname;
  const out = await new Deno.Command(python, {
    args: [
      script,
      `--sizes=${sizes}`,
      `--sample-ms=${timing.sampleMs}`,
      `--warmup-ms=${timing.warmupMs}`,
      "--rounds=1",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  if (out.code !== 0) {
    throw new Error(`${python} ${script} exited with ${out.code}: ${text.decode(out.stderr)}`);
  }
  return JSON.parse(text.decode(out.stdout));
}

/** The terminal table: per N, ns per call of each series, then CPython ÷ fdloop per mechanism; growth last. */
export function formatTable(series: Series[], sizes: readonly number[]): string {
  const find = (impl: Series["impl"], mech: BackendName) => series.find((s) => s.impl === impl && s.mechanism === mech);
  const cell = (impl: Series["impl"], mech: BackendName, n: number) => find(impl, mech)?.points.find((p) => p.n === n);
  const impls = (["fdloop", "CPython"] as const).filter((i) => series.some((s) => s.impl === i));
  const both = impls.length === 2;
  const W = 10, NW = 7, GAP = "  ";
  const title = (impl: Series["impl"], m: BackendName) => impl === "fdloop" ? m : m[0].toUpperCase() + m.slice(1);
  const group = (text: string) => GAP + text + " ".repeat(Math.max(0, 3 * W - text.length));
  const lines: string[] = [];
  lines.push(paint(
    "bold",
    pad("", NW) + impls.map((i) => group(i === "fdloop" ? "fdloop (Deno FFI)" : "CPython selectors")).join("") +
      (both ? group("CPython ÷ fdloop") : ""),
  ));
  lines.push(paint(
    "bold",
    pad("N", NW) + impls.map((i) => GAP + MECHANISMS.map((m) => pad(title(i, m), W)).join("")).join("") +
      (both ? GAP + MECHANISMS.map((m) => pad(m, W)).join("") : ""),
  ));
  for (const n of sizes) {
    let row = pad(String(n), NW);
    for (const impl of impls) {
      row += GAP;
      for (const m of MECHANISMS) {
        const p = cell(impl, m, n);
        row += pad(p ? (impl === "fdloop" ? paint("cyan", formatNs(p.ns)) : formatNs(p.ns)) : paint("dim", "—"), W);
      }
    }
    if (both) {
      row += GAP;
      for (const m of MECHANISMS) {
        const a = cell("fdloop", m, n), b = cell("CPython", m, n);
        const r = a && b ? roundRatio(a, b) : null;
        row += pad(r === null ? paint("dim", "—") : paint(r >= 1 ? "green" : "red", `${r.toFixed(2)}×`), W);
      }
    }
    lines.push(row);
  }
  let growth = pad("growth", NW);
  for (const impl of impls) {
    growth += GAP;
    for (const m of MECHANISMS) {
      const pts = find(impl, m)?.points ?? [];
      const g = pts.length > 1 ? roundRatio(pts[0], pts[pts.length - 1]) : null;
      growth += pad(g === null ? "—" : `${g >= 100 ? g.toFixed(0) : g.toFixed(2)}×`, W);
    }
  }
  lines.push(paint("dim", growth));
  lines.push(paint(
    "dim",
    "times: median over rounds; ratios and growth (last N ÷ first N): median of the per-round ratios; " +
      "CPython ÷ fdloop > 1: fdloop is faster",
  ));
  return lines.join("\n");
}

async function main(): Promise<void> {
  const o = parseArgs(Deno.args);
  const meta = runMeta();
  const m = meta.machine;
  const progress = new Progress("scaling");
  const python = o.python ? which("python3") : null;
  if (o.python && !python) console.log("note: python3 is not on PATH: the CPython columns are skipped");

  // fds: the largest N, plus the ready pair.
  const wantMax = o.sizes.at(-1)!;
  const limit = ensureFdLimit(wantMax + 2);
  console.log(limit.message);
  let sizes = o.sizes;
  let capNote: string | undefined;
  if (limit.fit < wantMax + 2) {
    const cap = Math.max(2, (limit.fit - 2) & ~1);
    capNote = `the fd limit (hard ${limit.after.hard}) leaves room for ${cap} idle fds: ` +
      `sizes above ${cap} are measured at N = ${cap}`;
    console.log(`note: ${capNote}`);
    sizes = [...new Set(o.sizes.map((n) => Math.min(n, cap)))];
  }

  progress.step(`opening ${sizes.at(-1)! + 2} fds (${sizes.at(-1)! / 2 + 1} socketpairs)`);
  const fds = openFdSet(sizes.at(-1)!);
  console.log(
    `fds: ready ${fds.ready}, idle ${fds.idle[0]}…${fds.idle.at(-1)} (both ends of ${fds.idle.length / 2} socketpairs)`,
  );

  const fd: Record<BackendName, Record<number, number[]>> = { epoll: {}, poll: {}, select: {} };
  const py: Record<BackendName, Record<number, number[]>> = { epoll: {}, poll: {}, select: {} };
  const calls: Record<BackendName, Record<number, number[]>> = { epoll: {}, poll: {}, select: {} };
  const fdStopped: Partial<Record<BackendName, { n: number; error: string }>> = {};
  let pyStopped: PythonRound["stopped"] = {};
  let pyVersion: string | null = null;
  let pyRlimit: PythonRound["rlimit"] | null = null;
  const started = performance.now();
  const loadBefore = loadAverage();
  try {
    // The first ~200 calls of each FFI symbol are slow: warm every backend's wait up once.
    progress.step("warming up every backend (50 ms each at the smallest N)");
    for (const b of MECHANISMS) sampleBackend(b, fds, sizes[0], { warmupMs: 40, sampleMs: 10 });

    for (let r = 0; r < o.rounds; r++) {
      // Rotate the backends and alternate the direction of N, so no size is always measured first.
      const order = MECHANISMS.map((_, i) => MECHANISMS[(i + r) % MECHANISMS.length]);
      const idx = sizes.map((_, i) => (r % 2 ? sizes.length - 1 - i : i));
      progress.round(r + 1, o.rounds, `fdloop ${order.join(", ")} at N = ${idx.map((i) => sizes[i]).join(", ")}`);
      // Caches and branch predictors went cold while python3 ran: a short untimed pass first.
      if (r > 0) { for (const b of MECHANISMS) sampleBackend(b, fds, sizes[0], { warmupMs: 2, sampleMs: 1 }); }
      for (const i of idx) {
        for (const b of order) {
          const stop = fdStopped[b];
          if (stop && sizes[i] >= stop.n) continue; // refused at a smaller N already
          const s = sampleBackend(b, fds, sizes[i], o.timing);
          if ("error" in s) fdStopped[b] = { n: sizes[i], error: s.error };
          else {
            (fd[b][sizes[i]] ??= []).push(s.ns);
            (calls[b][sizes[i]] ??= []).push(s.calls);
          }
        }
      }
      if (python) {
        progress.round(r + 1, o.rounds, `CPython (${python} bench/scaling_selectors.py)`);
        const res = await runPython(python, sizes, o.timing);
        pyVersion = res.python;
        pyRlimit = res.rlimit;
        pyStopped = res.stopped;
        for (const b of MECHANISMS) {
          for (const [n, xs] of Object.entries(res.results[b] ?? {})) (py[b][Number(n)] ??= []).push(...xs);
        }
      }
    }
  } finally {
    fds.close();
  }
  const seconds = (performance.now() - started) / 1000;

  const toSeries = (
    impl: Series["impl"],
    data: Record<BackendName, Record<number, number[]>>,
    stopped: Partial<Record<BackendName, { n: number; error: string }>>,
  ): Series[] =>
    MECHANISMS.map((mechanism) => ({
      impl,
      mechanism,
      points: sizes.filter((n) => data[mechanism][n]?.length).map((n) => {
        const xs = data[mechanism][n];
        return { n, ns: median(xs), min: Math.min(...xs), max: Math.max(...xs), rounds: xs };
      }),
      ...(stopped[mechanism] ? { stopped: stopped[mechanism] } : {}),
    }));
  const series = [...toSeries("fdloop", fd, fdStopped), ...(python ? toSeries("CPython", py, pyStopped) : [])];
  for (const s of series) {
    for (const p of s.points) {
      if (p.rounds.length !== o.rounds) {
        throw new Error(
          `${seriesLabel(s.impl, s.mechanism)} at N = ${p.n} has ${p.rounds.length} of ${o.rounds} rounds`,
        );
      }
    }
  }

  // Terminal report.
  console.log();
  console.log(
    paint("bold", `select(0) with 1 ready fd among N idle fds: median of ${o.rounds} rounds (${seconds.toFixed(0)} s)`),
  );
  console.log(formatTable(series, sizes));
  console.log();
  for (const s of series) {
    if (s.stopped) {
      console.log(
        `${seriesLabel(s.impl, s.mechanism)} stops at N = ${s.stopped.n} (FD_SETSIZE is ${FD_SETSIZE}: ` +
          `fds ≥ ${FD_SETSIZE} cannot be watched): ${paint("yellow", JSON.stringify(s.stopped.error))}`,
      );
    }
  }
  const fe = series.find((s) => s.impl === "fdloop" && s.mechanism === "epoll")!;
  const ce = series.find((s) => s.impl === "CPython" && s.mechanism === "epoll");
  const first = fe.points[0], last = fe.points.at(-1)!;
  const flat = roundRatio(first, last);
  const flatOfMedians = last.ns / first.ns;
  const ok = (b: boolean) => (b ? paint("green", "yes") : paint("red", "no"));
  console.log(
    `goal: fdloop epoll flat (≤ 1.2× from N = ${first.n} to ${last.n}): ${flat.toFixed(2)}× ` +
      `(ratio of medians ${flatOfMedians.toFixed(2)}×, of fastest rounds ${(last.min / first.min).toFixed(2)}×) → ` +
      ok(flat <= 1.2 && flatOfMedians <= 1.2),
  );
  let below: boolean | null = null;
  if (ce) {
    below = fe.points.every((p) => {
      const c = ce.points.find((q) => q.n === p.n);
      return c !== undefined && p.ns < c.ns && roundRatio(p, c) > 1;
    });
    console.log(`goal: fdloop epoll below CPython EpollSelector at every N (medians and per-round) → ${ok(below)}`);
  }
  const loadAfter = loadAverage();
  console.log(paint("dim", `load average before ${loadBefore}, after ${loadAfter} (a shared machine is noisy)`));

  // JSON and SVG.
  const results = {
    ...meta,
    task: "deno task bench:scaling",
    // The Python that ran the CPython side (null with --no-python).
    versions: { ...meta.versions, python: pyVersion },
    settings: {
      rounds: o.rounds,
      sizes,
      requestedSizes: o.sizes,
      sampleMs: o.timing.sampleMs,
      warmupMs: o.timing.warmupMs,
      calls: Object.fromEntries(
        MECHANISMS.map((b) => [b, Object.fromEntries(Object.entries(calls[b]).map(([n, xs]) => [n, median(xs)]))]),
      ),
      method: "N idle fds = both ends of N/2 AF_UNIX socketpairs, plus 1 ready fd (a socketpair end holding 1 " +
        "unread byte) registered last; each sample registers on a fresh selector, calls select(0) for warmupMs, " +
        "then times as many calls as take sampleMs at the warm-up's rate (calls: fdloop's median count per sample); " +
        "rounds alternate fdloop and CPython, rotate fdloop's backend order and alternate the direction of N; " +
        "median over rounds",
      rlimit: {
        fdloop: { before: limit.before, after: limit.after, message: limit.message },
        cpython: pyRlimit,
        ...(capNote ? { capped: capNote } : {}),
      },
      seconds,
    },
    results: series,
    loadAverage: { before: loadBefore, after: loadAfter },
    summary: {
      note: "growth: last N ÷ first N; cpythonOverFdloop: CPython ÷ fdloop per N; both as the median of " +
        "per-round ratios (and, for growth, the ratio of medians)",
      fdloopEpollFlat: flat <= 1.2 && flatOfMedians <= 1.2,
      fdloopEpollBelowCPythonEverywhere: below,
      growth: Object.fromEntries(
        series.filter((x) => x.points.length > 1).map((x) => [
          seriesLabel(x.impl, x.mechanism),
          {
            from: x.points[0].n,
            to: x.points.at(-1)!.n,
            perRound: roundRatio(x.points[0], x.points.at(-1)!),
            ofMedians: x.points.at(-1)!.ns / x.points[0].ns,
          },
        ]),
      ),
      cpythonOverFdloop: Object.fromEntries(MECHANISMS.map((mech) => {
        const a = series.find((x) => x.impl === "fdloop" && x.mechanism === mech);
        const b = series.find((x) => x.impl === "CPython" && x.mechanism === mech);
        const per: Record<number, number> = {};
        for (const p of a?.points ?? []) {
          const q = b?.points.find((y) => y.n === p.n);
          if (q) per[p.n] = roundRatio(p, q);
        }
        return [mech, per];
      })),
    },
  };
  await writeResults(o.json, results);
  const day = results.date.slice(0, 10);
  const svg = renderScalingSvg({
    series,
    subtitle:
      `median of ${o.rounds} round${o.rounds === 1 ? "" : "s"} · ${m.cpu}, ${m.cores} cores, Linux ${m.kernel} · ` +
      `Deno ${Deno.version.deno}${pyVersion ? `, Python ${pyVersion}` : ""} · ${day}`,
  });
  Deno.writeTextFileSync(o.svg, svg);
  console.log(`wrote ${o.json} and ${o.svg}`);
}

if (import.meta.main) await main();
