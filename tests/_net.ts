/**
 * The harness of the `net/` tests (`net_tcp_test.ts`, `net_faults_test.ts`,
 * `net_udp_test.ts`): one reactor per test, run in the background while the
 * test body awaits events, with a watchdog, automatic clean-up of servers,
 * connections and UDP sockets, and an fd leak check around it all.
 *
 * Assertions inside reactor callbacks throw into the reactor's `onError`
 * hook, not into the test: the hook records them and stops the reactor, and
 * {@linkcode netTest} fails with the first one.
 *
 * @module
 */

import { connect, type Connection, type ConnectOptions, listen, type ListenOptions, type Server } from "../net/mod.ts";
import { bindUdp, type UdpOptions, type UdpSocket } from "../net/mod.ts";
import { type BackendName, type ErrorContext, Reactor } from "../reactor/mod.ts";
import { assertNoFdLeak, waitFd } from "./_helpers.ts";
import {
  close,
  connect as connectFd,
  encodeSockaddr,
  POLLOUT,
  setSockOpt,
  SO_LINGER,
  SOCK_STREAM,
  socket,
  SOL_SOCKET,
} from "../ffi/mod.ts";
import { turns as countTurns } from "./_reactor.ts";

/** What a test body gets. */
export interface NetContext {
  /** The reactor, already running (`await reactor.run()` in the background). */
  reactor: Reactor;
  /** The backend under test. */
  backend: BackendName;
  /** `listen()` on this reactor; the server is closed (with its connections) after the test. */
  listen(options: Omit<ListenOptions, "reactor">, onConnection?: (conn: Connection) => void): Server;
  /** `connect()` on this reactor; the connection is destroyed after the test. */
  connect(options: Omit<ConnectOptions, "reactor"> & ({ host?: string; port: number } | { path: string })): Connection;
  /** `bindUdp()` on this reactor; closed after the test. */
  bindUdp(options?: Omit<UdpOptions, "reactor">): UdpSocket;
}

interface Reported {
  error: unknown;
  context: ErrorContext;
}

/**
 * Aborted when the running test's reactor stopped early (a callback threw or
 * the watchdog fired): {@linkcode until}, {@linkcode sleep} and
 * {@linkcode nextEvent} then reject at once, so the test body unwinds through
 * its `finally` blocks before the next test starts.
 */
let current = new AbortController();

function abortedError(): Error {
  return new Error("The test was aborted: its reactor stopped early");
}

/**
 * Runs `body` with a fresh reactor on `backend` that runs in the background
 * (`reactor.run()`), a watchdog (`reactor.callLater(limitMs)`: fail and stop),
 * clean-up of everything made through the context, and an fd count check
 * around the whole (reactor included).
 */
export async function netTest(
  backend: BackendName,
  body: (ctx: NetContext) => Promise<void>,
  limitMs = 10_000,
): Promise<void> {
  await assertNoFdLeak(async () => {
    const errors: Reported[] = [];
    const reactor = new Reactor({
      backend,
      onError: (error, context) => {
        errors.push({ error, context });
        reactor.stop();
      },
    });
    const servers: Server[] = [];
    const conns: Connection[] = [];
    const udps: UdpSocket[] = [];
    const ctx: NetContext = {
      reactor,
      backend,
      listen(options, onConnection) {
        const s = listen({ ...options, reactor } as ListenOptions, onConnection);
        servers.push(s);
        return s;
      },
      connect(options) {
        const c = connect({ ...options, reactor } as Parameters<typeof connect>[0]);
        conns.push(c);
        return c;
      },
      bindUdp(options = {}) {
        const u = bindUdp({ ...options, reactor });
        udps.push(u);
        return u;
      },
    };
    let expired = false;
    const watchdog = reactor.callLater(limitMs, () => {
      expired = true;
      reactor.stop();
    });
    current = new AbortController();
    const running = reactor.run();
    const work = body(ctx);
    work.catch(() => {}); // reported through the race below, or superseded by the watchdog
    let failure: unknown;
    try {
      const outcome = await Promise.race([work.then(() => "done" as const), running.then(() => "stopped" as const)]);
      if (outcome === "stopped") {
        failure = expired
          ? new Error(`The watchdog stopped the reactor after ${limitMs} ms: the test did not finish`)
          : new Error("The reactor stopped before the test finished");
        // Let the body unwind (its waits now reject) and release what it holds.
        current.abort();
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          work.catch(() => {}),
          new Promise<void>((resolve) => timer = setTimeout(resolve, 15_000)),
        ]);
        clearTimeout(timer);
      }
    } catch (err) {
      failure = err;
    } finally {
      watchdog.cancel();
      for (const c of conns) c.destroy();
      for (const s of servers) void s.close({ closeConnections: true });
      for (const u of udps) u.close();
      reactor.stop();
      await running.catch(() => {});
      // Let the `close` callbacks that destroy() scheduled run before closing the reactor.
      for (let i = 0; i < 3; i++) reactor.runOnce(0);
      reactor.close();
    }
    if (errors.length > 0) {
      const { error, context } = errors[0];
      const where = context.fd === undefined ? context.source : `${context.source} callback of fd ${context.fd}`;
      throw new Error(`${errors.length} callback error(s), the first in the ${where}: ${error}`, { cause: error });
    }
    if (failure !== undefined) throw failure;
  });
}

/**
 * Resolves once `predicate()` is true, checking every 2 ms; rejects after
 * `timeoutMs` naming `what`.
 */
export async function until(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(2);
  }
}

/**
 * Resolves after `n` more iterations of the test's running reactor: the way
 * to show that an event did *not* come (a second `close`, a removed
 * listener called) without sleeping and hoping. Each turn queues a
 * `callSoon` and waits for the loop to run it (see `_reactor.ts`); rejects at
 * once if the running test was aborted.
 */
export function turns(reactor: Reactor, n = 3, timeoutMs = 5000): Promise<void> {
  return countTurns(reactor, n, timeoutMs, current.signal);
}

/**
 * A `setTimeout` promise; rejects at once if the running test was aborted.
 * For pacing only (a client that sends now and then): never to wait for
 * something to happen (use {@linkcode until}) or to show that it did not
 * (use {@linkcode turns}).
 */
export async function sleep(ms: number): Promise<void> {
  if (current.signal.aborted) throw abortedError();
  await new Promise((resolve) => setTimeout(resolve, ms));
  if (current.signal.aborted) throw abortedError();
}

/** The next `event` of `emitter` (its first argument), or a rejection after `timeoutMs`. */
export function nextEvent<T = unknown>(
  // deno-lint-ignore no-explicit-any
  emitter: { on(event: any, listener: (...args: any[]) => void): unknown; off(event: any, l: any): unknown },
  event: string,
  timeoutMs = 5000,
): Promise<T> {
  const signal = current.signal;
  return new Promise<T>((resolve, reject) => {
    const finish = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      emitter.off(event, listener);
    };
    const listener = (value: T) => {
      finish();
      resolve(value);
    };
    const onAbort = () => {
      finish();
      reject(abortedError());
    };
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`Timed out after ${timeoutMs} ms waiting for "${event}"`));
    }, timeoutMs);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort);
    emitter.on(event, listener);
  });
}

/** Collects what a connection receives, and counts its `end` and `close` events. */
export class Recorder {
  readonly chunks: Uint8Array[] = [];
  received = 0;
  ends = 0;
  closes = 0;
  errors: Error[] = [];
  closeError: Error | undefined;

  constructor(readonly conn: Connection) {
    conn.on("data", (chunk) => {
      this.chunks.push(chunk.slice());
      this.received += chunk.byteLength;
    });
    conn.on("end", () => this.ends++);
    conn.on("error", (err) => this.errors.push(err));
    conn.on("close", (err) => {
      this.closes++;
      this.closeError = err;
    });
  }

  /** Everything received, as text. */
  text(): string {
    const all = new Uint8Array(this.received);
    let o = 0;
    for (const c of this.chunks) {
      all.set(c, o);
      o += c.byteLength;
    }
    return new TextDecoder().decode(all);
  }
}

/** Reads the lines a child process prints, and waits for one that matches. */
export class LineReader {
  readonly lines: string[] = [];
  #next = 0;
  #partial = "";
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        const parts = (this.#partial + text).split("\n");
        this.#partial = parts.pop()!;
        this.lines.push(...parts);
      }
      if (this.#partial) this.lines.push(this.#partial);
    })();
  }

  /** The next line (after those already taken) matching `re`; earlier non-matching lines are skipped. */
  async waitFor(re: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    let match: RegExpMatchArray | null = null;
    await until(
      () => {
        for (; this.#next < this.lines.length && match === null; this.#next++) match = this.lines[this.#next].match(re);
        return match !== null;
      },
      `a line matching ${re}`,
      timeoutMs,
    );
    return match!;
  }
}

/** User + system CPU time of process `pid` in clock ticks, read from `/proc/PID/stat` (through `cat`:
 * Deno guards `/proc/PID` unless run with `--allow-all`). */
export async function cpuTicks(pid: number): Promise<number> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/stat`], stdout: "piped", stderr: "null" }).output();
  const text = new TextDecoder().decode(out.stdout);
  // Fields after the command name (which may contain spaces) start at ") ".
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
  return Number(fields[11]) + Number(fields[12]);
}

/** The `code` of an error, if any. */
export function codeOf(err: unknown): string | undefined {
  return (err as { code?: string } | undefined)?.code;
}

/** A raw, non-blocking TCP client that will reset (`SO_LINGER` {on, 0}) when closed. */
export async function resettingClient(port: number): Promise<number> {
  const sa = encodeSockaddr({ host: "127.0.0.1", port });
  const fd = socket(sa.family, SOCK_STREAM);
  try {
    setSockOpt(fd, SOL_SOCKET, SO_LINGER, new Uint8Array(new Int32Array([1, 0]).buffer));
    if (!connectFd(fd, sa.buf, sa.len, `127.0.0.1:${port}`)) {
      await until(() => (waitFd(fd, POLLOUT, 0) & POLLOUT) !== 0, "the raw client to connect");
    }
    return fd;
  } catch (err) {
    close(fd);
    throw err;
  }
}
