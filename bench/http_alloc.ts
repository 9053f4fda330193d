/**
 * Heap bytes allocated per HTTP request on the server side: the method of
 * `bench/echo_alloc.ts` (a forced GC, then `heapUsed` before and after a
 * batch of work) applied to `GET /` keep-alive requests on loopback inside
 * one process. A server and N raw client sockets share one `Reactor`; each
 * client is a bare non-blocking socket on `reactor.addReader()` (one `recv`
 * and one `send` into preallocated buffers, which allocates nothing — see
 * `bench/dispatch_alloc.ts`), keeping one request in flight (the request
 * `wrk` sends) and sending the next when the whole response has arrived, so
 * the figure is the server's alone.
 *
 * Two servers, the two routes of `examples/http_server.ts` that answer `/`:
 * - **raw**: `listenHttp()` with `res.setHeaders(plain).end(HELLO)`, the
 *   headers prepared once (`PreparedHeaders`) and the body bytes encoded once;
 * - **serve**: `serve()` with `() => new Response("Hello, World!", { headers:
 *   { "content-type": "text/plain" } })`, the fetch-style handler.
 *
 * Each is driven three ways — a `runOnce()` loop, `runSync()` and
 * `await run()` (the mode `serve()` normally runs in) — with 1 and with 50
 * connections (the load benchmark's). All three complete `serve()` requests:
 * a handler that returns a plain `Response` at once is answered within the
 * I/O callback, with no promise turn, so the synchronous modes need no
 * microtasks (a handler returning a promise would need `run()`).
 *
 * A scavenge during a sample frees the garbage allocated before it, and
 * `heapUsed` then reads far too low (with V8's default young generation, a
 * few bytes per request where the truth is hundreds), so the script needs
 * one large enough to hold a whole sample (5,000 `serve()` requests take
 * about 8 MB):
 *
 *   deno run -A --v8-flags=--expose-gc,--min-semi-space-size=64,--max-semi-space-size=64 bench/http_alloc.ts
 *
 * It refuses to run with a smaller new space, and still watches every sample
 * with `node:v8`'s `GCProfiler` (which records each scavenge and mark-compact
 * as it happens): a row whose samples saw a GC, or whose `heapUsed` went down,
 * is flagged as reading low.
 *
 * Options: `--requests 5000` per sample, `--samples 7` (the median is
 * reported, with min–max), `--warmup 4` batches before the samples,
 * `--servers raw,serve`, `--modes runOnce,runSync,run`, `--conns 1,50`,
 * `--out` (default `bench/results/http_alloc.json`, written with `-A` only,
 * which also renders `bench/RESULTS.md` anew).
 *
 * `--sites` also samples one more batch per row with the V8 sampling heap
 * profiler (`node:inspector`, `HeapProfiler.startSampling` every 64 bytes,
 * collected objects included) and prints the top allocating functions with
 * their bytes per request (`--sites-top 12`): where the bytes go. The
 * profiler only knows the allocating function, and Deno gives it the
 * transpiled JavaScript's positions, so the `file:line` of a TypeScript
 * function is found by its name (best effort, marked `~` when ambiguous).
 * TurboFan inlining attributes an inlined callee's allocations to its caller:
 * add `--no-turbo-inlining` to the V8 flags for precise sites (the figures
 * then are those of a less optimised server, so do not save them over the
 * committed ones: pass `--out /tmp/x.json` or run without `-A`).
 *
 *   deno run -A --v8-flags=--expose-gc,--min-semi-space-size=64,--max-semi-space-size=64,--no-turbo-inlining \
 *     bench/http_alloc.ts --sites --modes runOnce --conns 50 --out /tmp/http_alloc_sites.json
 *
 * @module
 */

import { Session } from "node:inspector";
import { parseArgs, promisify } from "node:util";
import { allocationGc, PingPong, rawClients, runUntilSettled, sampleBatches } from "./_alloc.ts";
import { median, runMeta } from "./_meta.ts";
import { writeResults } from "./results.ts";
import { listenHttp, PreparedHeaders, serve } from "../http/mod.ts";
import type { HttpServer } from "../http/mod.ts";
import { Reactor } from "../reactor/mod.ts";
import { close } from "../ffi/mod.ts";

const { gc, newSpaceBytes } = allocationGc();

const SERVERS = ["raw", "serve"] as const;
const MODES = ["runOnce", "runSync", "run"] as const;
type ServerKind = typeof SERVERS[number];
type Mode = typeof MODES[number];

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    requests: { type: "string", default: "5000" },
    samples: { type: "string", default: "7" },
    warmup: { type: "string", default: "4" },
    servers: { type: "string", default: SERVERS.join(",") },
    modes: { type: "string", default: MODES.join(",") },
    conns: { type: "string", default: "1,50" },
    sites: { type: "boolean", default: false },
    "sites-top": { type: "string", default: "12" },
    out: { type: "string", default: new URL("results/http_alloc.json", import.meta.url).pathname },
  },
});
const REQUESTS = Number(flags.requests);
const SAMPLES = Number(flags.samples);
const WARMUP = Number(flags.warmup);
const SITES_TOP = Number(flags["sites-top"]);
const positive = (x: number) => Number.isInteger(x) && x > 0;
if (!(positive(REQUESTS) && positive(SAMPLES) && positive(SITES_TOP) && Number.isInteger(WARMUP) && WARMUP >= 0)) {
  console.error("--requests, --samples and --sites-top must be positive integers, --warmup a non-negative one");
  Deno.exit(2);
}
const pick = <T extends string>(text: string, all: readonly T[], what: string): T[] => {
  const xs = text.split(",").map((x) => x.trim()).filter(Boolean);
  const bad = xs.filter((x) => !all.includes(x as T));
  if (bad.length || !xs.length) {
    console.error(`--${what}: use some of ${all.join(",")}`);
    Deno.exit(2);
  }
  return all.filter((x) => xs.includes(x));
};
const servers = pick(flags.servers, SERVERS, "servers");
const modes = pick(flags.modes, MODES, "modes");
const connCounts = flags.conns.split(",").map(Number);
if (!connCounts.every(positive)) {
  console.error("--conns: a comma-separated list of positive integers");
  Deno.exit(2);
}

// What `wrk` sends, and the raw route of examples/http_server.ts.
const REQUEST = new TextEncoder().encode(
  "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
);
const HELLO = new TextEncoder().encode("Hello, World!");
const plain = new PreparedHeaders({ "content-type": "text/plain" });

/** A server and `conns` raw clients on one reactor; `batch(n)` does n requests in all. */
interface Rig {
  /** Bytes of one response (learnt from the first). */
  responseBytes: number;
  batch(n: number): Promise<void>;
  done(): Promise<void>;
}

/** `Content-Length` plus head bytes of the response at the start of `bytes`, or 0 when it is not whole. */
function responseLength(bytes: Uint8Array): number {
  const text = new TextDecoder().decode(bytes);
  const head = text.indexOf("\r\n\r\n");
  const cl = /\r\ncontent-length:\s*(\d+)\r\n/i.exec(text.slice(0, head + 2));
  if (head < 0 || !cl || !text.startsWith("HTTP/1.1 200 ")) return 0;
  return new TextEncoder().encode(text.slice(0, head + 4)).byteLength + Number(cl[1]);
}

function rig(kind: ServerKind, mode: Mode, conns: number): Rig {
  const reactor = new Reactor();
  let server: HttpServer;
  let shutdown: () => Promise<void>;
  if (kind === "raw") {
    server = listenHttp({ host: "127.0.0.1", port: 0, reactor }, (_req, res) => res.setHeaders(plain).end(HELLO));
    shutdown = () => server.shutdown();
  } else {
    const s = serve(
      { reactor, hostname: "127.0.0.1", port: 0, onListen() {} },
      () => new Response("Hello, World!", { headers: { "content-type": "text/plain" } }),
    );
    server = s.server;
    shutdown = () => s.shutdown();
  }
  const port = server.port; // serve(): the same as its addr.port

  const pingPong = new PingPong(reactor, mode);
  let responseBytes = 0;
  const fds = rawClients(pingPong, port, conns, REQUEST, (first) => {
    // The rig's first response: learn its length (it arrives whole on loopback).
    responseBytes = responseLength(first);
    if (responseBytes !== first.byteLength) {
      throw new Error(`unexpected first response: ${new TextDecoder().decode(first)}`);
    }
    return responseBytes;
  });
  for (let spins = 0; server.connectionCount < conns; spins++) {
    if (spins > 1000) throw new Error(`only ${server.connectionCount} of ${conns} connections came up`);
    reactor.runOnce(10);
  }

  return {
    get responseBytes() {
      return responseBytes;
    },
    batch: (n) => pingPong.batch(n),
    async done(): Promise<void> {
      for (const fd of fds) {
        reactor.removeReader(fd);
        close(fd);
      }
      await runUntilSettled(reactor, shutdown(), `the ${kind} server's shutdown`);
      reactor.close();
    },
  };
}

// ---------------------------------------------------------------- allocation sites (--sites)

interface CallFrame {
  functionName: string;
  scriptId: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  callFrame: CallFrame;
  selfSize: number;
  children: ProfileNode[];
}
/** One allocating function: bytes per request, by the sampling profiler's estimate. */
interface Site {
  fn: string;
  location: string;
  bytesPerRequest: number;
}

const textOf = new Map<string, string[] | null>();
function linesOf(path: string): string[] | null {
  if (!textOf.has(path)) {
    try {
      textOf.set(path, Deno.readTextFileSync(path).split("\n"));
    } catch {
      textOf.set(path, null);
    }
  }
  return textOf.get(path)!;
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\#]/g, "\\$&");

const nearest = (xs: number[], to: number) => xs.reduce((a, b) => (Math.abs(b - to) < Math.abs(a - to) ? b : a));
const squeeze = (s: string) => s.replace(/\s+/g, "");

/**
 * `path:line` (1-based) in a TypeScript file of the function the profiler
 * places at `frame.lineNumber`/`columnNumber` of Deno's transpiled JavaScript
 * (the column is that of its parameter list): the TypeScript line defining a
 * function of that name, or else holding the same text (an untyped arrow
 * function), nearest the JavaScript line; `~` when several were candidates,
 * `(JS line)` when nothing matched.
 */
function sourceLine(frame: CallFrame, root: string, jsSource: (id: string) => string[] | null): string {
  const url = frame.url;
  if (!url.startsWith("file://")) return url || "(native)";
  const path = new URL(url).pathname;
  const rel = path.startsWith(root) ? path.slice(root.length) : path;
  const at = (found: number[]) => `${rel}:${nearest(found, frame.lineNumber) + 1}${found.length > 1 ? " ~" : ""}`;
  const js = jsSource(frame.scriptId)?.[frame.lineNumber];
  const lines = linesOf(path);
  if (js === undefined || lines === null) return `${rel}:${frame.lineNumber + 1} (JS line)`;
  // The name before the parameter list: `foo(`, `#foo(`, `get foo(`, `foo = (`, `#foo = async (`.
  const name = /([#\w$]+)\s*(?:=\s*(?:async\s*)?)?$/.exec(js.slice(0, frame.columnNumber))?.[1];
  if (name === "constructor") {
    // The class's constructor: the first `constructor(` after `class <functionName>`.
    const cls = lines.findIndex((l) => new RegExp(`\\bclass\\s+${escapeRe(frame.functionName)}\\b`).test(l));
    const ctor = lines.findIndex((l, i) => i > cls && /^\s*constructor\s*\(/.test(l));
    if (cls >= 0 && ctor >= 0) return `${rel}:${ctor + 1}`;
  } else if (name && !/^(function|async|return|new|await|yield|typeof|void|case|in|of)$/.test(name)) {
    const n = escapeRe(name);
    // An accessor's name says which of the two it is: `get #ended`, `set #ended`.
    const accessor = /^[gs]et /.test(frame.functionName) ? `${frame.functionName.slice(0, 3)}\\s+` : "";
    const def = new RegExp(
      `(function\\*?\\s+${n}\\s*[<(]` +
        `|^\\s*((static|async|get|set|private|protected|public|override|readonly)\\s+)*${accessor}${n}\\s*[<(]` +
        `|${n}\\s*[=:]\\s*(async\\s+)?(function\\b|\\(|[\\w$]+\\s*=>))`,
    );
    const found = lines.flatMap((l, i) => (def.test(l) && !/;\s*$/.test(l) ? [i] : []));
    if (found.length) return at(found);
  }
  // An anonymous function: a TypeScript line with the same text from the parameter list on (untyped arrows).
  const text = squeeze(js.slice(frame.columnNumber));
  if (text.length >= 8) {
    const found = lines.flatMap((l, i) => (squeeze(l).includes(text) ? [i] : []));
    if (found.length) return at(found);
  }
  return `${rel}:${frame.lineNumber + 1} (JS line)`;
}

if (flags.sites) {
  // Fail now rather than after the measurements.
  try {
    const probe = new Session();
    probe.connect();
    probe.disconnect();
  } catch (err) {
    console.error(`--sites needs the inspector: run with -A or --allow-sys (${(err as Error).message})`);
    Deno.exit(2);
  }
}

/** The function's name; a class's field initialisers (placed at the first field) say so. */
function label(frame: CallFrame, js: string | undefined): string {
  const fn = frame.functionName || "(anonymous)";
  const before = js?.slice(0, frame.columnNumber) ?? "x";
  const after = js?.slice(frame.columnNumber) ?? "";
  return before.trim() === "" && /^[#\w$]+\s*[=;]/.test(after) ? `${fn} (field initialisers)` : fn;
}

/** Samples one batch of `rig` with the heap profiler: the top allocating functions, bytes per request. */
async function sites(r: Rig, requests: number): Promise<Site[]> {
  const session = new Session();
  session.connect();
  // deno-lint-ignore no-explicit-any
  const post = promisify(session.post.bind(session)) as (method: string, params?: object) => Promise<any>;
  try {
    await post("HeapProfiler.enable");
    gc();
    await post("HeapProfiler.startSampling", {
      samplingInterval: 64,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
    await r.batch(requests);
    const { profile } = await post("HeapProfiler.stopSampling");
    await post("HeapProfiler.disable");

    const bytes = new Map<string, { frame: CallFrame; size: number }>();
    const walk = (node: ProfileNode) => {
      const f = node.callFrame;
      // Leave out the profiler's own calls (the inspector's post() while sampling starts and stops).
      if (node.selfSize > 0 && f.url !== "ext:deno_node/inspector.js") {
        const key = `${f.functionName}\0${f.url}\0${f.lineNumber}\0${f.columnNumber}`;
        const e = bytes.get(key) ?? { frame: f, size: 0 };
        e.size += node.selfSize;
        bytes.set(key, e);
      }
      for (const c of node.children) walk(c);
    };
    walk(profile.head);

    // Deno reports positions in the transpiled JavaScript: fetch it to name the functions.
    const scripts = new Map<string, string[] | null>();
    await post("Debugger.enable");
    const top = [...bytes.values()].sort((a, b) => b.size - a.size).slice(0, SITES_TOP);
    for (const { frame } of top) {
      if (frame.url.startsWith("file://") && !scripts.has(frame.scriptId)) {
        const src = await post("Debugger.getScriptSource", { scriptId: frame.scriptId }).catch(() => null);
        scripts.set(frame.scriptId, src ? String(src.scriptSource).split("\n") : null);
      }
    }
    await post("Debugger.disable");
    const root = new URL("../", import.meta.url).pathname;
    return top.map(({ frame, size }) => ({
      fn: label(frame, scripts.get(frame.scriptId)?.[frame.lineNumber]),
      location: sourceLine(frame, root, (id) => scripts.get(id) ?? null),
      bytesPerRequest: size / requests,
    }));
  } finally {
    session.disconnect();
  }
}

// ---------------------------------------------------------------- measuring

interface Row {
  server: ServerKind;
  mode: Mode;
  conns: number;
  /** Median over samples of heap bytes allocated per request (heapUsed delta after a forced GC). */
  bytesPerRequest: number;
  min: number;
  max: number;
  /** Samples during which a GC ran (`GCProfiler` saw one, or heapUsed fell): those read low. */
  gcDuringSamples: number;
  /** Median over samples of requests/s, in-process (server and clients on one thread). */
  requestsPerSecond: number;
  /** Bytes of one response. */
  responseBytes: number;
}

const MODE_TEXT: Record<Mode, string> = { runOnce: "`runOnce()` loop", run: "`await run()`", runSync: "`runSync()`" };

const rows: Row[] = [];
const siteLists: { server: ServerKind; mode: Mode; conns: number; sites: Site[] }[] = [];
console.log(
  `### Heap bytes allocated per HTTP request, server side (\`GET /\` keep-alive, one in flight per connection; ` +
    `median of ${SAMPLES} × ${REQUESTS.toLocaleString("en-US")} requests after a forced GC)\n`,
);
console.log("| server | loop | connections | B/request (min–max) | requests/s in-process |");
console.log("| --- | --- | ---: | ---: | ---: |");
for (const kind of servers) {
  for (const mode of modes) {
    for (const conns of connCounts) {
      const r = rig(kind, mode, conns);
      for (let i = 0; i < WARMUP; i++) await r.batch(REQUESTS); // warm up: let V8 optimise the path
      const { perOp: perReq, rates, gcs } = await sampleBatches(gc, r.batch, REQUESTS, SAMPLES);
      if (flags.sites) siteLists.push({ server: kind, mode, conns, sites: await sites(r, REQUESTS) });
      const responseBytes = r.responseBytes;
      await r.done();
      const row: Row = {
        server: kind,
        mode,
        conns,
        bytesPerRequest: median(perReq),
        min: Math.min(...perReq),
        max: Math.max(...perReq),
        gcDuringSamples: gcs,
        requestsPerSecond: median(rates),
        responseBytes,
      };
      rows.push(row);
      console.log(
        `| ${kind} | ${MODE_TEXT[mode]} | ${conns} | ${row.bytesPerRequest.toFixed(1)} (${row.min.toFixed(1)}–${
          row.max.toFixed(1)
        })${gcs ? ` [GC in ${gcs} samples: reads low]` : ""} | ${
          Math.round(row.requestsPerSecond).toLocaleString("en-US")
        } |`,
      );
    }
  }
}

for (const { server, mode, conns, sites } of siteLists) {
  console.log(
    `\n### Top allocating functions: ${server}, ${MODE_TEXT[mode]}, ${conns} connection${conns === 1 ? "" : "s"}\n`,
  );
  console.log("| function | location | B/request |");
  console.log("| --- | --- | ---: |");
  for (const s of sites) {
    console.log(`| \`${s.fn.replace(/\|/g, "\\|")}\` | \`${s.location}\` | ${s.bytesPerRequest.toFixed(1)} |`);
  }
  const total = sites.reduce((a, s) => a + s.bytesPerRequest, 0);
  console.log(`\n(top ${sites.length}: ${total.toFixed(1)} B/request; the sampling profiler's estimate)`);
}

// Writing the JSON needs --allow-write; the metadata reads /proc and runs `node --version` and `cc --version`
// (-A). Asked for only when granted, so a run with --allow-ffi alone neither prompts nor fails.
const write = await Deno.permissions.query({ name: "write", path: flags.out });
if (write.state === "granted") {
  const settings = { requests: REQUESTS, samples: SAMPLES, warmupBatches: WARMUP, newSpaceBytes };
  await writeResults(flags.out, { ...runMeta(), settings, rows });
} else {
  console.error(`not writing ${flags.out}: run with -A to save the figures`);
}
