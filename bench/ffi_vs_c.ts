/**
 * The same libc calls timed from C and from Deno FFI, side by side.
 *
 *   deno run -A bench/ffi_vs_c.ts [iterations=1000000] [rounds=3]
 *
 * Compiles `bench/c/ffi_baseline.c` with `cc -O2` into a temporary directory,
 * then alternates rounds: the C program, then the Deno loops (each warmed up
 * with 1/100 of its iterations, like the C side). Prints the median ns/op per
 * call with the min–max over the rounds, and Deno/C, as a Markdown table
 * (coloured on a terminal), progress on stderr, and writes the figures with
 * the run's metadata to `bench/results/ffi_vs_c.json` (rendered into
 * `bench/RESULTS.md`). Not pinned to a core: run under `taskset -c 1` for
 * steadier numbers.
 *
 * @module
 */

import { AF_UNIX, close, EPOLL_EVENT_SIZE, epollCreate, F_GETFD, SOCK_STREAM, socketpair, sym } from "../ffi/mod.ts";
import { median, Progress, runMeta, spreadOf } from "./_meta.ts";
import { type FfiRow, ffiTable, RESULTS_DIR, writeResults } from "./results.ts";

const iterations = Number(Deno.args[0] ?? 1_000_000);
const rounds = Number(Deno.args[1] ?? 3);
if (!(iterations > 0) || !(rounds > 0)) throw new TypeError("usage: ffi_vs_c.ts [iterations] [rounds]");

const source = new URL("./c/ffi_baseline.c", import.meta.url).pathname;
const dir = await Deno.makeTempDir({ prefix: "fdloop_ffi_vs_c_" });
/** fds opened by the Deno loops, closed at the end. */
const resources: number[] = [];

/** Raw FFI loops, named like the C program's output lines. */
function denoLoops(): Map<string, () => void> {
  const ep = epollCreate();
  const events = new Uint8Array(64 * EPOLL_EVENT_SIZE);
  const eventsPtr = Deno.UnsafePointer.of(events);
  const [a, b] = socketpair(AF_UNIX, SOCK_STREAM);
  const wbuf = new Uint8Array(64);
  const rbuf = new Uint8Array(64);
  resources.push(ep, a, b);
  const check = (ok: boolean, what: string) => {
    if (!ok) throw new Error(`${what} misbehaved`);
  };
  return new Map([
    ["epoll_wait(ep, buf, 64, 0)", () => check(sym.epoll_wait(ep, eventsPtr, 64, 0) === 0, "epoll_wait")],
    ["write 64 B + read 64 B (socketpair)", () => {
      check(sym.write(a, wbuf, 64) === 64, "write");
      check(sym.read(b, rbuf, 64) === 64, "read");
    }],
    ["read 64 B, empty socket (EAGAIN)", () => check(sym.read(b, rbuf, 64) === -1, "read")],
    ["fcntl(fd, F_GETFD, 0)", () => check(sym.fcntl(a, F_GETFD, 0) >= 0, "fcntl")],
  ]);
}

function timeLoop(op: () => void): number {
  for (let i = 0; i < iterations / 100; i++) op();
  const t0 = performance.now();
  for (let i = 0; i < iterations; i++) op();
  return ((performance.now() - t0) * 1e6) / iterations;
}

/** One C call's line: wall ns per call, and the user and system CPU ns per call that getrusage() charged. */
interface CTimes {
  ns: number;
  user: number;
  sys: number;
}

async function runC(exe: string): Promise<Map<string, CTimes>> {
  const out = await new Deno.Command(exe, { args: [String(iterations)], stdout: "piped", stderr: "piped" }).output();
  if (out.code !== 0) throw new Error(`${exe} failed: ${new TextDecoder().decode(out.stderr)}`);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return new Map(
    lines.map((l) => l.split("\t")).map(([name, ns, user, sys]) => {
      const times = { ns: Number(ns), user: Number(user), sys: Number(sys) };
      if (!Object.values(times).every(Number.isFinite)) throw new Error(`${exe} printed a bad line for ${name}`);
      return [name, times];
    }),
  );
}

const meta = runMeta();
const progress = new Progress("ffi_vs_c");
try {
  const exe = `${dir}/ffi_baseline`;
  progress.step(`compiling bench/c/ffi_baseline.c (cc -O2, ${meta.versions.cc ?? "unknown cc"})`);
  const cc = await new Deno.Command("cc", { args: ["-O2", "-Wall", "-o", exe, source], stderr: "piped" }).output();
  if (cc.code !== 0) throw new Error(`cc failed:\n${new TextDecoder().decode(cc.stderr)}`);

  const loops = denoLoops();
  const c = new Map<string, CTimes[]>();
  const deno = new Map<string, number[]>();
  for (let r = 0; r < rounds; r++) {
    progress.round(r + 1, rounds, `C (${iterations} iterations per call)`);
    for (const [name, times] of await runC(exe)) c.set(name, [...(c.get(name) ?? []), times]);
    progress.round(r + 1, rounds, `Deno FFI (${iterations} iterations per call)`);
    for (const [name, op] of loops) deno.set(name, [...(deno.get(name) ?? []), timeLoop(op)]);
  }

  console.log(
    `${iterations} iterations, ${rounds} rounds; median ns/op (min–max); ${Deno.version.deno}, ${Deno.build.arch}`,
  );
  const results: FfiRow[] = [];
  for (const [name, ds] of deno) {
    const ct = c.get(name);
    if (!ct) throw new Error(`the C program printed no line for ${name}`);
    const cs = ct.map((t) => t.ns);
    const ratio = median(ds) / median(cs);
    results.push({
      call: name,
      c: { ...spreadOf(cs), rounds: cs },
      cUser: { ...spreadOf(ct.map((t) => t.user)), rounds: ct.map((t) => t.user) },
      cSys: { ...spreadOf(ct.map((t) => t.sys)), rounds: ct.map((t) => t.sys) },
      deno: { ...spreadOf(ds), rounds: ds },
      ratio,
    });
  }
  console.log(ffiTable(results));
  await writeResults(new URL("ffi_vs_c.json", RESULTS_DIR), {
    ...meta,
    settings: {
      iterations,
      rounds,
      arch: Deno.build.arch,
      method: "each round runs the C program (cc -O2) then the Deno FFI loops; every loop is warmed up with 1/100 " +
        "of its iterations, then timed over all of them; median ns/op over rounds, min–max; ratio: Deno median ÷ " +
        "C median; the C program's user and system CPU per call from getrusage() around each timed loop",
    },
    results,
  });
} finally {
  for (const fd of resources) close(fd);
  await Deno.remove(dir, { recursive: true });
}
