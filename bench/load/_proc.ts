/**
 * What the load benchmarks share (`run.ts`, `http_run.ts`, `idle_memory.ts`):
 * their command-line checks, compiling a C server for the run, child
 * processes read line by line ({@linkcode Proc}), pinning a process to a CPU
 * with `taskset`, and CPU time from `/proc`.
 *
 * Importing it runs `getconf` and `taskset` once (for {@linkcode CLK_TCK} and
 * {@linkcode haveTaskset}): it is for the load scripts, not for `deno bench`
 * files.
 *
 * @module
 */

import { commandOutput } from "../_meta.ts";

/** The repository root (this file sits in `bench/load/`). */
export const ROOT: URL = new URL("../../", import.meta.url);

/**
 * Clock ticks per second from `getconf CLK_TCK` text, or `null` when it is
 * not a positive integer (no `getconf`, or it failed).
 */
export function parseClkTck(text: string): number | null {
  const n = Number(text.trim());
  return /^\d+$/.test(text.trim()) && n > 0 ? n : null;
}

const clkTckRead = parseClkTck(commandOutput("getconf", ["CLK_TCK"]));
/** Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`; 100, Linux's USER_HZ, when it cannot be read). */
export const CLK_TCK: number = clkTckRead ?? 100;
/** `null` when {@linkcode CLK_TCK} was read from the system, else a note that it was assumed (for the results). */
export const clkTckNote: string | null = clkTckRead === null
  ? "`getconf CLK_TCK` gave no answer: /proc CPU times were read assuming 100 ticks per second"
  : null;
/** Whether `taskset` can pin processes here. */
export const haveTaskset: boolean = commandOutput("taskset", ["-c", "0", "echo", "ok"]) === "ok";
/** CPUs of the machine. */
export const cpus: number = navigator.hardwareConcurrency;

// ---------------------------------------------------------------- the command line

/**
 * Checks numeric flags, `[name, value, least, integer]` each; on the first
 * bad one prints `--name must be …` and exits 2.
 */
export function checkNumbers(flags: [string, number, number, boolean][]): void {
  for (const [name, v, min, integer] of flags) {
    if (!(v >= min) || (integer && !Number.isInteger(v))) {
      console.error(
        `--${name} must be ${integer ? "an integer" : "a number"} ≥ ${min}, got ${JSON.stringify(String(v))}`,
      );
      Deno.exit(2);
    }
  }
}

/** A comma-separated list, trimmed, empty items dropped. */
export function list(s: string): string[] {
  return s.split(",").map((x) => x.trim()).filter((x) => x);
}

/** Exits 2 with the known names when one of `names` is not a server of `servers`. */
export function checkServers(names: string[], servers: Record<string, unknown>): void {
  for (const n of names) {
    if (!(n in servers)) {
      console.error(`Unknown server ${JSON.stringify(n)}: use some of ${Object.keys(servers).join(", ")}`);
      Deno.exit(2);
    }
  }
}

/**
 * Compiles `bench/c/<name>.c` with `cc -O2` into a new temporary directory
 * (`prefix`: its name's start) and returns the binary's path, or `null`
 * when it cannot (no `cc`, or the build failed: the compiler's errors go to
 * stderr).
 */
export async function compileC(name: string, prefix: string): Promise<string | null> {
  const bin = `${await Deno.makeTempDir({ prefix })}/${name}`;
  const src = new URL(`bench/c/${name}.c`, ROOT).pathname;
  try {
    const out = await new Deno.Command("cc", { args: ["-O2", "-o", bin, src], stdout: "null", stderr: "inherit" })
      .output();
    return out.success ? bin : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- wrk

export interface WrkResult {
  /** Responses with a 2xx or 3xx status completed within wrk's window (what the rate and CPU are per). */
  requests: number;
  /** Every response wrk counted, the non-2xx/3xx ones included. */
  responses: number;
  seconds: number;
  rate: number;
  errors: number;
  non2xx: number;
}

/**
 * The figures of `wrk`'s report: wrk's "N requests" counts every completed
 * response, an error status included, so the non-2xx/3xx ones (wrk's
 * "Non-2xx or 3xx responses") are taken out of `requests`; socket errors
 * (connect, read, write, timeout) are summed into `errors`. `null` when the
 * text has no "N requests in T" line.
 */
export function parseWrk(text: string): WrkResult | null {
  const m = /(\d+) requests in ([\d.]+)(us|ms|s|m)\b/.exec(text);
  if (!m) return null;
  const unit = { us: 1e-6, ms: 1e-3, s: 1, m: 60 }[m[3] as "us" | "ms" | "s" | "m"];
  const responses = Number(m[1]);
  const seconds = Number(m[2]) * unit;
  const e = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const errors = e ? Number(e[1]) + Number(e[2]) + Number(e[3]) + Number(e[4]) : 0;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0);
  const requests = responses - non2xx;
  return { requests, responses, seconds, rate: requests / seconds, errors, non2xx };
}

// ---------------------------------------------------------------- processes

/** The CPU a process asked to run on `cpu` is pinned to: `cpu`, CPU 0 on a one-CPU machine, `null` without `taskset`. */
export function effectiveCpu(cpu: string): string | null {
  if (!haveTaskset) return null;
  return cpus < 2 ? "0" : cpu;
}

/** `argv` run on `cpu` (through `taskset` when it exists; CPU 0 on a one-CPU machine). */
export function pinned(cpu: string, argv: string[]): [string, string[]] {
  const on = effectiveCpu(cpu);
  if (on === null) return [argv[0], argv.slice(1)];
  return ["taskset", ["-c", on, ...argv]];
}

/** What a server prints once it listens: `listening on HOST:PORT`. */
export const LISTENING: RegExp = /^listening on (?:[\d.]+|\[[\da-f:]+\]):(\d+)$/;

/**
 * A child process (run from the repository root, pinned to a CPU, with
 * `NO_COLOR=1`) whose stdout is read line by line and whose stdin can be
 * written to.
 */
export class Proc {
  readonly name: string;
  readonly proc: Deno.ChildProcess;
  readonly done: Promise<Deno.CommandStatus>;
  stderr = "";
  /** The port from its `listening on` line, once {@linkcode Proc.listening} has read it. */
  port = 0;
  readonly #lines: string[] = [];
  #ended = false;
  #changed: (() => void) | null = null;
  #stdin: WritableStreamDefaultWriter<Uint8Array> | null = null;

  constructor(name: string, argv: string[], cpu: string, stdin = false) {
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

  /** Waits for the server's `listening on HOST:PORT` line and returns (and keeps) the port. */
  async listening(timeoutMs = 15_000): Promise<number> {
    const m = await this.expect(LISTENING, timeoutMs);
    return this.port = Number(m[1]);
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

// ---------------------------------------------------------------- /proc

/**
 * utime and stime, in clock ticks, of a `/proc/PID/stat` line (the whole
 * process: every thread, live or exited; not its waited-for children).
 */
export function parsePidStat(stat: string): { utime: number; stime: number } {
  // The command name may hold spaces and parentheses: fields start after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).trim().split(" ");
  // Fields 14 and 15 of proc(5) (utime, stime) are at 11 and 12 counting from field 3.
  const utime = Number(fields[11]), stime = Number(fields[12]);
  if (!Number.isInteger(utime) || !Number.isInteger(stime)) throw new Error(`not a /proc/PID/stat line: ${stat}`);
  return { utime, stime };
}

/** user and system CPU seconds of a whole process (every thread), from `/proc/PID/stat`. */
export function cpuTimes(pid: number): { user: number; sys: number } {
  const { utime, stime } = parsePidStat(Deno.readTextFileSync(`/proc/${pid}/stat`));
  return { user: utime / CLK_TCK, sys: stime / CLK_TCK };
}

/**
 * Busy clock ticks of a `cpu…` line of `/proc/stat`: user, nice, system, irq
 * and softirq. Not idle or iowait (the CPU had nothing to run), and not steal
 * (the hypervisor ran another guest on it: no work of this machine); guest
 * and guest_nice are already inside user and nice.
 */
export function busyTicks(line: string): number {
  // cpuN user nice system idle iowait irq softirq steal guest guest_nice
  const f = line.trim().split(/\s+/).slice(1, 8).map(Number);
  if (f.length < 4 || f.some((x) => !Number.isFinite(x))) throw new Error(`not a /proc/stat cpu line: ${line}`);
  const [user, nice, system, , , irq = 0, softirq = 0] = f;
  return user + nice + system + irq + softirq;
}

/**
 * Busy CPU seconds (not idle or iowait) of the whole machine, of the load
 * core and of the server core, from `/proc/stat` (on a one-CPU machine both
 * cores are CPU 0).
 */
export function machineTimes(
  loadCpu: string,
  serverCpu: string,
): { busy: number; loadCore: number; serverCore: number } {
  const lines = Deno.readTextFileSync("/proc/stat").split("\n");
  const busy = (line: string | undefined) => {
    if (line === undefined) throw new Error("/proc/stat has no such cpu line");
    return busyTicks(line) / CLK_TCK;
  };
  const core = (cpu: string) => busy(lines.find((l) => l.startsWith(`cpu${cpus < 2 ? 0 : cpu} `)));
  return { busy: busy(lines[0]), loadCore: core(loadCpu), serverCore: core(serverCpu) };
}

/** Where the CPU went during one load slice, in % of one core: the fields both load scripts' slices share. */
export interface CpuShares {
  /** % of one core used by the loaded server. */
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

/** What {@linkcode cpuAround} measured around one load slice. */
export interface CpuAround<T> {
  /** What the load returned. */
  result: T;
  /** Seconds of the slice. */
  wall: number;
  /** The loaded server's user and system CPU seconds (every thread). */
  user: number;
  sys: number;
  /** Busy seconds of the server core, less the idle servers' CPU. */
  serverCore: number;
  shares: CpuShares;
}

/**
 * Runs `load` against `servers[target]` and measures the CPU around it: the
 * loaded server's, the idle ones', the load core's and the server core's
 * (`loadCpu`, `serverCpu`: `taskset` CPUs), and the rest of the machine's.
 */
export async function cpuAround<T>(
  servers: { name: string; pid: number }[],
  target: number,
  cores: { loadCpu: string; serverCpu: string },
  load: () => Promise<T>,
): Promise<CpuAround<T>> {
  const before = servers.map((s) => cpuTimes(s.pid));
  const m0 = machineTimes(cores.loadCpu, cores.serverCpu);
  const t0 = performance.now();
  const result = await load();
  const wall = (performance.now() - t0) / 1000;
  const m1 = machineTimes(cores.loadCpu, cores.serverCpu);
  const after = servers.map((s) => cpuTimes(s.pid));
  const user = after[target].user - before[target].user;
  const sys = after[target].sys - before[target].sys;
  let idleOthers = 0;
  const idleByServer: Record<string, number> = {};
  servers.forEach((s, j) => {
    if (j === target) return;
    const used = after[j].user + after[j].sys - before[j].user - before[j].sys;
    idleOthers += used;
    idleByServer[s.name] = (used / wall) * 100;
  });
  const loadCore = m1.loadCore - m0.loadCore;
  return {
    result,
    wall,
    user,
    sys,
    serverCore: m1.serverCore - m0.serverCore - idleOthers,
    shares: {
      serverPct: ((user + sys) / wall) * 100,
      loadCorePct: (loadCore / wall) * 100,
      otherPct: ((m1.busy - m0.busy - user - sys - loadCore - idleOthers) / wall) * 100,
      idleOthersPct: (idleOthers / wall) * 100,
      idleByServer,
    },
  };
}

/** CPU each process uses over `seconds` (while nothing loads it), as % of one core, by name. */
export async function idleCpu(
  procs: { name: string; pid: number }[],
  seconds: number,
): Promise<Record<string, number>> {
  const before = procs.map((p) => cpuTimes(p.pid));
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const after = procs.map((p) => cpuTimes(p.pid));
  return Object.fromEntries(
    procs.map((p, i) => [p.name, ((after[i].user + after[i].sys - before[i].user - before[i].sys) / seconds) * 100]),
  );
}

/** `{ name: "x% …" }` as `name x.x%, …`. */
export function formatPcts(m: Record<string, number>): string {
  return Object.entries(m).map(([n, p]) => `${n} ${p.toFixed(1)}%`).join(", ");
}

/**
 * Each server's CPU while another one is loaded, % of one core: the mean over
 * those slices, and the worst slice.
 */
export function idleDuringOthers(
  names: string[],
  slices: { server: string; idleByServer: Record<string, number> }[],
): Record<string, { mean: number; max: number }> {
  return Object.fromEntries(names.map((n) => {
    const xs = slices.filter((s) => s.server !== n).map((s) => s.idleByServer[n]);
    return [n, { mean: xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length), max: Math.max(0, ...xs) }];
  }));
}

/** The line both load scripts print about the idle servers' CPU. */
export function idleLine(
  before: Record<string, number>,
  after: Record<string, number>,
  during: Record<string, { mean: number; max: number }>,
): string {
  const tickMs = 1000 / CLK_TCK;
  return `Idle servers' CPU (% of one core; /proc ticks are ${tickMs} ms, so ±${
    Number((tickMs / 10).toFixed(1))
  }% per 1 s slice is noise): before ${formatPcts(before)}; after ${
    formatPcts(after)
  }; while another server is loaded, mean (worst slice): ${
    Object.entries(during).map(([n, p]) => `${n} ${p.mean.toFixed(1)}% (${p.max.toFixed(0)}%)`).join(", ")
  }.`;
}
