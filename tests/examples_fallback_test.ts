/**
 * Two things the examples must leave as they found them, each test failing
 * before its fix:
 *
 * - `http_client.ts`: its blocking half tries every address a name resolves
 *   to, in the resolver's order, as its reactor half (`net/dial.ts`) does. The
 *   multi-address name is `fdloop-dual.test` (`::1` and `127.0.0.1`), given
 *   by an `/etc/hosts` bind-mounted in a private mount namespace
 *   (`unshare -rm`): this machine's `localhost` resolves to `127.0.0.1` only.
 *   Where unprivileged namespaces are not allowed, the test is skipped.
 * - `stdin_monitor.ts` and `tcp_client.ts`: `O_NONBLOCK` on fd 0 belongs to
 *   the open file description, shared with the shell and every process that
 *   holds the same stdin. They run under `sh -c` between two `python3` calls
 *   on the same description, one that sets the flag (on or off) and one that
 *   reads it after the example exits, whatever the way out. The helper they
 *   share (`stdinNonBlocking()` in `examples/_cli.ts`) is also run alone, for
 *   the ways out no example takes on purpose (`Deno.exit()`, an uncaught error).
 *
 * Every wait is bounded; everything runs on loopback.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Example, within } from "./_examples.ts";

const ROOT = new URL("../", import.meta.url);
const EXAMPLES = new URL("examples/", ROOT);
const DENO = Deno.execPath();
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** How long one run of an example may take, start to exit. */
const RUN_TIMEOUT_MS = 20_000;

/** A one-line error without a stack trace. */
function assertOneLine(stderr: string, re: RegExp, label: string): void {
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `${label}: expected one line on stderr, got ${JSON.stringify(stderr)}`);
  assert.match(lines[0], re, label);
  assert.doesNotMatch(stderr, /^\s+at /m, label);
}

// ---------------------------------------------------------------- http_client.ts: every address of a name

/** A name with two addresses, one per family, in a private `/etc/hosts`. */
const DUAL = "fdloop-dual.test";
const HOSTS = `127.0.0.1 localhost\n::1 ${DUAL}\n127.0.0.1 ${DUAL}\n`;

/** Whether an unprivileged user may make a user and mount namespace here. */
async function canUnshare(): Promise<boolean> {
  try {
    const out = await new Deno.Command("unshare", {
      args: ["-rm", "true"],
      stdout: "null",
      stderr: "null",
      signal: AbortSignal.timeout(5_000),
    }).output();
    return out.success;
  } catch {
    return false;
  }
}
const UNSHARE = await canUnshare();
if (!UNSHARE) {
  console.warn(`examples_fallback_test: skipping the ${DUAL} tests: \`unshare -rm\` is not allowed here`);
}

/**
 * Runs `argv` where `/etc/hosts` is {@linkcode HOSTS}: a mount namespace of
 * its own (`unshare -rm`, private propagation: nothing leaks to the machine).
 */
async function runWithDualHost(
  hostsFile: string,
  argv: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("unshare", {
    args: ["-rm", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', hostsFile, ...argv],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(RUN_TIMEOUT_MS),
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** `http_client.ts URL...` with the dual-address name. */
function httpClient(hostsFile: string, urls: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runWithDualHost(hostsFile, [
    DENO,
    "run",
    "--allow-ffi",
    new URL("http_client.ts", EXAMPLES).pathname,
    ...urls,
  ]);
}

Deno.test({
  name: "http_client.ts fetches from a name whose first address refuses, in both halves (reactor and blocking)",
  ignore: !UNSHARE,
  async fn(t) {
    const hostsFile = await Deno.makeTempFile({ suffix: ".hosts" });
    try {
      await Deno.writeTextFile(hostsFile, HOSTS);
      await t.step(`${DUAL} resolves to ::1 and 127.0.0.1 in the namespace`, async () => {
        const r = await runWithDualHost(hostsFile, ["getent", "ahosts", DUAL]);
        assert.equal(r.code, 0, r.stderr);
        const addresses = new Set(r.stdout.split("\n").map((l) => l.split(/\s+/)[0]).filter((a) => a));
        assert.deepEqual([...addresses].sort(), ["127.0.0.1", "::1"], r.stdout);
      });
      // The resolver puts one family first (RFC 6724: ::1 here): the server listening only on the other one makes
      // that first address refuse; each family in turn, so the test does not depend on the order.
      for (const hostname of ["127.0.0.1", "::1"]) {
        await t.step(`a server listening only on ${hostname}`, async () => {
          const ac = new AbortController();
          const server = Deno.serve({ hostname, port: 0, signal: ac.signal, onListen() {} }, () => new Response("ok"));
          try {
            const url = `http://${DUAL}:${server.addr.port}/`;
            const r = await httpClient(hostsFile, [url, url]);
            assert.equal(r.code, 0, `exit code ${r.code}: ${r.stderr}`);
            assert.match(r.stdout, /^concurrent \(reactor client\): 2 requests in /m, r.stdout);
            assert.match(r.stdout, /^sequential \(blocking sockets\): 2 requests in /m, r.stdout);
            assert.equal(r.stderr, "");
          } finally {
            ac.abort();
            await server.finished;
          }
        });
      }
    } finally {
      await Deno.remove(hostsFile);
    }
  },
});

Deno.test({
  name: "http_client.ts exits 1 with one line naming the host when every address of the name refuses the blocking half",
  ignore: !UNSHARE,
  async fn() {
    const hostsFile = await Deno.makeTempFile({ suffix: ".hosts" });
    // One connection, for the reactor half; the listener is closed as soon as it is accepted, so every address
    // refuses the blocking half, which starts only after the reactor half has read the whole response.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    const serving = (async () => {
      const conn = await listener.accept();
      listener.close();
      try {
        const buf = new Uint8Array(4096);
        let head = "";
        while (!head.includes("\r\n\r\n")) {
          const n = await conn.read(buf);
          if (n === null) return;
          head += decoder.decode(buf.subarray(0, n));
        }
        await conn.write(encoder.encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"));
      } finally {
        conn.close();
      }
    })();
    try {
      await Deno.writeTextFile(hostsFile, HOSTS);
      const r = await httpClient(hostsFile, [`http://${DUAL}:${port}/`]);
      await within(5_000, "the one-connection server to finish", serving);
      assert.equal(r.code, 1, `exit code ${r.code}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /^concurrent \(reactor client\): 1 requests in /m, r.stdout);
      // The error of the last address tried (127.0.0.1, after ::1), naming the host and the address.
      const host = DUAL.replaceAll(".", "\\.");
      const re = new RegExp(
        `^http_client: Cannot connect to ${host}:${port} \\(127\\.0\\.0\\.1:${port}\\): ECONNREFUSED`,
      );
      assertOneLine(r.stderr, re, "http_client.ts");
    } finally {
      try {
        listener.close();
      } catch {
        // Closed by the server above.
      }
      await serving.catch(() => {});
      await Deno.remove(hostsFile);
    }
  },
});

// ---------------------------------------------------------------- stdin_monitor.ts, tcp_client.ts: fd 0's O_NONBLOCK

/**
 * Sets (argv[1] "1") or clears ("0") O_NONBLOCK on the open file description
 * of the example's stdin, given as fd 3 (python3 refuses a directory on fd 0).
 */
const PY_SET = "import fcntl, os, sys\n" +
  "fl = fcntl.fcntl(3, fcntl.F_GETFL)\n" +
  "fcntl.fcntl(3, fcntl.F_SETFL, fl | os.O_NONBLOCK if sys.argv[1] == '1' else fl & ~os.O_NONBLOCK)\n";
/** Prints `<label> O_NONBLOCK=<True|False>` for fd 3 (as above), and the exit code it is given. */
const PY_GET = "import fcntl, os, sys\n" +
  "print('%s O_NONBLOCK=%s exit=%s' % (sys.argv[1], bool(fcntl.fcntl(3, fcntl.F_GETFL) & os.O_NONBLOCK), sys.argv[2]))\n";

/**
 * `sh -c`: set O_NONBLOCK on the shared stdin to `before`, run the example
 * (in the foreground, its pid on stderr as `pid N`), then print the flag.
 * With `redirect`, stdin is that file (`exec 0<…`) instead of the test's pipe.
 * Arguments: `$0` the setter, `$1` the getter, `$2` before (1 or 0), `$3` the
 * redirect or "", then the example's command line.
 */
const SCRIPT = `
set_py=$0 get_py=$1 before=$2 redirect=$3
shift 3
if [ -n "$redirect" ]; then exec 0<"$redirect"; fi
python3 -c "$set_py" "$before" 3<&0 </dev/null || exit 97
python3 -c "$get_py" before - 3<&0 </dev/null
sh -c 'echo "pid $$" >&2; exec "$@"' sh "$@"
code=$?
python3 -c "$get_py" after "$code" 3<&0 </dev/null
`;

/** One run of an example on a stdin whose O_NONBLOCK was `before`; the output collected as it arrives. */
class SharedStdin implements AsyncDisposable {
  readonly proc: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly done: Promise<Deno.CommandStatus>;
  #ended = false;

  constructor(name: string, args: string[], before: boolean, redirect = "") {
    this.proc = new Deno.Command("sh", {
      args: [
        "-c",
        SCRIPT,
        PY_SET,
        PY_GET,
        before ? "1" : "0",
        redirect,
        DENO,
        "run",
        "--allow-ffi",
        new URL(name, EXAMPLES).pathname,
        ...args,
      ],
      cwd: ROOT.pathname,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const pump = async (stream: ReadableStream<Uint8Array>, append: (s: string) => void) => {
      const d = new TextDecoder();
      for await (const chunk of stream) append(d.decode(chunk, { stream: true }));
    };
    this.done = Promise.all([
      pump(this.proc.stdout, (s) => (this.stdout += s)),
      pump(this.proc.stderr, (s) => (this.stderr += s)),
    ]).then(() => this.proc.status).finally(() => (this.#ended = true));
  }

  get transcript(): string {
    return `stdout=${JSON.stringify(this.stdout.slice(-2000))} stderr=${JSON.stringify(this.stderr.slice(-2000))}`;
  }

  /** Waits (polling, bounded) until `re` matches stdout or stderr; returns the match. */
  async waitFor(what: string, stream: "stdout" | "stderr", re: RegExp): Promise<RegExpExecArray> {
    const deadline = Date.now() + RUN_TIMEOUT_MS;
    for (;;) {
      const m = re.exec(this[stream]);
      if (m) return m;
      if (this.#ended) throw new Error(`The run ended before ${what}; ${this.transcript}`);
      if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}; ${this.transcript}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** The example's pid (the shell prints it before it execs the example). */
  async pid(): Promise<number> {
    return Number((await this.waitFor("the pid line", "stderr", /^pid (\d+)$/m))[1]);
  }

  async write(text: string): Promise<void> {
    const w = this.proc.stdin.getWriter();
    try {
      await w.write(encoder.encode(text));
    } finally {
      w.releaseLock();
    }
  }

  async closeStdin(): Promise<void> {
    await this.proc.stdin.close().catch(() => {});
  }

  /**
   * Waits for the shell to end (closing the test's end of stdin first) and
   * returns the flag before, the flag after, and the example's exit code.
   */
  async result(): Promise<{ before: boolean; after: boolean; code: number }> {
    const status = await within(RUN_TIMEOUT_MS, `the run to end; ${this.transcript}`, this.done);
    assert.equal(status.code, 0, `the shell failed (${status.code}); ${this.transcript}`);
    const flag = (label: string) =>
      /^(\w+) O_NONBLOCK=(True|False) exit=(\S+)$/m.exec(
        this.stdout.split("\n").filter((l) => l.startsWith(`${label} O_NONBLOCK=`)).join("\n"),
      );
    const b = flag("before");
    const a = flag("after");
    assert.ok(b && a, `no flag lines; ${this.transcript}`);
    return { before: b[2] === "True", after: a[2] === "True", code: Number(a[3]) };
  }

  /** Kills the shell and the example (which holds the pipes too) if they still run, and waits for the end. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#ended) {
      const pid = /^pid (\d+)$/m.exec(this.stderr)?.[1];
      for (const kill of [() => this.proc.kill("SIGKILL"), () => pid && Deno.kill(Number(pid), "SIGKILL")]) {
        try {
          kill();
        } catch {
          // Exited in between.
        }
      }
    }
    await this.closeStdin();
    await within(RUN_TIMEOUT_MS, `the run to end; ${this.transcript}`, this.done.catch(() => {}));
  }
}

/** Asserts that the run left O_NONBLOCK as it found it (`before`), and the example's exit code. */
async function assertRestored(run: SharedStdin, before: boolean, code: number): Promise<void> {
  const r = await run.result();
  assert.equal(r.before, before, `the flag was not set up; ${run.transcript}`);
  assert.equal(r.code, code, `exit code; ${run.transcript}`);
  assert.equal(r.after, before, `O_NONBLOCK was ${before}, the example left it ${r.after}; ${run.transcript}`);
}

const BEFORE = [true, false] as const;
const label = (before: boolean) => `stdin ${before ? "non-blocking" : "blocking"} before`;

Deno.test("stdin_monitor.ts leaves stdin's O_NONBLOCK as it found it: end of input, SIGINT, SIGTERM, --sync, EISDIR", async (t) => {
  for (const before of BEFORE) {
    await t.step(`${label(before)}: end of input, exit 0`, async () => {
      await using run = new SharedStdin("stdin_monitor.ts", ["--interval", "50"], before);
      await run.write("one\ntwo\n");
      await run.waitFor("stdin: two", "stdout", /^stdin: two$/m);
      await run.closeStdin();
      await assertRestored(run, before, 0);
      assert.match(run.stdout, /^stdin_monitor: 2 lines, \d+ ticks$/m);
    });
    for (const [signal, args] of [["SIGINT", []], ["SIGTERM", []], ["SIGINT", ["--sync"]]] as const) {
      await t.step(
        `${label(before)}: ${signal}${args.length ? ` ${args.join(" ")}` : ""} while stdin stays open, exit 0`,
        async () => {
          await using run = new SharedStdin("stdin_monitor.ts", ["--interval", "50", ...args], before);
          const pid = await run.pid();
          await run.waitFor("tick 1", "stdout", /^tick 1$/m);
          Deno.kill(pid, signal);
          await assertRestored(run, before, 0);
        },
      );
    }
    await t.step(`${label(before)}: a directory on stdin (EISDIR), exit 1`, async () => {
      await using run = new SharedStdin("stdin_monitor.ts", ["--interval", "10000"], before, "/");
      await assertRestored(run, before, 1);
      assert.match(run.stderr, /EISDIR/);
    });
  }
});

Deno.test("tcp_client.ts leaves stdin's O_NONBLOCK as it found it: end of input, SIGINT, a refused connection", async (t) => {
  await using server = new Example("echo.ts", ["--port", "0"]);
  const [port] = await server.listening();
  const refused = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const refusedPort = refused.addr.port;
  refused.close();
  try {
    for (const before of BEFORE) {
      await t.step(`${label(before)}: end of input, the server closes, exit 0`, async () => {
        await using run = new SharedStdin("tcp_client.ts", ["--port", String(port)], before);
        await run.write("first\nsecond\n");
        await run.waitFor("the echo", "stdout", /^second$/m);
        await run.closeStdin();
        await assertRestored(run, before, 0);
      });
      await t.step(`${label(before)}: SIGINT while connected, exit 0`, async () => {
        await using run = new SharedStdin("tcp_client.ts", ["--port", String(port)], before);
        const pid = await run.pid();
        await run.write("ping\n");
        await run.waitFor("the echo", "stdout", /^ping$/m);
        Deno.kill(pid, "SIGINT");
        await assertRestored(run, before, 0);
      });
      await t.step(`${label(before)}: a refused connection, exit 1`, async () => {
        await using run = new SharedStdin("tcp_client.ts", ["--port", String(refusedPort)], before);
        await assertRestored(run, before, 1);
        assert.match(run.stderr, /ECONNREFUSED/);
      });
    }
  } finally {
    server.signal("SIGINT");
    assert.equal((await server.exit()).code, 0, server.transcript);
  }
});

Deno.test("stdinNonBlocking() of examples/_cli.ts puts the flag back on the ways out that skip a finally", async (t) => {
  // A program that makes stdin non-blocking, checks it is, and leaves without calling the restore function.
  const dir = await Deno.makeTempDir();
  const script = `${dir}/leave.ts`;
  await Deno.writeTextFile(
    script,
    `import { stdinNonBlocking } from ${JSON.stringify(new URL("_cli.ts", EXAMPLES).href)};
import { F_GETFL, O_NONBLOCK, sym } from ${JSON.stringify(new URL("ffi/mod.ts", ROOT).href)};
stdinNonBlocking();
if ((sym.fcntl(0, F_GETFL, 0) & O_NONBLOCK) === 0) throw new Error("stdin is not non-blocking");
console.log("non-blocking now");
const how = Deno.args[0];
if (how === "exit") Deno.exit(3);
if (how === "throw") setTimeout(() => { throw new Error("thrown"); }, 0);
if (how === "reject") Promise.reject(new Error("rejected"));
`,
  );
  try {
    const ways: [string, number][] = [["end", 0], ["exit", 3], ["throw", 1], ["reject", 1]];
    for (const before of BEFORE) {
      for (const [how, code] of ways) {
        await t.step(`${label(before)}: ${how}, exit ${code}`, async () => {
          await using run = new SharedStdin(script, [how], before);
          await assertRestored(run, before, code);
          assert.match(run.stdout, /^non-blocking now$/m, run.transcript);
        });
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
