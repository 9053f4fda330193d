/**
 * Memory per idle connection of the echo servers (issue 9's test): start a
 * server, read its RSS, open `--conns` connections to it (default 9,000),
 * echo one 64-byte message on each, let it settle, read its RSS again; the
 * delta divided by the connections is what a connection that only waits
 * costs the server. RSS is `VmRSS` from `/proc/PID/status` (anonymous and
 * file pages; the kernel's socket buffers are not in it).
 *
 *   deno run -A bench/load/idle_memory.ts [--conns 9000] [--only fdloop,node] [--repeat 1]
 *
 * The client is a Node script (`node -e`) holding every connection open;
 * each side needs `--conns` fds plus a few, so the soft `ulimit -n` must be
 * above that (20,000 here). Servers: fdloop's `examples/echo.ts` (`run()`),
 * Node `net` (`bench/load/node_echo.mjs`), and, if asked for, `Deno.listen`
 * (`bench/load/deno_echo.ts`) and the C server (`bench/c/echo_baseline.c`,
 * compiled with `cc -O2`).
 *
 * Prints a Markdown table (progress to stderr) and writes the figures as JSON
 * to `bench/results/echo_idle_memory.json`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type Cell, markdownTable, median, Progress, runMeta } from "../_meta.ts";
import { writeResults } from "../results.ts";
import { checkServers, compileC, list, ROOT } from "./_proc.ts";

const HERE = new URL("./", import.meta.url);
const DENO = Deno.execPath();

const SERVERS: Record<string, { label: string; argv: string[] }> = {
  fdloop: {
    label: "fdloop `examples/echo.ts` (`run()`)",
    argv: [DENO, "run", "--allow-ffi", new URL("examples/echo.ts", ROOT).pathname, "--port", "0"],
  },
  "fdloop-sync": {
    label: "fdloop `examples/echo.ts --sync`",
    argv: [DENO, "run", "--allow-ffi", new URL("examples/echo.ts", ROOT).pathname, "--port", "0", "--sync"],
  },
  node: { label: "Node `net`", argv: ["node", new URL("node_echo.mjs", HERE).pathname, "--port", "0"] },
  deno: {
    label: "`Deno.listen`",
    argv: [DENO, "run", "--allow-net", new URL("deno_echo.ts", HERE).pathname, "--port", "0"],
  },
  c: { label: "C epoll", argv: [] },
};

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    conns: { type: "string", default: "9000" },
    only: { type: "string", default: "fdloop,node" },
    repeat: { type: "string", default: "1" },
    settle: { type: "string", default: "2" },
    out: { type: "string", default: new URL("bench/results/echo_idle_memory.json", ROOT).pathname },
    help: { type: "boolean" },
  },
});
if (flags.help) {
  console.log(`Usage: deno run -A bench/load/idle_memory.ts [options]

Options:
  --conns <n>      Idle connections (default 9000)
  --only <list>    Servers, of: ${Object.keys(SERVERS).join(", ")} (default fdloop,node)
  --repeat <n>     Measurements per server, each with a fresh server (default 1)
  --settle <s>     Seconds to wait before each RSS reading (default 2)
  --out <file>     JSON results (default bench/results/echo_idle_memory.json)`);
  Deno.exit(0);
}
const conns = Number(flags.conns);
const repeat = Number(flags.repeat);
const settle = Number(flags.settle);
const names = list(flags.only);
if (!(Number.isInteger(conns) && conns > 0 && Number.isInteger(repeat) && repeat > 0 && settle >= 0)) {
  console.error("--conns and --repeat must be positive integers, --settle at least 0");
  Deno.exit(2);
}
checkServers(names, SERVERS);
if (names.includes("c")) {
  const bin = await compileC("echo_baseline", "fdloop_idle_mem_");
  if (!bin) {
    console.error("Cannot compile bench/c/echo_baseline.c (is cc installed?)");
    Deno.exit(1);
  }
  SERVERS.c.argv = [bin, "0"];
}

/** The Node client: opens `conns` connections (200 at a time), echoes 64 bytes on each, prints `ready`, holds them until stdin closes. */
const CLIENT = `
import net from "node:net";
const [port, total] = process.argv.slice(-2).map(Number);
const msg = Buffer.alloc(64, 0x61);
const sockets = [];
let started = 0, done = 0;
function fail(e) { console.error("idle client: " + e); process.exit(1); }
function one() {
  if (started >= total) return;
  started++;
  const s = net.connect({ host: "127.0.0.1", port, noDelay: true });
  sockets.push(s);
  let got = 0;
  s.on("connect", () => s.write(msg));
  s.on("data", (d) => {
    got += d.length;
    if (got === 64) {
      if (++done === total) console.log("ready");
      else one();
    }
  });
  s.on("error", (e) => fail(e.message));
}
for (let i = 0; i < 200; i++) one();
process.stdin.on("data", () => {});
process.stdin.on("end", () => { for (const s of sockets) s.destroy(); process.exit(0); });
`;

function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]);
}

/** Lines of a child's stdout, awaited one regex at a time. */
async function waitFor(
  lines: ReadableStreamDefaultReader<string>,
  re: RegExp,
  what: string,
  timeoutMs: number,
): Promise<RegExpExecArray> {
  let buf = "";
  const timer = setTimeout(() => lines.cancel(`${what}: timed out`), timeoutMs);
  try {
    for (;;) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`${what}: ended without ${re}`);
      buf += value;
      const m = re.exec(buf);
      if (m) return m;
    }
  } finally {
    clearTimeout(timer);
  }
}

const sleep = (s: number) => new Promise((r) => setTimeout(r, s * 1000));

interface Sample {
  server: string;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  perConnectionKiB: number;
}

async function measure(name: string): Promise<Sample> {
  const [cmd, ...args] = SERVERS[name].argv;
  const server = new Deno.Command(cmd, {
    args,
    cwd: ROOT.pathname,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1" },
  }).spawn();
  const out = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let client: Deno.ChildProcess | undefined;
  try {
    const m = await waitFor(out, /listening on [^\n]*:(\d+)\n/, name, 15_000);
    await sleep(settle);
    const before = rssKiB(server.pid);
    client = new Deno.Command("node", {
      args: ["--input-type=module", "-e", CLIENT, "--", m[1], String(conns)],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const t0 = performance.now();
    await waitFor(client.stdout.pipeThrough(new TextDecoderStream()).getReader(), /ready\n/, "client", 120_000);
    progress.step(`${name}: ${conns} connections up and echoed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    await sleep(settle);
    const after = rssKiB(server.pid);
    return { server: name, rssBeforeKiB: before, rssAfterKiB: after, perConnectionKiB: (after - before) / conns };
  } finally {
    if (client) {
      await client.stdin.close().catch(() => {});
      await client.status;
    }
    try {
      server.kill("SIGINT");
    } catch {
      // Gone.
    }
    await out.cancel().catch(() => {});
    await server.status;
  }
}

const progress = new Progress("idle_memory");
const samples: Sample[] = [];
for (let r = 0; r < repeat; r++) {
  for (const name of names) {
    progress.round(r + 1, repeat, `${name}: RSS before and with ${conns} idle connections`);
    const s = await measure(name);
    samples.push(s);
    progress.step(
      `${name}: ${s.rssBeforeKiB} KiB → ${s.rssAfterKiB} KiB, ${s.perConnectionKiB.toFixed(2)} KiB per connection`,
    );
  }
}

const meta = runMeta();
const rows: Cell[][] = names.map((n) => {
  const mine = samples.filter((s) => s.server === n);
  const per = median(mine.map((s) => s.perConnectionKiB));
  return [
    SERVERS[n].label,
    median(mine.map((s) => s.rssBeforeKiB)).toLocaleString("en-US"),
    median(mine.map((s) => s.rssAfterKiB)).toLocaleString("en-US"),
    n.startsWith("fdloop") ? { text: per.toFixed(2), style: per <= 2 ? "green" : "red" } : per.toFixed(2),
    ...(repeat > 1 ? [mine.map((s) => s.perConnectionKiB.toFixed(2)).join(", ")] : []),
  ];
});
console.log(
  `### Memory per idle connection: ${conns.toLocaleString("en-US")} connections, one 64-byte echo each ` +
    `(server VmRSS delta ÷ connections)\n\n\`${meta.command}\` — ${meta.machine.cpu}, ${meta.machine.cores} CPUs, ` +
    `Linux ${meta.machine.kernel}, Deno ${meta.versions.deno}, Node ${meta.versions.node}. ` +
    "Issue 9's target for fdloop: ≤ 2 KiB.\n",
);
console.log(
  markdownTable(
    [
      { title: "server" },
      { title: "RSS before (KiB)", align: "right" },
      { title: `RSS with ${conns} (KiB)`, align: "right" },
      { title: "KiB per connection", align: "right" },
      ...(repeat > 1 ? [{ title: "samples" }] : []),
    ],
    rows,
  ),
);
await writeResults(flags.out, {
  ...meta,
  settings: { conns, repeat, settleSeconds: settle, messageBytes: 64 },
  servers: Object.fromEntries(names.map((n) => [n, SERVERS[n].label])),
  samples,
});
