/**
 * The results file (`bench/results.ts` → `bench/RESULTS.md`) and the helpers
 * the benchmarks share (`bench/_meta.ts`): rendering from small fixture
 * objects (no benchmark runs), and the committed `RESULTS.md` against what
 * the committed JSON renders to, so the two cannot drift apart.
 *
 * Run with `-A` (reads bench/, runs `deno fmt` on the rendered text).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  commandLine,
  markdownTable,
  median,
  Progress,
  runMeta,
  shellQuote,
  spreadOf,
  stripColour,
  versionOf,
} from "../bench/_meta.ts";
import {
  allocTarget,
  BENCHES,
  type HttpSummary,
  httpTargets,
  readResults,
  renderResults,
  RESULTS_MD,
  scalingGoals,
  wrapMarkdown,
} from "../bench/results.ts";

// ---------------------------------------------------------------- fixtures

const META = {
  date: "2026-01-02T03:04:05.678Z",
  machine: { cpu: "Test CPU 9000", cores: 4, kernel: "6.1.0-test" },
  versions: { deno: "2.9.6", v8: "15.0", node: "20.1.0", python: "3.11.7", wrk: "4.1.0", cc: "gcc 12.2.0" },
};
const spread = (median: number, min = median * 0.9, max = median * 1.1) => ({ median, min, max });

function fixtures(): Record<string, unknown> {
  return {
    ffi_vs_c: {
      ...META,
      command: "taskset -c 1 deno run -A bench/ffi_vs_c.ts",
      settings: { iterations: 1000, rounds: 3 },
      results: [
        { call: "epoll_wait(ep, buf, 64, 0)", c: spread(80), deno: spread(120), ratio: 1.5 },
        { call: "read 64 B, empty socket (EAGAIN)", c: spread(140), deno: spread(180), ratio: 1.29 },
      ],
    },
    selectors: {
      ...META,
      command: "deno run -A bench/selector_bench.ts",
      settings: { sizes: [10, 1000], backends: ["epoll", "select"], rounds: 5, sampleMs: 20 },
      results: [
        { n: 10, backend: "epoll", ns: spread(230) },
        { n: 10, backend: "select", ns: spread(630) },
        { n: 1000, backend: "epoll", ns: spread(226) },
        { n: 1000, backend: "select", skipped: "needs 1001 fds below FD_SETSIZE", short: "needs fds < 1024" },
      ],
    },
    scaling: {
      ...META,
      command: "deno run -A bench/scaling.ts --rounds=3",
      task: "deno task bench:scaling",
      settings: { rounds: 3, sizes: [16, 1024], sampleMs: 15 },
      results: [
        { impl: "fdloop", mechanism: "epoll", points: [{ n: 16, ns: 400 }, { n: 1024, ns: 410 }] },
        {
          impl: "CPython",
          mechanism: "select",
          points: [{ n: 16, ns: 2500 }],
          stopped: { n: 1024, error: "ValueError: filedescriptor out of range in select()" },
        },
      ],
      summary: {
        fdloopEpollFlat: true,
        fdloopEpollBelowCPythonEverywhere: null,
        growth: { "fdloop epoll": { from: 16, to: 1024, perRound: 1.02, ofMedians: 1.025 } },
        cpythonOverFdloop: { epoll: {}, select: {} },
      },
    },
    // An older http_run.ts file: machine fields inside `versions`, no Python.
    http_load: {
      date: "2026-01-03T00:00:00.000Z",
      command: "deno run -A bench/load/http_run.ts",
      versions: { deno: "2.9.6", node: "v20.20.2", wrk: "debian/4.1.0-3+b2", linux: "6.18.0", cpu: "Old CPU", cpus: 2 },
      settings: { rounds: 12, sliceSeconds: 1, warmupSeconds: 2, conns: 50, depth: 16, serverCpu: "0", loadCpu: "1" },
      summary: {
        plain: [{
          server: "deno",
          label: "`Deno.serve`",
          rate: spread(55000),
          cpuUs: spread(17),
          userUs: 6.5,
          sysUs: 10.3,
          rateVsDeno: spread(1),
          cpuVsDeno: spread(1),
          serverPct: 95,
          loadCorePct: 97,
          errors: 0,
          non2xx: 0,
        }],
      },
      targets: [{ target: "raw API ≥ 1.2× Deno.serve", value: "1.04×", met: false }],
    },
  };
}

/** One server of `echo_load.json`'s summary, as `bench/load/run.ts` writes it. */
function echoSummary(server: string, label: string, rate: number, userUs: number, cpuVsC: number) {
  return {
    server,
    label,
    rate: spread(rate),
    cpuUs: spread(userUs + 4),
    coreUs: spread(userUs + 5),
    userUs: spread(userUs),
    sysUs: spread(4),
    rateVs: { c: spread(rate / 150000), deno: null },
    cpuVs: { c: spread(cpuVsC), deno: null },
    coreVs: { c: spread(cpuVsC), deno: null },
    serverPct: 86,
    loadCorePct: 99,
    otherPct: 1,
  };
}

/** Syscall counts of one server, as `bench/load/run.ts` writes them. */
const syscalls = (perRoundTrip: Record<string, number>) => ({
  roundTrips: 12345,
  seconds: 2,
  perRoundTrip,
  errorsPerRoundTrip: {},
  total: Object.values(perRoundTrip).reduce((a, b) => a + b, 0),
});

/** One server of `profile.json`, as `bench/load/profile.ts` writes it (`js` 0: a C server). */
function profileServer(
  server: string,
  label: string,
  kind: "echo" | "http",
  userUs: number,
  syscalls: number,
  js: number,
) {
  const shares: Record<string, number> = {
    syscalls,
    js,
    builtins: js ? 0.1 : 0,
    native: js ? 0.05 : 0,
    trampolines: js ? 0.05 : 0,
  };
  shares.other = 1 - Object.values(shares).reduce((a, b) => a + b, 0);
  const row = (share: number) => ({ samples: Math.round(share * 1000), share, us: share * userUs });
  return {
    server,
    label,
    kind,
    ops: 150000,
    seconds: 3,
    rate: 50000,
    userUs,
    sysUs: 10,
    userPct: 20,
    sampled: { ops: 90000, seconds: 3, rate: 30000, userUs: userUs * 1.5, sysUs: 15, userPct: 25 },
    samples: 1000,
    perfUserPct: 24,
    categories: Object.fromEntries(Object.entries(shares).map(([k, x]) => [k, row(x)])),
    topJs: js
      ? [
        { fn: "#dispatchIO", location: "reactor/reactor.ts:478:121", tiers: "*", ...row(0.2) },
        { fn: "get url", location: "http/fetch_request.ts:48:68", tiers: "+^", ...row(0.05) },
      ]
      : [],
    topBuiltins: js ? [{ name: "RecordWriteSaveFP", ...row(0.02) }] : [],
    syscallSites: [{ name: "send", ...row(syscalls * 0.6) }, { name: "recv", ...row(syscalls * 0.4) }],
    other: [],
  };
}

/** A labelled run of `profile.json`. */
function profileRun(commit: string, servers: unknown[]) {
  return {
    ...META,
    command: "deno run -A bench/load/profile.ts",
    commit,
    subject: "reactor: a change",
    dirty: false,
    servers,
  };
}

/** Echo files in the shapes `bench/load/run.ts`, `bench/echo_alloc.ts` and `bench/load/idle_memory.ts` write, `bench/http_alloc.ts`'s, and two of no known shape. */
function moreFixtures(): Record<string, unknown> {
  return {
    ...fixtures(),
    echo_load: {
      ...META,
      command: "deno run -A bench/load/run.ts",
      settings: {
        rounds: 2,
        sliceSeconds: 1,
        warmupSeconds: 1,
        conns: 32,
        size: 64,
        serverCpu: "0",
        loadCpu: "1",
        straceSeconds: 2,
        perfSeconds: 3,
      },
      summary: [
        echoSummary("fdloop", "fdloop `run()`", 160000, 0.45, 1.05),
        echoSummary("fdloop-sync", "fdloop `runSync()`", 150000, 0.5, 1.2),
        echoSummary("c", "C epoll", 150000, 0.2, 1),
      ],
      syscalls: {
        strace: { fdloop: syscalls({ recvfrom: 1, sendto: 1, epoll_wait: 0.5, futex: 0.0001 }) },
        perf: { fdloop: syscalls({ recvfrom: 1, sendto: 1, epoll_wait: 0.9 }), c: syscalls({ recvfrom: 1 }) },
      },
      // Stale targets: the section's come from the figures.
      targets: [{ target: "run() CPU/round trip ≤ 1.10× the C server's", value: "9.99×", met: false }],
      slices: [
        { round: 0, server: "fdloop", rate: 100 },
        { round: 0, server: "fdloop-sync", rate: 102 },
        { round: 1, server: "fdloop", rate: 100 },
        { round: 1, server: "fdloop-sync", rate: 104 },
      ],
    },
    echo_alloc: {
      ...META,
      command: "deno run -A --v8-flags=--expose-gc bench/echo_alloc.ts",
      settings: { roundTrips: 4000, samples: 7, size: 64 },
      rows: [
        { client: "raw", side: "server only", mode: "run", conns: 50, bytesPerRoundTrip: 22.59, min: 21, max: 31.8 },
        { client: "raw", side: "server only", mode: "run", conns: 1, bytesPerRoundTrip: 64, min: 64, max: 70 },
        {
          client: "raw",
          side: "server only",
          mode: "runSync",
          conns: 50,
          bytesPerRoundTrip: 1.41,
          min: 1.4,
          max: 1.5,
          gcDuringSamples: 1,
        },
      ],
    },
    http_alloc: {
      ...META,
      command:
        "deno run -A --v8-flags=--expose-gc,--min-semi-space-size=64,--max-semi-space-size=64 bench/http_alloc.ts",
      settings: { requests: 5000, samples: 7, warmupBatches: 4, newSpaceBytes: 71811872 },
      rows: [
        {
          server: "raw",
          mode: "runOnce",
          conns: 50,
          bytesPerRequest: 124.5,
          min: 120,
          max: 130.25,
          gcDuringSamples: 0,
          requestsPerSecond: 61234.4,
          responseBytes: 117,
        },
        {
          server: "serve",
          mode: "runOnce",
          conns: 50,
          bytesPerRequest: 1494,
          min: 1400,
          max: 1500,
          gcDuringSamples: 0,
          requestsPerSecond: 55000,
          responseBytes: 117,
        },
        {
          server: "serve",
          mode: "run",
          conns: 1,
          bytesPerRequest: 5.2,
          min: 4.9,
          max: 6,
          gcDuringSamples: 3,
          requestsPerSecond: 40000,
          responseBytes: 117,
        },
      ],
    },
    echo_idle_memory: {
      ...META,
      command: "deno run -A bench/load/idle_memory.ts --repeat 2",
      settings: { conns: 9000, repeat: 2, settleSeconds: 2, messageBytes: 64 },
      servers: { fdloop: "fdloop `examples/echo.ts` (`run()`)" },
      samples: [
        { server: "fdloop", rssBeforeKiB: 48000, rssAfterKiB: 64000, perConnectionKiB: 1.8 },
        { server: "node", rssBeforeKiB: 44000, rssAfterKiB: 88000, perConnectionKiB: 4.8 },
        { server: "fdloop", rssBeforeKiB: 48000, rssAfterKiB: 66000, perConnectionKiB: 2 },
        { server: "node", rssBeforeKiB: 44000, rssAfterKiB: 88000, perConnectionKiB: 4.9 },
      ],
    },
    profile: {
      ...META,
      command: "deno run -A bench/load/profile.ts",
      task: "deno task bench:profile",
      settings: {
        serverCpu: "0",
        loadCpu: "1",
        conns: 50,
        echoSize: 64,
        warmupSeconds: 1,
        seconds: 3,
        frequency: 9999,
      },
      runs: {
        before: profileRun("43cb7c8c3251fadc7d80ceb1af2cb6b848d7208f", [
          profileServer("fdloop-sync", "fdloop `runSync()` echo", "echo", 3.0, 0.5, 0.3),
          profileServer("c-echo", "C epoll echo", "echo", 2.0, 0.75, 0),
        ]),
        after: profileRun("7d1bb83626df2f281e11801c3b68d49041edbfbd", [
          profileServer("fdloop-sync", "fdloop `runSync()` echo", "echo", 2.5, 0.6, 0.3),
          profileServer("fdloop-fetch", "fdloop `serve()`", "http", 5.0, 0.2, 0.4),
          profileServer("c-echo", "C epoll echo", "echo", 2.0, 0.8, 0),
        ]),
      },
    },
    other: {
      date: "2026-01-01T00:00:00Z",
      command: "deno run -A bench/other.ts",
      results: [{ name: "a", rate: spread(1000, 900, 1100), cpuUs: 5.2, syscalls: { recv: 1, send: 1 }, rounds: [1] }],
    },
    empty: { date: "2026-01-01T00:00:00Z", command: "x" },
  };
}

function section(md: string, title: string): string {
  const start = md.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `no section ${title}`);
  const end = md.indexOf("\n## ", start + 1);
  return md.slice(start, end < 0 ? undefined : end);
}

// ---------------------------------------------------------------- rendering

Deno.test("`renderResults()` gives every benchmark a section with its metadata, in order", () => {
  const md = renderResults(fixtures());
  assert.match(md, /^# Benchmark results\n/);
  assert.match(md, /Generated by `deno task bench:results`/);
  assert.match(md, /do not edit by hand/);
  const titles = [...md.matchAll(/^## (.*)$/gm)].map((m) => m[1]);
  assert.deepEqual(titles, BENCHES.filter((b) => !b.optional).map((b) => b.title));

  const ffi = section(md, "FFI call cost against the same call from C");
  assert.match(ffi, /^- \*\*Date:\*\* 2026-01-02 03:04 UTC$/m);
  assert.match(ffi, /^- \*\*Machine:\*\* Test CPU 9000, 4 cores, Linux 6\.1\.0-test$/m);
  assert.match(
    ffi,
    /^- \*\*Versions:\*\* Deno 2\.9\.6, Node 20\.1\.0, Python 3\.11\.7, wrk 4\.1\.0, cc gcc 12\.2\.0$/m,
  );
  assert.match(ffi, /^- \*\*Command:\*\* `taskset -c 1 deno run -A bench\/ffi_vs_c\.ts`$/m);
  assert.match(ffi, /^- \*\*Data:\*\* \[`results\/ffi_vs_c\.json`\]\(results\/ffi_vs_c\.json\)$/m);
  assert.match(
    ffi,
    /^\| `epoll_wait\(ep, buf, 64, 0\)` +\| +80\.0 \(72\.0–88\.0\) \| +— \| +120\.0 \(108\.0–132\.0\) \| +1\.50× \|$/m,
  );

  const sel = section(md, "Selector.select(0) with N idle fds and 1 ready");
  assert.match(sel, /^\| +10 \| +230 \(207–253\) ns \| +630 \(567–693\) ns \|$/m);
  assert.match(sel, /^\| +1000 \| .*\| +— \(needs fds < 1024\) \|$/m);

  const scaling = section(md, "Backend scaling beside CPython");
  assert.match(scaling, /!\[[^\]]*\]\(scaling\.svg\)/);
  assert.match(scaling, /\(or `deno task bench:scaling`\)/);
  assert.match(scaling, /CPython SelectSelector stops at N = 1024/);
  assert.match(scaling, /^\| growth \| +1\.02× \| +— \|$/m);
  assert.match(scaling, /flat .*1\.02× .*→ met$/m);
  assert.match(scaling, /below CPython's EpollSelector at every N: not measured$/m);

  // The older layout: machine from `versions`, Python not recorded, Node's "v" dropped.
  const http = section(md, "HTTP servers side by side");
  assert.match(http, /^- \*\*Machine:\*\* Old CPU, 2 cores, Linux 6\.18\.0$/m);
  assert.match(http, /^- \*\*Versions:\*\* Deno 2\.9\.6, Node 20\.20\.2, Python not recorded, wrk debian/m);
  assert.match(
    http,
    /^\| `Deno\.serve` +\| +55,000 \(49,500–60,500\) \| +1\.00× \(0\.90×–1\.10×\) \| +17\.00 \(15\.30–18\.70\) \| +6\.50 \+ 10\.30 \|/m,
  );
  // The file's own (stale) targets are not rendered: the verdicts come from the figures, and with only
  // Deno.serve in the file there is none to give.
  assert.doesNotMatch(http, /1\.04×/);
  assert.doesNotMatch(http, /Issue 7's targets/);
});

Deno.test("`renderResults()` shows the C loop's user and system time per call, and the user share it computes", () => {
  const files = fixtures();
  (files.ffi_vs_c as { results: unknown[] }).results = [
    { call: "epoll_wait(ep, buf, 64, 0)", c: spread(1000), cUser: spread(400), cSys: spread(600), deno: spread(1200) },
    { call: "fcntl(fd, F_GETFD, 0)", c: spread(1000), cUser: spread(500), cSys: spread(500), deno: spread(1100) },
  ].map((r) => ({ ...r, ratio: r.deno.median / r.c.median }));
  const ffi = section(renderResults(files), "FFI call cost against the same call from C");
  assert.match(ffi, /\| C user \+ sys ns\/op \|/);
  assert.match(ffi, /^\| `fcntl\(fd, F_GETFD, 0\)` +\| +1000\.0 \(900\.0–1100\.0\) \| +500\.0 \+ 500\.0 \| /m);
  // 400 / (400 + 600) and 500 / (500 + 500): the range comes from the rows, not from the text.
  assert.match(ffi.replace(/\s+/g, " "), /40%–50% of it is user time/);
  assert.match(ffi.replace(/\s+/g, " "), /`epoll_wait\(ep, buf, 64, 0\)` 400 ns, `fcntl\(fd, F_GETFD, 0\)` 500 ns/);
});

Deno.test("`renderResults()` says which benchmarks have not run, and leaves out optional ones", () => {
  const files = fixtures();
  delete files.ffi_vs_c;
  const md = renderResults(files);
  const echo = section(md, "Echo servers side by side");
  assert.match(
    echo,
    /Not run yet: `results\/echo_load\.json` does not exist\. Run `deno task bench:load`\./,
  );
  assert.doesNotMatch(echo, /\*\*Date:\*\*/);
  assert.match(section(md, "FFI call cost against the same call from C"), /Not run yet/);
  assert.match(md, /^\| \[Echo servers side by side\]\(#echo-servers-side-by-side\) +\| not run yet +\| — +\| — +\|$/m);
  assert.doesNotMatch(md, /Allocation on the echo path/);
  assert.doesNotMatch(renderResults({}), /\*\*Date:\*\*/);
});

Deno.test("`renderResults()` renders the echo load run: servers, syscalls, and issue 9's targets from the figures", () => {
  const md = renderResults(moreFixtures());
  const echo = section(md, "Echo servers side by side");
  assert.match(echo, /^- \*\*Command:\*\* `deno run -A bench\/load\/run\.ts`$/m);
  assert.match(echo, /\| server core µs\/rt \|/);
  assert.match(
    echo,
    /^\| fdloop `run\(\)` +\| +160,000 \(144,000–176,000\) \| 1\.07× \(0\.96×–1\.17×\) \| +— \| .*\| +0\.45 \+ 4\.00 \| 1\.05× \(0\.95×–1\.16×\) \| +— \| +5\.45 \(4\.91–6\.00\) \| 1\.05× \(0\.95×–1\.16×\) \| +86% \| +99% \|$/m,
  );
  // perf first (full speed), then strace; rare calls summed as "other", then the total.
  assert.ok(echo.indexOf("with `perf stat`") < echo.indexOf("with `strace -c -f`"));
  assert.match(echo, /perf stat` on the syscall tracepoints, 3 s per server/);
  assert.match(echo, /^\| epoll_wait +\| +0\.900 \| +— \|$/m);
  assert.match(echo, /^\| round trips counted \| +12,345 \| +12,345 \|$/m);
  assert.match(echo, /^\| epoll_wait +\| +0\.500 \|$/m);
  assert.doesNotMatch(echo, /^\| futex/m);
  assert.match(echo, /^\| other +\| +0\.000 \|$/m);
  // The targets, from the figures (the stale `targets` of the file are not used).
  assert.doesNotMatch(echo, /9\.99×/);
  assert.match(
    echo,
    /^- \*\*MISSED\*\*: runSync\(\) user CPU ≤ 0\.4 µs\/round trip — 0\.50 µs; the C server 0\.20 µs$/m,
  );
  assert.match(echo, /^- met: run\(\) user CPU ≤ 0\.5 µs\/round trip — 0\.45 µs; the C server 0\.20 µs$/m);
  assert.match(
    echo,
    /^- met: run\(\) CPU\/round trip ≤ 1\.10× the C server's — server CPU 1\.05×, server core 1\.05×$/m,
  );
  assert.match(echo, /^- \*\*MISSED\*\*: runSync\(\) CPU\/round trip ≤ 1\.10× the C server's — server CPU 1\.20×/m);
  assert.match(
    echo,
    /^- met: runSync\(\) round trips\/s ≥ run\(\)'s, .* — runSync\(\)\/run\(\) 1\.03× \(1\.02×–1\.04×\)$/m,
  );
  assert.match(echo, /^- \*\*MISSED\*\*: no allocation per message: [^]* — worst 22\.59 B \(raw, `run\(\)`\)$/m);
  assert.match(echo, /^- met: ≤ 2 KiB of RSS per idle connection .* — fdloop 1\.90 KiB$/m);

  // Without the allocation and idle memory files those two are "not measured".
  const files = moreFixtures();
  delete files.echo_alloc;
  delete files.echo_idle_memory;
  const alone = section(renderResults(files), "Echo servers side by side");
  assert.match(alone, /^- not measured: no allocation per message: [^]* — `results\/echo_alloc\.json` missing$/m);
  assert.match(alone, /^- not measured: ≤ 2 KiB of RSS per idle connection [^]* missing$/m);
});

Deno.test("`renderResults()` renders bytes per round trip per variant, and KiB per idle connection per server", () => {
  const md = renderResults(moreFixtures());
  const alloc = section(md, "Allocation on the echo path");
  assert.match(alloc, /^- \*\*Command:\*\* `deno run -A --v8-flags=--expose-gc bench\/echo_alloc\.ts`$/m);
  assert.match(alloc, /^\| client +\| loop +\| +B\/rt, 1 connection \| B\/rt, 50 connections \|$/m);
  assert.match(
    alloc,
    /^\| raw \(server only\) \| `await run\(\)` \| +64\.00 \(64\.00–70\.00\) \| +22\.59 \(21\.00–31\.80\) \|$/m,
  );
  assert.match(alloc, /^\| raw \(server only\) \| `runSync\(\)` +\| +— \| +1\.41 \(1\.40–1\.50\) † \|$/m);
  assert.match(alloc, /^† a GC ran during some samples/m);
  assert.match(alloc, /^- \*\*MISSED\*\*: no allocation per message/m);

  const idle = section(md, "Memory per idle connection");
  assert.match(idle, /before and after 9,000 idle connections/);
  assert.match(
    idle,
    /^\| fdloop `examples\/echo\.ts` \(`run\(\)`\) \| +48,000 \| +65,000 \| +1\.90 \| 1\.80, 2\.00 \|$/m,
  );
  assert.match(idle, /^\| node +\| +44,000 \| +88,000 \| +4\.85 \| 4\.80, 4\.90 \|$/m);
  assert.match(idle, /^- met: ≤ 2 KiB of RSS per idle connection/m);
});

Deno.test("`renderResults()` renders bytes per HTTP request per server, loop and connection count", () => {
  const md = renderResults(moreFixtures());
  const alloc = section(md, "Allocation on the HTTP path");
  // After the echo allocation section, with the command that sets the new space's size (a list item, wrapped).
  assert.ok(md.indexOf("## Allocation on the echo path") < md.indexOf("## Allocation on the HTTP path"));
  const prose = alloc.replace(/\s+/g, " ");
  assert.ok(
    prose.includes(
      "- **Command:** `deno run -A --v8-flags=--expose-gc,--min-semi-space-size=64,--max-semi-space-size=64 " +
        "bench/http_alloc.ts` - **Data:**",
    ),
    alloc,
  );
  assert.match(alloc, /^- \*\*Data:\*\* \[`results\/http_alloc\.json`\]\(results\/http_alloc\.json\)$/m);
  assert.match(prose, /median \(min–max\) over 7 samples of 5,000 keep-alive requests/);
  assert.match(prose, /\(117-byte responses\)/);
  assert.match(prose, /The young generation holds 68 MiB/);
  assert.match(
    alloc,
    /^\| server +\| loop +\| connections \| B\/request median \(min–max\) \| requests\/s in-process \|$/m,
  );
  assert.match(
    alloc,
    /^\| raw \(`listenHttp\(\)`\) \| `runOnce\(\)` loop \| +50 \| +124\.5 \(120\.0–130\.3\) \| +61,234 \|$/m,
  );
  assert.match(alloc, /^\| `serve\(\)` +\| `runOnce\(\)` loop \| +50 \| +1494\.0 \(1400\.0–1500\.0\) \| +55,000 \|$/m);
  // A row whose samples saw a GC is marked, and the mark explained.
  assert.match(alloc, /^\| `serve\(\)` +\| `await run\(\)` +\| +1 \| +5\.2 \(4\.9–6\.0\) † \| +40,000 \|$/m);
  assert.match(alloc, /^† a GC ran during some samples: those read low\.$/m);
  // serve() ÷ raw only where both were measured: runOnce at 50 connections, 1494 / 124.5.
  assert.match(prose, /`serve\(\)` allocates 12\.00× \(12\.00×–12\.00×\) the raw API's bytes per request/);
  assert.doesNotMatch(alloc, /MISSED|met:/);

  // No `rows` (an unknown shape): the generic table.
  const files = moreFixtures();
  files.http_alloc = { ...META, command: "deno run -A bench/http_alloc.ts", figures: [{ name: "x", bytes: 1 }] };
  assert.match(section(renderResults(files), "Allocation on the HTTP path"), /^\| name \| bytes \|$/m);
  // Optional: no section while the file is missing.
  delete files.http_alloc;
  assert.doesNotMatch(renderResults(files), /Allocation on the HTTP path/);
});

Deno.test("`renderResults()` renders the profile: categories before and after, top functions, the C floor", () => {
  const md = renderResults(moreFixtures());
  const p = section(md, "Where the user-space time goes");
  assert.match(p, /^- \*\*Command:\*\* `deno run -A bench\/load\/profile\.ts` \(or `deno task bench:profile`\)$/m);
  assert.match(p, /^- \*\*before\*\*: commit `43cb7c8` \(reactor: a change\); 2026-01-02 03:04 UTC;/m);
  assert.match(p, /^- \*\*after\*\*: commit `7d1bb83` /m);
  // fdloop servers first, then the C floors.
  const headings = [...p.matchAll(/^### (.*)$/gm)].map((m) => m[1]);
  assert.deepEqual(headings, ["fdloop `runSync()` echo", "fdloop `serve()`", "C epoll echo"]);

  const sync = p.slice(p.indexOf("### fdloop `runSync()` echo"), p.indexOf("### fdloop `serve()`"));
  assert.match(
    sync,
    /^\| user-space samples in +\| before: share \| before: µs\/rt \| after: share \| after: µs\/rt \|$/m,
  );
  assert.match(sync, /^\| libc syscall wrappers .*\| +50\.0% \| +1\.500 \| +60\.0% \| +1\.500 \|$/m);
  assert.match(sync, /^\| JavaScript, JIT-compiled .*\| +30\.0% \| +0\.900 \| +30\.0% \| +0\.750 \|$/m);
  assert.match(sync, /^\| user CPU, total +\| +100% \| +3\.000 \| +100% \| +2\.500 \|$/m);
  // The C floor of the same run: 3.0 / 2.0, and outside the syscall wrappers 1.5 against 0.5.
  assert.match(
    sync,
    /^- before: 50,000 round trips\/s, 1,000 user samples, system CPU 10\.000 µs\/rt; 3\.000 µs of user CPU/m,
  );
  assert.match(
    sync.replace(/\s+/g, " "), // list items wrap at 120 columns
    /3\.000 µs of user CPU per round trip, 1\.50× the C floor's 2\.000 µs; outside libc's syscall wrappers 1\.500 µs against the C floor's 0\.500 µs/,
  );
  assert.match(sync, /^\| `#dispatchIO` \| `reactor\/reactor\.ts:478:121` +\| TurboFan +\| 20\.0% \| 0\.500 \|$/m);
  assert.match(sync, /^Builtins, after: `RecordWriteSaveFP` 2\.0%\.$/m);
  assert.match(sync, /^libc syscall wrappers, after: `send` 36\.0%, `recv` 24\.0%\.$/m);

  // Only in the after run: no before figures, µs per request, no C floor for HTTP.
  const fetch = p.slice(p.indexOf("### fdloop `serve()`"), p.indexOf("### C epoll echo"));
  assert.match(fetch, /^\| user CPU, total +\| +— \| +— \| +100% \| +5\.000 \|$/m);
  assert.match(fetch, /after: µs\/req/);
  assert.match(fetch.replace(/\s+/g, " "), /5\.000 µs of user CPU per request \(no C floor in this run\)/);
  assert.match(fetch, /^\| `get url` +\| `http\/fetch_request\.ts:48:68` \| Maglev, Sparkplug \|/m);

  // A C floor: no JavaScript rows, no floor note.
  const c = p.slice(p.indexOf("### C epoll echo"));
  assert.doesNotMatch(c, /JavaScript|V8 builtins|trampolines/);
  assert.match(c, /^- after: 50,000 round trips\/s, 1,000 user samples, system CPU 10\.000 µs\/rt$/m);
});

Deno.test("`renderResults()` renders files of unknown shape as a generic table", () => {
  const md = renderResults(moreFixtures());
  assert.match(section(md, "other"), /^\| name \| +rate \| cpuUs \| +syscalls \|$/m);
  assert.match(section(md, "other"), /^\| a +\| 1,000 \(900–1,100\) \| +5\.20 \| recv 1, send 1 \|$/m);
  assert.match(section(md, "empty"), /No table of figures was found/);
});

Deno.test("`renderResults()` is deterministic and already formatted as `deno fmt` writes it", async () => {
  const md = renderResults(moreFixtures());
  assert.equal(renderResults(moreFixtures()), md);
  assert.ok(!md.includes(new Date().toISOString().slice(0, 10)), "no date of rendering");
  const fmt = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--line-width=120", "--ext=md", "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = fmt.stdin.getWriter();
  await w.write(new TextEncoder().encode(md));
  await w.close();
  const out = await fmt.output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  assert.equal(new TextDecoder().decode(out.stdout), md);
});

Deno.test("`wrapMarkdown()` wraps prose and list items but not code spans, tables or headings", () => {
  const long = Array.from({ length: 30 }, (_, i) => `word${i}`).join(" ");
  const code = "`" + "x ".repeat(70).trim() + "`";
  const text = [`| ${long} |`, `## ${long}`, long, `- item ${long} ${code}`].join("\n");
  const lines = wrapMarkdown(text, 60).split("\n");
  assert.equal(lines[0], `| ${long} |`);
  assert.equal(lines[1], `## ${long}`);
  assert.ok(lines.slice(2).every((l) => l.length <= 60 || l.trim() === code), lines.join("\n"));
  assert.ok(lines.includes(`  ${code}`), "a long code span stays whole on its own line");
  assert.match(lines.find((l) => l.startsWith("- "))!, /^- item word0 /);
});

// ---------------------------------------------------------------- the committed file

Deno.test("the committed bench/RESULTS.md is what the committed JSON renders to", () => {
  const committed = Deno.readTextFileSync(RESULTS_MD);
  assert.equal(
    committed,
    renderResults(readResults()),
    "bench/RESULTS.md is out of date: run `deno task bench:results` (and commit both)",
  );
});

Deno.test("every committed results file carries the run metadata", () => {
  for (const [name, d] of Object.entries(readResults())) {
    assert.match(d.date, /^\d{4}-\d\d-\d\dT/, `${name}.json: date`);
    assert.match(d.command, /^(taskset -c \S+ )?deno (run|task) /, `${name}.json: command`);
    assert.ok(d.machine?.cpu ?? d.versions?.cpu, `${name}.json: CPU model`);
    assert.ok(d.versions?.deno, `${name}.json: Deno version`);
  }
});

// ---------------------------------------------------------------- bench/_meta.ts

Deno.test("`markdownTable()` pads and aligns, and colour changes only escape codes", () => {
  const cols = [{ title: "name" }, { title: "n", align: "right" as const }, { title: "c", align: "center" as const }];
  const rows = [["a", { text: "1.5×", style: "green" as const }, "x"], ["long name", "12", "yy"]];
  const plain = markdownTable(cols, rows, false);
  assert.equal(
    plain,
    [
      "| name      |    n |  c  |",
      "| --------- | ---: | :-: |",
      "| a         | 1.5× |  x  |",
      "| long name |   12 | yy  |",
    ].join("\n"),
  );
  const coloured = markdownTable(cols, rows, true);
  assert.notEqual(coloured, plain);
  assert.ok(coloured.includes("\x1b[32m1.5×"), "the styled cell is green");
  assert.equal(stripColour(coloured), plain);
});

Deno.test("`runMeta()` and its parts", () => {
  const m = runMeta();
  assert.match(m.date, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.match(m.command, /^(taskset -c \S+ )?deno /);
  assert.equal(commandLine(), m.command);
  assert.ok(m.machine.cores >= 1 && m.machine.cpu && m.machine.kernel);
  assert.equal(m.versions.deno, Deno.version.deno);
  assert.equal(versionOf("v20.20.2"), "20.20.2");
  assert.equal(versionOf("Python 3.11.7"), "3.11.7");
  assert.equal(versionOf("debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer"), "debian/4.1.0-3+b2");
  assert.equal(versionOf(""), null);
  assert.equal(shellQuote("--rounds=3"), "--rounds=3");
  assert.equal(shellQuote("a b'c"), `'a b'\\''c'`);
  assert.equal(median([3, 1, 2, 10]), 2.5);
  assert.deepEqual(spreadOf([3, 1, 2]), { median: 2, min: 1, max: 3 });
});

Deno.test("`Progress` writes what runs and which round", () => {
  const lines: string[] = [];
  const p = new Progress("demo", (l) => lines.push(l));
  p.step("warming up");
  p.round(2, 5, "epoll at N = 16");
  assert.deepEqual(lines.map((l) => l.replace(/\[\d+s\]/, "[Ns]")), [
    "demo [Ns] warming up",
    "demo [Ns] round 2/5: epoll at N = 16",
  ]);
});

// ---------------------------------------------------------------- verdicts

/** One server of `http_load.json`'s summary: req/s and CPU per request against Deno.serve's, wrk's core busy %. */
function httpRow(
  server: string,
  rateVsDeno: number,
  cpuVsDeno: number,
  loadCorePct: number,
  extra: Partial<HttpSummary> = {},
): HttpSummary {
  return {
    server,
    label: server,
    rate: spread(70000 * rateVsDeno),
    cpuUs: spread(13 * cpuVsDeno),
    userUs: 5 * cpuVsDeno,
    sysUs: 8 * cpuVsDeno,
    rateVsDeno: spread(rateVsDeno),
    cpuVsDeno: spread(cpuVsDeno),
    serverPct: 95,
    loadCorePct,
    otherPct: 0,
    errors: 0,
    non2xx: 0,
    ...extra,
  };
}

const verdictOf = (targets: { target: string; met: boolean | null }[], start: string) => {
  const t = targets.find((x) => x.target.startsWith(start));
  assert.ok(t, `no target ${start}`);
  return t.met;
};

Deno.test("`httpTargets()`: issue 7's thresholds from the figures", () => {
  const summary = (raw: HttpSummary, fetch: HttpSummary, piped: number) => ({
    plain: [raw, fetch, httpRow("deno", 1, 1, 70)],
    pipelined: [httpRow("fdloop-raw", piped, 1 / piped, 90), httpRow("deno", 1, 1, 60)],
  });
  // Raw: 1.2× the rate, or 0.8× the CPU; either is enough, the bounds included.
  let t = httpTargets(summary(httpRow("fdloop-raw", 1.2, 1.1, 70), httpRow("fdloop-fetch", 1, 1, 70), 6), 16);
  assert.equal(verdictOf(t, "raw API ≥ 1.2×"), true);
  assert.equal(verdictOf(t, "16-deep pipelining"), true);
  assert.equal(verdictOf(t, "serve() ≥ 1.0×"), true);
  t = httpTargets(summary(httpRow("fdloop-raw", 1.0, 0.8, 70), httpRow("fdloop-fetch", 0.99, 0.9, 70), 5.99), 16);
  assert.equal(verdictOf(t, "raw API ≥ 1.2×"), true);
  assert.equal(verdictOf(t, "16-deep pipelining"), false);
  assert.equal(verdictOf(t, "serve() ≥ 1.0×"), false);
  t = httpTargets(summary(httpRow("fdloop-raw", 1.19, 0.81, 70), httpRow("fdloop-fetch", 1, 1, 70), 6), 16);
  assert.equal(verdictOf(t, "raw API ≥ 1.2×"), false);
  // User CPU ≤ 1.0 µs per request.
  assert.equal(verdictOf(t, "raw API user CPU"), false);
  t = httpTargets({ plain: [httpRow("fdloop-raw", 1, 1, 70, { userUs: 1.0, rateVsDeno: null, cpuVsDeno: null })] });
  assert.equal(verdictOf(t, "raw API user CPU"), true);
  assert.equal(t.length, 1); // no Deno.serve row: no ratio to judge
});

Deno.test("`httpTargets()`: a req/s tie while wrk's core is saturated does not meet serve() ≥ 1.0× at more CPU", () => {
  const plain = (fetch: HttpSummary, denoLoad = 99) => ({
    plain: [fetch, httpRow("deno", 1, 1, denoLoad)],
  });
  // The published case: 1.00× the req/s (above 1 by noise), 1.02× the CPU per request, wrk at 98–99%.
  let t = httpTargets(plain(httpRow("fdloop-fetch", 1.0015, 1.024, 98)));
  assert.equal(verdictOf(t, "serve()"), false);
  assert.match(t[0].value, /^1\.00× req\/s, CPU\/request 1\.02×; wrk's core 98% \/ 99%: load-bound$/);
  // Load-bound but no dearer per request: met.
  t = httpTargets(plain(httpRow("fdloop-fetch", 1.0, 0.97, 98)));
  assert.equal(verdictOf(t, "serve()"), true);
  // wrk's core saturated for Deno.serve alone is load-bound too.
  t = httpTargets(plain(httpRow("fdloop-fetch", 1.05, 1.02, 80), 96));
  assert.equal(verdictOf(t, "serve()"), false);
  // Not load-bound: the req/s ratio decides, as the issue words it.
  t = httpTargets(plain(httpRow("fdloop-fetch", 1.05, 1.02, 80), 80));
  assert.equal(verdictOf(t, "serve()"), true);
  assert.doesNotMatch(t[0].value, /load-bound/);
});

Deno.test("`httpTargets()`: errors or non-2xx responses keep a target from being met", () => {
  const t = httpTargets({
    plain: [httpRow("fdloop-raw", 2, 0.5, 70, { non2xx: 12 }), httpRow("deno", 1, 1, 70)],
    pipelined: [httpRow("fdloop-raw", 9, 0.1, 70), httpRow("deno", 1, 1, 60, { errors: 3 })],
  });
  assert.equal(verdictOf(t, "raw API ≥ 1.2×"), false);
  assert.match(t[0].value, /12 socket errors or non-2xx responses on fdloop-raw/);
  // Errors on the reference's side: not measured.
  assert.equal(verdictOf(t, "16-deep pipelining"), null);
  assert.match(t.at(-1)!.value, /3 socket errors or non-2xx responses on deno/);
});

Deno.test("`renderResults()` renders issue 7's verdicts from the HTTP figures, not the file's own", () => {
  const files = fixtures();
  const http = files.http_load as { summary: Record<string, HttpSummary[]>; targets: unknown[] };
  http.summary.plain.push(httpRow("fdloop-fetch", 1.0015, 1.024, 98));
  http.targets = [{ target: "serve() ≥ 1.0× Deno.serve req/s", value: "1.00×", met: true }];
  const md = section(renderResults(files), "HTTP servers side by side");
  assert.match(md, /^- \*\*MISSED\*\*: serve\(\) ≥ 1\.0× Deno\.serve req\/s [^]*: load-bound$/m);
  assert.doesNotMatch(md, /^- met: serve/m);
});

Deno.test("`allocTarget()`: under the bound only counts when no GC ran within the samples", () => {
  const row = (mode: string, bytes: number, gcDuringSamples = 0) => ({
    client: "raw",
    mode,
    conns: 50,
    bytesPerRoundTrip: bytes,
    gcDuringSamples,
  });
  assert.equal(allocTarget({ rows: [row("run", 0.5), row("runSync", 0.3)] }).met, true);
  const gc = allocTarget({ rows: [row("run", 0.5), row("runSync", 0.3, 2)] });
  assert.equal(gc.met, null);
  assert.match(gc.value, /GC ran during samples of 1 row\(s\)/);
  // A miss stays a miss: a GC only makes the figures read low.
  assert.equal(allocTarget({ rows: [row("run", 20.9, 1), row("runSync", 0.3)] }).met, false);
  assert.equal(allocTarget({ rows: [row("run", 2), row("runSync", 0.3)] }).met, false);
  assert.equal(allocTarget(undefined).met, null);
});

Deno.test("`scalingGoals()` judges the scaling goals from the rounds, not the file's own verdicts", () => {
  const point = (n: number, rounds: number[]) => ({ n, ns: median(rounds), rounds });
  const fe = { impl: "fdloop", mechanism: "epoll", points: [point(16, [100, 110, 90]), point(1024, [118, 125, 100])] };
  const ce = { impl: "CPython", mechanism: "epoll", points: [point(16, [150, 160, 140]), point(1024, [160, 170, 99])] };
  // Growth per round 1.18, 1.136, 1.111: median 1.136; of medians 118 / 100: flat. Below CPython everywhere.
  assert.deepEqual(scalingGoals([fe, ce]), { flat: true, below: true });
  // A round where CPython is faster does not change the median; a median above fdloop's does.
  const slow = { ...ce, points: [ce.points[0], point(1024, [117, 119, 200])] };
  assert.deepEqual(scalingGoals([fe, slow]), { flat: true, below: false });
  const steep = { ...fe, points: [fe.points[0], point(1024, [121, 125, 100])] };
  assert.equal(scalingGoals([steep])!.flat, false); // of medians 121 / 100 > 1.2
  assert.equal(scalingGoals([steep])!.below, null);
  // Without rounds (older files) the file's verdicts stand.
  assert.equal(
    scalingGoals([{ impl: "fdloop", mechanism: "epoll", points: [{ n: 16, ns: 1 }, { n: 64, ns: 9 }] }]),
    null,
  );
  const files = fixtures();
  const scaling = files.scaling as { results: unknown[]; summary: { fdloopEpollFlat: boolean } };
  scaling.results = [steep];
  scaling.summary.fdloopEpollFlat = true; // stale
  assert.match(section(renderResults(files), "Backend scaling beside CPython"), /flat .*→ \*\*MISSED\*\*$/m);
});
