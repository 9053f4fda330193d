/**
 * Side-by-side load benchmark of TCP echo servers: fdloop's `examples/echo.ts`
 * in both run modes, a `Deno.listen` server and a Node `net` server, under
 * the same request/response ping-pong load.
 *
 *   deno run -A bench/load/run.ts [--duration 5] [--warmup 1] [--repeat 3] [--conns 32] [--size 64]
 *
 * Method (see "Benchmarks" in the design notes): each server runs alone,
 * pinned to one core (`taskset -c 0`), the load generator
 * (`bench/load/echo_load.mjs`, Node) to the other (`taskset -c 1`); each run
 * warms up, then measures a fixed window; the whole set repeats `--repeat`
 * times with the order rotated; the table reports the median with min–max.
 * On two cores the load generator often saturates first, so the server's
 * CPU time per round trip (user + system, all threads, from `/proc/PID/stat`
 * before and after the window) is reported beside the throughput, and the
 * load generator's own CPU use shows whether it was the bottleneck.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { CLK_TCK, commandOutput, cpus, cpuTimes, haveTaskset, pinned } from "./_proc.ts";

const HERE = new URL("./", import.meta.url);
const ROOT = new URL("../../", import.meta.url);
const DENO = Deno.execPath();

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    duration: { type: "string", default: "5" },
    warmup: { type: "string", default: "1" },
    repeat: { type: "string", default: "3" },
    conns: { type: "string", default: "32" },
    size: { type: "string", default: "64" },
    servers: { type: "string", default: "fdloop,fdloop-sync,deno,node" },
    "server-cpu": { type: "string", default: "0" },
    "load-cpu": { type: "string", default: "1" },
    help: { type: "boolean" },
  },
});

if (flags.help) {
  console.log(`Usage: deno run -A bench/load/run.ts [options]

Options:
  --duration <s>      Measured seconds per run (default 5)
  --warmup <s>        Seconds of load before measuring (default 1)
  --repeat <n>        Rounds, each over every server in a rotated order (default 3)
  --conns <n>         Client connections (default 32)
  --size <bytes>      Message size (default 64)
  --servers <list>    Comma-separated subset of: ${Object.keys(serverCommands()).join(", ")}
  --server-cpu <cpu>  Core for the server (default 0)
  --load-cpu <cpu>    Core for the load generator (default 1)`);
  Deno.exit(0);
}

const duration = Number(flags.duration);
const warmup = Number(flags.warmup);
const repeat = Number(flags.repeat);
const conns = Number(flags.conns);
const size = Number(flags.size);
if (!(duration > 0 && warmup >= 0 && Number.isInteger(repeat) && repeat > 0 && conns > 0 && size > 0)) {
  console.error("--duration, --repeat, --conns and --size must be positive, --warmup at least 0");
  Deno.exit(2);
}

/** The server commands, each printing `listening on HOST:PORT` and stopping on SIGINT. */
function serverCommands(): Record<string, string[]> {
  const echo = new URL("examples/echo.ts", ROOT).pathname;
  return {
    "fdloop": [DENO, "run", "--allow-ffi", echo, "--port", "0"],
    "fdloop-sync": [DENO, "run", "--allow-ffi", echo, "--port", "0", "--sync"],
    "deno": [DENO, "run", "--allow-net", new URL("deno_echo.ts", HERE).pathname, "--port", "0"],
    "node": ["node", new URL("node_echo.mjs", HERE).pathname, "--port", "0"],
  };
}

const commands = serverCommands();
const servers = flags.servers.split(",").map((s) => s.trim()).filter((s) => s);
for (const s of servers) {
  if (!(s in commands)) {
    console.error(`Unknown server ${JSON.stringify(s)}: use some of ${Object.keys(commands).join(", ")}`);
    Deno.exit(2);
  }
}

// ---------------------------------------------------------------- processes

if (!haveTaskset) console.error("warning: taskset is missing: processes are not pinned");
else if (cpus < 2) console.error("warning: fewer than 2 CPUs: server and load share a core");

/** Machine-wide CPU seconds from the first line of `/proc/stat`: busy (not idle or iowait) and softirq. */
function machineTimes(): { busy: number; softirq: number } {
  const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal …
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: (total - f[3] - f[4]) / CLK_TCK, softirq: f[6] / CLK_TCK };
}

/** A child whose stdout is read line by line. */
class Proc {
  readonly proc: Deno.ChildProcess;
  readonly label: string;
  readonly #lines: string[] = [];
  #waiter: (() => void) | null = null;
  #ended = false;
  stderr = "";
  readonly done: Promise<Deno.CommandStatus>;

  constructor(label: string, cmd: string, args: string[]) {
    this.label = label;
    this.proc = new Deno.Command(cmd, {
      args,
      cwd: ROOT.pathname,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const pumps = Promise.all([this.#pumpOut(), this.#pumpErr()]);
    this.done = pumps.then(() => this.proc.status);
  }

  get pid(): number {
    return this.proc.pid;
  }

  async #pumpOut(): Promise<void> {
    let buf = "";
    for await (const text of this.proc.stdout.pipeThrough(new TextDecoderStream())) {
      buf += text;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        this.#lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      this.#waiter?.();
    }
    this.#ended = true;
    this.#waiter?.();
  }

  async #pumpErr(): Promise<void> {
    for await (const text of this.proc.stderr.pipeThrough(new TextDecoderStream())) this.stderr += text;
  }

  /** The next stdout line matching `re` (earlier lines are skipped); fails after `timeoutMs`. */
  async expect(re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      while (this.#lines.length > 0) {
        const m = re.exec(this.#lines.shift()!);
        if (m) return m;
      }
      if (this.#ended) throw new Error(`${this.label} ended before printing ${re}; stderr: ${this.stderr}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`${this.label} printed no ${re} within ${timeoutMs} ms; stderr: ${this.stderr}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      this.#waiter = null;
    }
  }

  /** Sends `signal`, waits up to `timeoutMs` for the exit, then SIGKILLs. Returns the status and whether it was killed. */
  async stop(signal: Deno.Signal, timeoutMs: number): Promise<{ status: Deno.CommandStatus; killed: boolean }> {
    try {
      this.proc.kill(signal);
    } catch {
      // Already gone.
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), timeoutMs)));
    const first = await Promise.race([this.done, late]);
    clearTimeout(timer);
    if (first !== "late") return { status: first, killed: false };
    try {
      this.proc.kill("SIGKILL");
    } catch {
      // Gone meanwhile.
    }
    return { status: await this.done, killed: true };
  }
}

// ---------------------------------------------------------------- one run

interface Result {
  server: string;
  rate: number;
  cpuUsPerRt: number;
  userUsPerRt: number;
  sysUsPerRt: number;
  serverCpuPct: number;
  loadCpuPct: number;
  /** Busy CPU of the machine outside the server and the load generator (other processes, interrupts). */
  otherCpuPct: number;
  softirqPct: number;
  note: string;
}

async function runOnce(name: string): Promise<Result> {
  const [cmd, args] = pinned(flags["server-cpu"], commands[name]);
  const server = new Proc(name, cmd, args);
  let load: Proc | undefined;
  try {
    const m = await server.expect(/^listening on (.+):(\d+)$/, 15_000);
    const port = m[2];
    const loadArgv = [
      "node",
      new URL("echo_load.mjs", HERE).pathname,
      "--port",
      port,
      "--conns",
      String(conns),
      "--size",
      String(size),
      "--warmup",
      String(warmup),
      "--duration",
      String(duration),
    ];
    const [lcmd, largs] = pinned(flags["load-cpu"], loadArgv);
    load = new Proc("echo_load", lcmd, largs);
    await load.expect(/^connected$/, 15_000);
    await load.expect(/^start$/, warmup * 1000 + 10_000);
    const m0 = machineTimes();
    const s0 = cpuTimes(server.pid);
    const l0 = cpuTimes(load.pid);
    const t0 = performance.now();
    const end = await load.expect(/^end (.*)$/, duration * 1000 + 10_000);
    const s1 = cpuTimes(server.pid);
    const l1 = cpuTimes(load.pid);
    const m1 = machineTimes();
    const wall = (performance.now() - t0) / 1000;
    const { roundTrips, seconds } = JSON.parse(end[1]) as { roundTrips: number; seconds: number };
    const loadStatus = await load.done;
    if (!loadStatus.success) throw new Error(`echo_load exited ${loadStatus.code}: ${load.stderr}`);
    const { status, killed } = await server.stop("SIGINT", 5000);
    const note = killed ? "needed SIGKILL after SIGINT" : status.success ? "" : `exit code ${status.code}`;
    const user = s1.user - s0.user;
    const sys = s1.sys - s0.sys;
    const loadCpu = l1.user + l1.sys - l0.user - l0.sys;
    return {
      server: name,
      rate: roundTrips / seconds,
      cpuUsPerRt: ((user + sys) / roundTrips) * 1e6,
      userUsPerRt: (user / roundTrips) * 1e6,
      sysUsPerRt: (sys / roundTrips) * 1e6,
      serverCpuPct: ((user + sys) / wall) * 100,
      loadCpuPct: (loadCpu / wall) * 100,
      otherCpuPct: ((m1.busy - m0.busy - user - sys - loadCpu) / wall) * 100,
      softirqPct: ((m1.softirq - m0.softirq) / wall) * 100,
      note,
    };
  } finally {
    if (load) await load.stop("SIGKILL", 2000);
    await server.stop("SIGKILL", 2000);
  }
}

// ---------------------------------------------------------------- the table

/** "Rest of machine" CPU above which a run is flagged as disturbed (10 ms ticks make ±3% noise). */
const DISTURBED_PCT = 10;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function fmtRate(x: number): string {
  return Math.round(x).toLocaleString("en-US");
}

function spread(xs: number[], fmt: (x: number) => string): string {
  return `${fmt(median(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})`;
}

const results: Result[] = [];
const started = performance.now();
for (let round = 0; round < repeat; round++) {
  const order = servers.map((_, i) => servers[(i + round) % servers.length]);
  for (const name of order) {
    const r = await runOnce(name);
    results.push(r);
    console.error(
      `round ${round + 1}/${repeat} ${name.padEnd(12)} ${fmtRate(r.rate).padStart(9)} rt/s  ` +
        `server ${r.cpuUsPerRt.toFixed(2)} µs/rt (${r.serverCpuPct.toFixed(0)}% CPU)  ` +
        `load ${r.loadCpuPct.toFixed(0)}% CPU  rest of machine ${r.otherCpuPct.toFixed(0)}% ` +
        `(softirq ${r.softirqPct.toFixed(0)}%)${r.note ? `  [${r.note}]` : ""}`,
    );
  }
}

const cpuModel = (Deno.readTextFileSync("/proc/cpuinfo").match(/^model name\s*:\s*(.*)$/m)?.[1] ?? "?").trim();
console.log(
  `\n### Echo ping-pong: ${conns} connections × ${size}-byte messages, ${duration} s measured after ${warmup} s ` +
    `warm-up, ${repeat} rounds (rotated order)\n`,
);
console.log(
  `Server on CPU ${flags["server-cpu"]}, load generator (Node, \`bench/load/echo_load.mjs\`) on CPU ${
    flags["load-cpu"]
  }${haveTaskset ? "" : " (not pinned: no taskset)"}; ${cpuModel}, ${cpus} CPUs, Linux ${Deno.osRelease()}, ` +
    `Deno ${Deno.version.deno}, Node ${commandOutput("node", ["--version"])}. Median (min–max).\n`,
);
const fastest = Math.max(...servers.map((s) => median(results.filter((r) => r.server === s).map((r) => r.rate))));
console.log(
  "| server | round trips/s | vs best | server CPU µs/rt (user + sys) | server CPU | load gen CPU | rest of machine |" +
    " notes |",
);
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
for (const s of servers) {
  const rs = results.filter((r) => r.server === s);
  const rate = rs.map((r) => r.rate);
  const cpu = rs.map((r) => r.cpuUsPerRt);
  const disturbed = rs.filter((r) => r.otherCpuPct > DISTURBED_PCT).length;
  const notes = [
    ...new Set(rs.map((r) => r.note).filter((n) => n)),
    ...(disturbed ? [`${disturbed} of ${rs.length} runs disturbed (rest of machine > ${DISTURBED_PCT}%)`] : []),
  ].join("; ");
  console.log(
    `| ${s} | ${spread(rate, fmtRate)} | ${(median(rate) / fastest).toFixed(2)}× | ${
      spread(cpu, (x) => x.toFixed(2))
    } (${median(rs.map((r) => r.userUsPerRt)).toFixed(2)} + ${median(rs.map((r) => r.sysUsPerRt)).toFixed(2)}) | ${
      median(rs.map((r) => r.serverCpuPct)).toFixed(0)
    }% | ${median(rs.map((r) => r.loadCpuPct)).toFixed(0)}% | ${
      median(rs.map((r) => r.otherCpuPct)).toFixed(0)
    }% | ${notes} |`,
  );
}
console.log(
  "\nCPU columns are % of one core over the measured window (loopback softirq work is charged to the task it " +
    'interrupts). "Rest of machine" is busy time of all CPUs outside the two processes: other processes and ' +
    "interrupts that hit idle CPUs; a few % either way is the 10 ms tick granularity, more means the run was " +
    "disturbed.",
);
console.log(`\nTotal time ${((performance.now() - started) / 1000).toFixed(0)} s.`);
