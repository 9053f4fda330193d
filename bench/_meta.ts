/**
 * What every benchmark script shares: the run metadata its JSON carries
 * ({@linkcode runMeta}: date, exact command, machine, tool versions), progress
 * lines on stderr ({@linkcode Progress}), colour that only reaches a terminal
 * ({@linkcode paint}, `NO_COLOR` respected) and a padded Markdown table that
 * can be coloured ({@linkcode markdownTable}).
 *
 * Reading `/proc` needs `--allow-all` under Deno; without it the machine
 * fields fall back to `uname` (with `--allow-run`) or `"unknown"`, and the
 * command line is rebuilt from `Deno.mainModule` and `Deno.args`.
 *
 * @module
 */

import { styleText } from "node:util";

/** The repository root (this file sits in `bench/`). */
export const ROOT: URL = new URL("../", import.meta.url);

// ---------------------------------------------------------------- running things

/** stdout and stderr of `cmd args`, trimmed; `""` if it cannot run (missing, or no `--allow-run`). */
export function commandOutput(cmd: string, args: string[]): string {
  try {
    const out = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).outputSync();
    return (new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr)).trim();
  } catch {
    return "";
  }
}

/** The path of `name` on `PATH`, or `null`. */
export function which(name: string): string | null {
  let path = "";
  try {
    path = Deno.env.get("PATH") ?? "";
  } catch { /* no --allow-env */ }
  for (const dir of path.split(":")) {
    if (!dir) continue;
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch { /* not here */ }
  }
  return null;
}

/** A file's text, or `""` when it cannot be read (missing, or `/proc` without `--allow-all`). */
export function readText(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/** The 1, 5 and 15 minute load averages, as `/proc/loadavg` prints them. */
export function loadAverage(): string {
  return readText("/proc/loadavg").split(" ").slice(0, 3).join(" ") || "unknown";
}

// ---------------------------------------------------------------- metadata

/** The machine a benchmark ran on. */
export interface Machine {
  /** CPU model name from `/proc/cpuinfo`. */
  cpu: string;
  /** Logical CPUs. */
  cores: number;
  /** Kernel release (`uname -r`). */
  kernel: string;
}

/** Versions of the tools a benchmark ran with; `null` where the tool is missing. */
export interface Versions {
  deno: string;
  v8: string;
  node: string | null;
  python: string | null;
  wrk: string | null;
  cc: string | null;
}

/** The metadata every benchmark JSON file starts with. */
export interface RunMeta {
  /** ISO 8601 time the results were taken. */
  date: string;
  /** The command that reproduces the run, from the repository root. */
  command: string;
  machine: Machine;
  versions: Versions;
}

/** CPU model, logical cores and kernel release of this machine. */
export function machine(): Machine {
  let cpu = /^model name\s*:\s*(.*)$/m.exec(readText("/proc/cpuinfo"))?.[1]?.trim();
  cpu ||= /^Model name:\s*(.*)$/m.exec(commandOutput("lscpu", []))?.[1]?.trim();
  const kernel = readText("/proc/sys/kernel/osrelease").trim() || commandOutput("uname", ["-r"]);
  // navigator.hardwareConcurrency counts the CPUs this process may run on: 1 under `taskset -c 1`.
  const cores = readText("/proc/cpuinfo").match(/^processor\s*:/gm)?.length || navigator.hardwareConcurrency;
  return { cpu: cpu || "unknown", cores, kernel: kernel || "unknown" };
}

/** The CPUs this process is pinned to (`taskset -c` list), or `null` when it may run on every online CPU. */
export function pinnedCpus(): string | null {
  const allowed = /^Cpus_allowed_list:\s*(\S+)/m.exec(readText("/proc/self/status"))?.[1];
  const online = readText("/sys/devices/system/cpu/online").trim();
  return allowed && online && allowed !== online ? allowed : null;
}

/** The first `x.y[.z…]`-looking token of a `--version` output (keeping a `debian/` style prefix), or `null`. */
export function versionOf(output: string): string | null {
  if (!output) return null;
  return /[\w/]*?v?(\d+\.\d+[\w.+~-]*)/.exec(output.split("\n")[0])?.[0].replace(/^v(?=\d)/, "") ?? null;
}

/** Deno and V8 from the runtime; Node, Python, wrk and cc from their `--version` where they are installed. */
export function versions(): Versions {
  return {
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    node: versionOf(commandOutput("node", ["--version"])),
    python: versionOf(commandOutput("python3", ["--version"])),
    wrk: versionOf(commandOutput("wrk", ["-v"]).replace(/^wrk\s+/, "")),
    cc: ccVersion(),
  };
}

function ccVersion(): string | null {
  // "cc (Debian 12.2.0-14+deb12u1) 12.2.0" → "gcc 12.2.0"; clang prints "… clang version 16.0.6 …".
  const first = commandOutput("cc", ["--version"]).split("\n")[0];
  if (!first) return null;
  const clang = /clang version (\S+)/.exec(first);
  if (clang) return `clang ${clang[1]}`;
  const last = /(\d+\.\d+[\w.]*)\s*$/.exec(first);
  return last ? `gcc ${last[1]}` : first;
}

/** Quotes an argument for a POSIX shell when it needs it. */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** A path relative to the repository root when it lies inside it. */
function fromRoot(path: string): string {
  const root = ROOT.pathname;
  return path.startsWith(root) ? path.slice(root.length) : path;
}

/**
 * The command line this process was started with, as one would type it from
 * the repository root: `deno` for the executable, the main module relative to
 * the root, every flag and argument as given (`/proc/self/cmdline`). Without
 * `/proc` access it is rebuilt as `deno run -A <main module> <args>`. A
 * process pinned to some CPUs (`taskset`) gets the `taskset -c LIST` prefix.
 */
export function commandLine(): string {
  const main = Deno.mainModule.startsWith("file:") ? new URL(Deno.mainModule).pathname : Deno.mainModule;
  const argv = readText("/proc/self/cmdline").split("\0");
  if (argv.at(-1) === "") argv.pop();
  if (argv.length < 2) return ["deno", "run", "-A", fromRoot(main), ...Deno.args].map(shellQuote).join(" ");
  let cwd = "";
  try {
    cwd = Deno.cwd();
  } catch { /* no --allow-read */ }
  const cpus = pinnedCpus();
  const words = argv.map((arg, i) => {
    if (i === 0) return /(^|\/)deno$/.test(arg) || arg === Deno.execPath() ? "deno" : arg;
    const abs = arg.startsWith("/") ? arg : cwd ? `${cwd}/${arg}`.replace(/\/\.\//g, "/") : "";
    return abs === main ? fromRoot(main) : arg;
  });
  return [...(cpus ? ["taskset", "-c", cpus] : []), ...words].map(shellQuote).join(" ");
}

/** The metadata of this run: now, the command line, the machine and the tool versions. */
export function runMeta(): RunMeta {
  return { date: new Date().toISOString(), command: commandLine(), machine: machine(), versions: versions() };
}

// ---------------------------------------------------------------- colour

/** A `node:util` `styleText` format (a colour or a modifier such as `"bold"`). */
export type Style = Parameters<typeof styleText>[0];

/** Whether text for `stream` may be coloured: it is a terminal and `NO_COLOR` is not set. */
export function colourFor(stream: { isTerminal(): boolean } = Deno.stdout): boolean {
  return !Deno.noColor && stream.isTerminal();
}

const stdoutColour = colourFor(Deno.stdout);
const stderrColour = colourFor(Deno.stderr);

/** `text` styled when `colour` (by default: stdout is a terminal and `NO_COLOR` is unset), else unchanged. */
export function paint(style: Style, text: string, colour: boolean = stdoutColour): string {
  return colour && text ? styleText(style, text, { validateStream: false }) : text;
}

/** `text` without ANSI colour escapes. */
export function stripColour(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, "");
}

/** `s` padded to `width` visible characters (colour escapes do not count), on the left when `right`. */
export function pad(s: string, width: number, right = true): string {
  const fill = " ".repeat(Math.max(0, width - stripColour(s).length));
  return right ? fill + s : s + fill;
}

// ---------------------------------------------------------------- progress

/**
 * Progress lines on stderr (stdout stays for the results): `name [12s] text`,
 * the prefix dimmed on a terminal.
 */
export class Progress {
  readonly #name: string;
  readonly #t0 = performance.now();
  readonly #colour: boolean;
  readonly #write: (line: string) => void;

  /**
   * @param name Prefix of every line (the benchmark's name).
   * @param write Where lines go (default `console.error`).
   */
  constructor(name: string, write: (line: string) => void = console.error) {
    this.#name = name;
    this.#write = write;
    this.#colour = write === console.error && stderrColour;
  }

  /** Seconds since this object was made. */
  get seconds(): number {
    return (performance.now() - this.#t0) / 1000;
  }

  /** Reports what runs now. */
  step(text: string): void {
    this.#write(`${paint("dim", `${this.#name} [${this.seconds.toFixed(0)}s]`, this.#colour)} ${text}`);
  }

  /** Reports what runs now, in round `round` (from 1) of `rounds`. */
  round(round: number, rounds: number, text: string): void {
    this.step(`round ${round}/${rounds}: ${text}`);
  }
}

// ---------------------------------------------------------------- tables

/** A table column: its title and alignment (default left). */
export interface Column {
  title: string;
  align?: "left" | "right" | "center";
}

/** Columns: the `left` titles left-aligned (labels), then the `right` ones right-aligned (figures). */
export function columns(left: string[], right: string[] = []): Column[] {
  return [...left.map((title) => ({ title })), ...right.map((title) => ({ title, align: "right" as const }))];
}

/** A cell: its text, or its text and a style applied when colour is on. */
export type Cell = string | { text: string; style?: Style };

/**
 * A Markdown table with its columns padded to one width (as `deno fmt`
 * writes them), the header bold and the cells' styles applied when `colour`
 * (default: stdout is a terminal and `NO_COLOR` is unset). Without colour it
 * is plain Markdown to paste.
 */
export function markdownTable(columns: Column[], rows: Cell[][], colour: boolean = stdoutColour): string {
  const text = (c: Cell | undefined) => (c === undefined ? "" : typeof c === "string" ? c : c.text);
  const widths = columns.map((col, i) => Math.max(3, col.title.length, ...rows.map((r) => text(r[i]).length)));
  const fit = (s: string, i: number) => {
    const w = widths[i], fill = Math.max(0, w - s.length);
    const align = columns[i].align ?? "left";
    if (align === "right") return " ".repeat(fill) + s;
    if (align === "center") return " ".repeat(fill >> 1) + s + " ".repeat(fill - (fill >> 1));
    return s + " ".repeat(fill);
  };
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  const rule = columns.map((col, i) => {
    const a = col.align ?? "left";
    return a === "right" ? "-".repeat(widths[i] - 1) + ":" : a === "center" ? `:${"-".repeat(widths[i] - 2)}:` : "-"
      .repeat(widths[i]);
  });
  const out = [line(columns.map((c, i) => paint("bold", fit(c.title, i), colour))), line(rule)];
  for (const r of rows) {
    out.push(line(columns.map((_, i) => {
      const c = r[i];
      const s = fit(text(c), i);
      return typeof c === "object" && c.style ? paint(c.style, s, colour) : s;
    })));
  }
  return out.join("\n");
}

// ---------------------------------------------------------------- numbers

/** Median of a non-empty list. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Median, min and max of a non-empty list. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** The {@linkcode Spread} of a non-empty list. */
export function spreadOf(xs: readonly number[]): Spread {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

/** `1234` → `"1.23 µs"`, with up to three significant digits. */
export function formatNs(ns: number): string {
  const [v, unit] = ns >= 1e6 ? [ns / 1e6, "ms"] : ns >= 1e3 ? [ns / 1e3, "µs"] : [ns, "ns"];
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${unit}`;
}

/** A spread of ns in the median's unit: `229 (225–240) ns`. */
export function formatNsSpread(s: Spread): string {
  const [div, unit] = s.median >= 1e6 ? [1e6, "ms"] : s.median >= 1e3 ? [1e3, "µs"] : [1, "ns"];
  const v = s.median / div, d = v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${v.toFixed(d)} (${(s.min / div).toFixed(d)}–${(s.max / div).toFixed(d)}) ${unit}`;
}
