/**
 * Where the user-space CPU of a server under load goes: `perf record` on the
 * server while it is loaded, the samples sorted into libc's syscall
 * wrappers, JIT-compiled JavaScript (by function), V8 builtins, the rest of
 * Deno's native code, the FFI call trampolines and everything else, each as
 * a share of the user samples and as µs of user CPU per round trip (echo) or
 * request (HTTP).
 *
 *   deno run -A bench/load/profile.ts [--label after] [--seconds 3] [--only fdloop-sync,c-echo]
 *   git worktree add /tmp/fdloop-before 43cb7c8
 *   deno run -A bench/load/profile.ts --root /tmp/fdloop-before --label before
 *   git worktree remove /tmp/fdloop-before
 *
 * Servers, one at a time, each pinned to `--server-cpu` (default 0) and run
 * with `--v8-flags=--perf-basic-prof` (V8 then names its code in
 * `/tmp/perf-PID.map`): `examples/echo.ts` with `runSync()` and `run()`,
 * `examples/http_server.ts` with `--api raw` and `--api fetch`, and
 * `bench/load/bare_echo.ts` (the echo loop on the FFI bindings with no
 * framework), taken from `--root` (default: this repository), and the C
 * servers of `bench/c/` as the floor. The load runs on `--load-cpu` (default 1): for echo
 * `bench/load/echo_load.mjs` (50 connections, one 64-byte message in flight
 * each), for HTTP `wrk -t1 -c50`. After a 1 s warm-up the server is loaded
 * for `--seconds` while its user CPU per operation is read from
 * `/proc/PID/stat`, then for `--seconds` more under
 * `perf record -e cpu-clock:u -g -F 9999` (sampling this often slows the
 * server, so the CPU per operation comes from the first slice and the shares
 * from the second).
 *
 * Sorting the samples (`perf script`): V8 maps the builtins of its embedded
 * blob from the deno binary into its code range, so perf files them under the
 * deno binary without a name (the binary is stripped); their runtime
 * addresses are looked up in the perf map, which lists them as `Builtin:…`.
 * A builtin run from the binary's own mapping is translated to the remapped
 * copy first. Unnamed code in an anonymous executable mapping that holds no
 * V8 code is counted as FFI call trampolines (Deno compiles those outside V8).
 *
 * Results go to `bench/results/profile.json` under the label (`before`,
 * `after`), with the commit of `--root`; other labels in the file are kept.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { commandOutput, Progress, runMeta } from "../_meta.ts";
import {
  PROFILE_CATEGORIES,
  type ProfileCategory,
  type ProfileRun,
  type ProfileServer,
  writeResults,
} from "../results.ts";
import {
  checkNumbers,
  checkServers,
  compileC,
  cpuTimes,
  haveTaskset,
  list,
  parseWrk,
  pinned,
  Proc,
  ROOT,
} from "./_proc.ts";

const DENO = Deno.execPath();
const ECHO_LOAD = new URL("bench/load/echo_load.mjs", ROOT).pathname;
/** Bytes of each echoed message. */
const ECHO_SIZE = 64;

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    root: { type: "string", default: ROOT.pathname },
    label: { type: "string", default: "after" },
    seconds: { type: "string", default: "3" },
    warmup: { type: "string", default: "1" },
    conns: { type: "string", default: "50" },
    frequency: { type: "string", default: "9999" },
    top: { type: "string", default: "10" },
    only: { type: "string", default: "" },
    "server-cpu": { type: "string", default: "0" },
    "load-cpu": { type: "string", default: "1" },
    out: { type: "string", default: new URL("bench/results/profile.json", ROOT).pathname },
    help: { type: "boolean" },
  },
});

const SERVER_NAMES = ["fdloop-sync", "fdloop", "bare-echo", "c-echo", "fdloop-raw", "fdloop-fetch", "c-http"];

if (flags.help) {
  console.log(`Usage: deno run -A bench/load/profile.ts [options]

Options:
  --root <dir>        Tree whose examples/ are profiled, e.g. a git worktree of an older commit (default: this one)
  --label <name>      Key of this run in the JSON, e.g. before or after (default after)
  --seconds <s>       Seconds of load per server without perf, then again under perf (default 3)
  --warmup <s>        Seconds of load before measuring (default 1)
  --conns <n>         Connections of the load generator (default 50)
  --frequency <hz>    perf sampling frequency (default 9999)
  --top <n>           JavaScript functions and builtins kept per server (default 10)
  --only <list>       Comma-separated subset of: ${SERVER_NAMES.join(", ")}
  --server-cpu <cpu>  Core for the server (default 0)
  --load-cpu <cpu>    Core for the load generator and perf (default 1)
  --out <file>        JSON results; other labels in it are kept (default bench/results/profile.json)`);
  Deno.exit(0);
}

const seconds = Number(flags.seconds);
const warmup = Number(flags.warmup);
const conns = Number(flags.conns);
const frequency = Number(flags.frequency);
const top = Number(flags.top);
checkNumbers([
  ["seconds", seconds, 1, true],
  ["warmup", warmup, 1, true],
  ["conns", conns, 1, true],
  ["frequency", frequency, 1, true],
  ["top", top, 1, true],
]);
const root = flags.root.endsWith("/") ? flags.root : `${flags.root}/`;
/** perf starts this long before the sampled slice and stops as long after it. */
const PERF_LEAD_MS = 400;
const perfSeconds = seconds + (2 * PERF_LEAD_MS) / 1000;

for (const tool of [["perf", "--version"], ["wrk", "-v"], ["node", "--version"]]) {
  if (commandOutput(tool[0], tool.slice(1)) === "") {
    console.error(`${tool[0]} is missing`);
    Deno.exit(1);
  }
}
if (!haveTaskset) console.error("warning: taskset is missing: processes are not pinned");

/** A server to profile: how to start it and which load it takes. */
interface ServerSpec {
  label: string;
  kind: "echo" | "http";
  argv: string[];
  /** V8 writes /tmp/perf-PID.map. */
  v8: boolean;
}

const work = await Deno.makeTempDir({ prefix: "fdloop_profile_" });
const tempDirs: string[] = [work];

// --perf-basic-prof also turns on V8's log, which would land in the working directory (the repository).
const v8 = (script: string, ...args: string[]) => [
  DENO,
  "run",
  "--allow-ffi",
  `--v8-flags=--perf-basic-prof,--no-logfile-per-isolate,--logfile=${work}/v8.log`,
  `${root}${script.includes("/") ? script : `examples/${script}`}`,
  "--port",
  "0",
  ...args,
];

const SERVERS: Record<string, ServerSpec> = {
  "fdloop-sync": {
    label: "fdloop `runSync()` echo (`examples/echo.ts --sync`)",
    kind: "echo",
    argv: v8("echo.ts", "--sync"),
    v8: true,
  },
  "fdloop": { label: "fdloop `run()` echo (`examples/echo.ts`)", kind: "echo", argv: v8("echo.ts"), v8: true },
  "bare-echo": {
    label: "bare FFI echo loop, no framework (`bench/load/bare_echo.ts`)",
    kind: "echo",
    argv: v8("bench/load/bare_echo.ts"),
    v8: true,
  },
  "c-echo": { label: "C epoll echo (`bench/c/echo_baseline.c`)", kind: "echo", argv: [], v8: false },
  "fdloop-raw": {
    label: "fdloop raw HTTP API, `run()` (`examples/http_server.ts --api raw`)",
    kind: "http",
    argv: v8("http_server.ts", "--api", "raw"),
    v8: true,
  },
  "fdloop-fetch": {
    label: "fdloop `serve()` (`examples/http_server.ts --api fetch`)",
    kind: "http",
    argv: v8("http_server.ts", "--api", "fetch"),
    v8: true,
  },
  "c-http": { label: "C HTTP floor (`bench/c/http_baseline.c`)", kind: "http", argv: [], v8: false },
};

const names = flags.only === "" ? [...SERVER_NAMES] : list(flags.only);
checkServers(names, SERVERS);
for (const [name, src] of [["c-echo", "echo_baseline"], ["c-http", "http_baseline"]]) {
  if (!names.includes(name)) continue;
  const bin = await compileC(src, "fdloop_profile_");
  if (bin) {
    SERVERS[name].argv = [bin, "0"];
    tempDirs.push(bin.slice(0, bin.lastIndexOf("/")));
  } else {
    console.error(`warning: cannot compile bench/c/${src}.c: ${name} is left out`);
    names.splice(names.indexOf(name), 1);
  }
}

const progress = new Progress("profile");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- load

/**
 * Operations of one load slice: `ops` completed within the window (the rate),
 * `all` the ones the server's CPU over the slice paid for (with the echo
 * round trips in flight drained after the window).
 */
interface Load {
  ops: number;
  all: number;
  seconds: number;
}

/** Runs `wrk` for `secs` against `port`: requests and seconds. */
async function wrk(port: number, secs: number): Promise<Load> {
  const [cmd, args] = pinned(flags["load-cpu"], [
    "wrk",
    "-t1",
    `-c${conns}`,
    `-d${secs}s`,
    `http://127.0.0.1:${port}/`,
  ]);
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  const r = parseWrk(text);
  if (!out.success || !r) throw new Error(`wrk failed: ${text} ${new TextDecoder().decode(out.stderr)}`);
  if (r.errors || r.non2xx || /Socket errors|Non-2xx/.test(text)) throw new Error(`wrk saw errors: ${text}`);
  return { ops: r.requests, all: r.requests, seconds: r.seconds };
}

/** Samples `pid` with perf for `secs` seconds into `file`. */
function perfRecord(pid: number, file: string, secs: number): Promise<Deno.CommandOutput> {
  const argv = ["perf", "record", "-q", "-e", "cpu-clock:u", "-F", String(frequency), "-g", "-p", String(pid)];
  const [cmd, args] = pinned(flags["load-cpu"], [...argv, "-o", file, "--", "sleep", String(secs)]);
  return new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
}

/** Operations, seconds and the server's user and system CPU seconds over one load slice. */
interface Slice {
  ops: number;
  all: number;
  seconds: number;
  user: number;
  sys: number;
}

interface Window {
  /** The slice without perf: the server's CPU per operation. */
  clean: Slice;
  /** The slice perf sampled. */
  sampled: Slice;
  perf: Deno.CommandOutput;
  maps: string;
}

/** Runs `load` and reads the server's CPU around it. */
async function slice(pid: number, load: () => Promise<Load>): Promise<Slice> {
  const c0 = cpuTimes(pid);
  const w = await load();
  const c1 = cpuTimes(pid);
  return { ...w, user: c1.user - c0.user, sys: c1.sys - c0.sys };
}

/**
 * Warms `server` up, loads it for `seconds` (its CPU per operation), then
 * again for `seconds` with perf attached (the samples); reads
 * /proc/PID/maps while it lives.
 */
async function profileWindow(name: string, server: Proc, file: string): Promise<Window> {
  const pid = server.pid;
  let load: (secs: number) => Promise<Load> = (secs) => wrk(server.port, secs);
  let gen: Proc | null = null;
  if (SERVERS[name].kind === "echo") {
    const argv = [
      "node",
      ECHO_LOAD,
      "--port",
      String(server.port),
      "--conns",
      String(conns),
      "--size",
      String(ECHO_SIZE),
      "--control",
    ];
    const g = gen = new Proc(`${name}-load`, argv, flags["load-cpu"], true);
    await g.expect(/^connected$/, 15_000);
    load = async (secs) => {
      await g.send(`run ${secs}`);
      const done = JSON.parse((await g.expect(/^done (.*)$/, (secs + 10) * 1000))[1]);
      return { ops: done.roundTrips, all: done.all, seconds: done.seconds };
    };
  }
  try {
    await load(warmup);
    const clean = await slice(pid, () => load(seconds));
    const perf = perfRecord(pid, file, perfSeconds);
    await sleep(PERF_LEAD_MS);
    const sampled = await slice(pid, () => load(seconds));
    const maps = Deno.readTextFileSync(`/proc/${pid}/maps`);
    return { clean, sampled, perf: await perf, maps };
  } finally {
    await gen?.stop("stdin", 2000);
  }
}

// ---------------------------------------------------------------- sorting the samples

interface MapEntry {
  start: number;
  end: number;
  name: string;
}

/** `/tmp/perf-PID.map`: `START SIZE NAME` lines, sorted by start. */
function readPerfMap(pid: number): MapEntry[] {
  let text = "";
  try {
    text = Deno.readTextFileSync(`/tmp/perf-${pid}.map`);
  } catch { /* not a V8 process */ }
  const entries: MapEntry[] = [];
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line);
    if (m) entries.push({ start: parseInt(m[1], 16), end: parseInt(m[1], 16) + parseInt(m[2], 16), name: m[3] });
  }
  return entries.sort((a, b) => a.start - b.start);
}

function lookup(entries: MapEntry[], ip: number): MapEntry | null {
  let lo = 0, hi = entries.length - 1, found: MapEntry | null = null;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (entries[mid].start <= ip) {
      found = entries[mid];
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found && ip < found.end ? found : null;
}

interface Mapping {
  start: number;
  end: number;
  offset: number;
  exec: boolean;
  path: string;
}

/** `/proc/PID/maps` lines. */
function parseMaps(text: string): Mapping[] {
  return text.split("\n").flatMap((line) => {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) \S+ \d+\s*(.*)$/.exec(line);
    if (!m) return [];
    return [{
      start: parseInt(m[1], 16),
      end: parseInt(m[2], 16),
      offset: parseInt(m[4], 16),
      exec: m[3].includes("x"),
      path: m[5],
    }];
  });
}

/**
 * A function from a runtime address in the deno binary to the address of the
 * same byte in V8's remapped copy of the embedded builtins (where the perf
 * map names them), or `null` outside the builtins.
 */
function builtinTranslator(maps: Mapping[], entries: MapEntry[]): (ip: number) => number | null {
  const builtins = entries.filter((e) => e.name.startsWith("Builtin:") || e.name.startsWith("BytecodeHandler:"));
  if (!builtins.length) return () => null;
  const first = builtins[0].start;
  const remap = maps.find((m) => m.start <= first && first < m.end && m.path.endsWith("/deno"));
  if (!remap) return (ip) => ip;
  const blobOffset = remap.offset + (first - remap.start);
  const size = Math.max(...builtins.map((b) => b.end)) - first;
  const aliases = maps.filter((m) =>
    m !== remap && m.path === remap.path && m.exec && m.offset <= blobOffset && blobOffset < m.offset + m.end - m.start
  ).map((m) => m.start + (blobOffset - m.offset));
  return (ip) => {
    if (ip >= first && ip < first + size) return ip;
    for (const a of aliases) if (ip >= a && ip < a + size) return ip - a + first;
    return null;
  };
}

const SYSCALL_WRAPPERS = new Set([
  "send",
  "recv",
  "sendto",
  "recvfrom",
  "sendmsg",
  "recvmsg",
  "read",
  "write",
  "readv",
  "writev",
  "epoll_wait",
  "epoll_pwait",
  "epoll_pwait2",
  "epoll_ctl",
  "accept",
  "accept4",
  "close",
  "close_nocancel",
  "poll",
  "ppoll",
  "select",
  "pselect",
  "shutdown",
  "syscall",
  "nanosleep",
  "clock_nanosleep",
  "pthread_enable_asynccancel",
  "pthread_disable_asynccancel",
  "eventfd_write",
  "eventfd_read",
  "sched_yield",
]);

/** `__GI___libc_write` → `write`. */
function bareName(sym: string): string {
  return sym.replace(/@.*$/, "").replace(/^(?:_+|GI_+|libc_)+/, "");
}

function isSyscallWrapper(sym: string): boolean {
  const n = bareName(sym);
  return SYSCALL_WRAPPERS.has(n) || n.startsWith("futex") || n.startsWith("lll_lock_wait");
}

/** `JS:*'#read file:///root/net/connection.ts:574:8` → name `#read`, location `net/connection.ts:574:8`, tier `*`. */
function jsFunction(sym: string, rootDir: string): { fn: string; location: string; tier: string } {
  const body = sym.replace(/^JS:/, "");
  const tier = body.match(/^[*+^~]*/)![0];
  const rest = body.slice(tier.length).replace(/^'/, "");
  const space = rest.lastIndexOf(" ");
  const fn = space >= 0 ? rest.slice(0, space) : rest;
  let location = space >= 0 ? rest.slice(space + 1) : "";
  const prefix = `file://${rootDir}`;
  if (location.startsWith(prefix)) location = location.slice(prefix.length);
  return { fn: fn || "(anonymous)", location, tier };
}

interface Tally {
  total: number;
  categories: Record<ProfileCategory, number>;
  js: Map<string, { fn: string; location: string; tiers: Set<string>; samples: number }>;
  builtins: Map<string, number>;
  syscalls: Map<string, number>;
  other: Map<string, number>;
}

/** Sorts the samples of `file` into the categories. */
async function tally(file: string, pid: number, mapsText: string): Promise<Tally> {
  const out = await new Deno.Command("perf", {
    args: ["script", "-i", file, "-F", "ip,sym,dso", "-G"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`perf script failed: ${new TextDecoder().decode(out.stderr)}`);
  const entries = readPerfMap(pid);
  const maps = parseMaps(mapsText);
  const toBuiltin = builtinTranslator(maps, entries);
  /** Anonymous executable mappings that hold V8 code (some perf map entry lies in them). */
  const v8Ranges = maps.filter((m) =>
    m.exec && m.path === "" && entries.some((e) => e.start >= m.start && e.start < m.end)
  );
  const t: Tally = {
    total: 0,
    categories: Object.fromEntries(PROFILE_CATEGORIES.map((c) => [c.key, 0])) as Record<ProfileCategory, number>,
    js: new Map(),
    builtins: new Map(),
    syscalls: new Map(),
    other: new Map(),
  };
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const m = /^\s*([0-9a-f]+)\s+(.*?)\s+\(([^()]*)\)\s*$/.exec(line);
    if (!m) continue;
    const ip = parseInt(m[1], 16);
    let sym = m[2];
    const dso = m[3];
    t.total++;
    const base = dso.slice(dso.lastIndexOf("/") + 1);
    if (base.startsWith("libc.so") && isSyscallWrapper(sym)) {
      t.categories.syscalls++;
      bump(t.syscalls, bareName(sym));
      continue;
    }
    const isDeno = base === "deno";
    const isJit = dso.startsWith("/tmp/perf-") || dso.startsWith("[JIT]");
    if (isDeno || isJit) {
      if (!sym.startsWith("JS:") && !sym.startsWith("Builtin:")) {
        const translated = toBuiltin(ip);
        const e = lookup(entries, translated ?? ip);
        if (e) sym = e.name;
      }
      if (sym.startsWith("JS:")) {
        t.categories.js++;
        const f = jsFunction(sym, root);
        const key = `${f.fn} ${f.location}`;
        const entry = t.js.get(key) ?? { fn: f.fn, location: f.location, tiers: new Set<string>(), samples: 0 };
        entry.samples++;
        if (f.tier) entry.tiers.add(f.tier);
        t.js.set(key, entry);
      } else if (/^(Builtin|BytecodeHandler):/.test(sym)) {
        t.categories.builtins++;
        bump(t.builtins, sym.replace(/^Builtin:/, ""));
      } else if (isDeno) {
        t.categories.native++;
      } else if (v8Ranges.some((r) => ip >= r.start && ip < r.end)) {
        // Unnamed code in V8's code space (a stub or a map entry not written yet).
        t.categories.native++;
      } else {
        t.categories.trampolines++;
      }
      continue;
    }
    t.categories.other++;
    bump(t.other, base.startsWith("libc.so") ? `libc ${bareName(sym)}` : sym.startsWith("[") ? base : `${base} ${sym}`);
  }
  return t;
}

// ---------------------------------------------------------------- one server

const round = (x: number, digits: number) => Number(x.toFixed(digits));

async function profileServer(name: string): Promise<ProfileServer> {
  const spec = SERVERS[name];
  const server = new Proc(name, spec.argv, flags["server-cpu"]);
  const file = `${work}/${name}.perf.data`;
  try {
    await server.listening();
    progress.step(
      `${name} :${server.port}: ${warmup} s warm-up, ${seconds} s of load, ${seconds} s of load under perf`,
    );
    const w = await profileWindow(name, server, file);
    if (!w.perf.success) throw new Error(`perf record failed: ${new TextDecoder().decode(w.perf.stderr)}`);
    const t = await tally(file, server.pid, w.maps);
    const { clean, sampled } = w;
    // CPU per operation it paid for (the drained echo round trips too, as bench/load/run.ts counts them).
    const userUs = (clean.user / clean.all) * 1e6;
    const share = (n: number) => (t.total ? n / t.total : 0);
    const row = (n: number) => ({ samples: n, share: round(share(n), 4), us: round(share(n) * userUs, 4) });
    const topOf = (m: Map<string, number>, n: number) =>
      [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, x]) => ({ name: k, ...row(x) }));
    const result: ProfileServer = {
      server: name,
      label: spec.label,
      kind: spec.kind,
      ops: clean.ops,
      seconds: round(clean.seconds, 3),
      rate: round(clean.ops / clean.seconds, 0),
      userUs: round(userUs, 4),
      sysUs: round((clean.sys / clean.all) * 1e6, 4),
      userPct: round((clean.user / clean.seconds) * 100, 1),
      sampled: {
        ops: sampled.ops,
        seconds: round(sampled.seconds, 3),
        rate: round(sampled.ops / sampled.seconds, 0),
        userUs: round((sampled.user / sampled.all) * 1e6, 4),
        sysUs: round((sampled.sys / sampled.all) * 1e6, 4),
        userPct: round((sampled.user / sampled.seconds) * 100, 1),
      },
      samples: t.total,
      perfUserPct: round((t.total / frequency / sampled.seconds) * 100, 1),
      categories: Object.fromEntries(PROFILE_CATEGORIES.map((c) => [c.key, row(t.categories[c.key])])) as Record<
        ProfileCategory,
        { samples: number; share: number; us: number }
      >,
      topJs: [...t.js.values()].sort((a, b) => b.samples - a.samples).slice(0, top).map((f) => ({
        fn: f.fn,
        location: f.location,
        tiers: [...f.tiers].sort().join(""),
        ...row(f.samples),
      })),
      topBuiltins: topOf(t.builtins, top),
      syscallSites: topOf(t.syscalls, 6),
      other: topOf(t.other, 6),
    };
    progress.step(
      `${name}: ${result.rate.toLocaleString("en-US")} ops/s, user ${userUs.toFixed(3)} µs/op, ${t.total} samples: ${
        PROFILE_CATEGORIES.map((c) => `${c.key} ${(share(t.categories[c.key]) * 100).toFixed(0)}%`).join(", ")
      }`,
    );
    return result;
  } finally {
    await server.stop("SIGINT");
    await Deno.remove(file).catch(() => {});
    await Deno.remove(`${file}.old`).catch(() => {});
    if (spec.v8) await Deno.remove(`/tmp/perf-${server.pid}.map`).catch(() => {});
  }
}

// ---------------------------------------------------------------- the run

const git = (...args: string[]) => commandOutput("git", ["-C", root, ...args]);
const commit = git("rev-parse", "HEAD");
const run: ProfileRun = {
  ...runMeta(),
  commit: /^[0-9a-f]{40}$/.test(commit) ? commit : null,
  subject: git("log", "-1", "--format=%s") || null,
  // Uncommitted changes to the library or the examples in the tree profiled.
  dirty: git("status", "--porcelain", "--", "mod.ts", "ffi", "reactor", "net", "http", "examples") !== "",
  servers: [],
};
const started = performance.now();
try {
  for (const name of names) run.servers.push(await profileServer(name));
} finally {
  for (const d of tempDirs) await Deno.remove(d, { recursive: true }).catch(() => {});
}

let previous: { runs?: Record<string, ProfileRun> } = {};
try {
  previous = JSON.parse(Deno.readTextFileSync(flags.out));
} catch { /* first run */ }
const runs: Record<string, ProfileRun> = { ...(previous.runs ?? {}), [flags.label]: run };
const { commit: _c, subject: _s, dirty: _d, servers: _v, ...meta } = run;
await writeResults(flags.out, {
  ...meta,
  task: "deno task bench:profile",
  settings: {
    serverCpu: flags["server-cpu"],
    loadCpu: flags["load-cpu"],
    conns,
    echoSize: ECHO_SIZE,
    warmupSeconds: warmup,
    seconds,
    perfSeconds,
    frequency,
  },
  runs: Object.fromEntries(Object.entries(runs).sort(([a], [b]) => (a === "before" ? -1 : b === "before" ? 1 : 0))),
});
progress.step(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
