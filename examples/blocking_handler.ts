/**
 * One blocking handler stalls every client: the seeds' `time.sleep(5)` lesson.
 *
 *   deno run --allow-ffi --allow-net=127.0.0.1 examples/blocking_handler.ts
 *
 * The server has two routes that each take `--seconds` to answer:
 *
 * - `/sleep` waits the way a reactor program should: `reactor.callLater()`
 *   schedules the answer and the handler returns at once, so the loop goes on
 *   serving everyone else meanwhile;
 * - `/block` waits the way a reactor program must not: it blocks the thread
 *   (`Atomics.wait`, the `time.sleep()` of JavaScript; a busy loop on
 *   `performance.now()` or a long synchronous computation does the same), so
 *   nothing else runs until it returns.
 *
 * Then `--clients` clients ask each route at the same moment, and each one's
 * wait is measured. The clients use Deno's `fetch` from a `Worker`: a thread
 * of their own, with its own clock and event loop, so a blocked server
 * thread cannot also hold back their measurements. The reactor runs with the
 * cooperative `run()`, so the worker's reports reach this thread (there is no
 * `--sync`: `runSync()` would keep them from arriving). It prints:
 *
 *   /sleep: 5 clients done in 1.00 s (waits 1.00, 1.00, 1.00, 1.00, 1.00 s)
 *   /block: 5 clients done in 5.01 s (waits 1.00, 2.00, 3.00, 4.00, 5.01 s)
 *
 * and a closing line: the blocked clients were served one after the other,
 * the last one waiting for every handler before it.
 *
 * @module
 */

import { listenHttp, Reactor } from "../mod.ts";
import { backendFlag, LOOP_FLAGS, parseFlags } from "./_cli.ts";

const flags = parseFlags("Usage: deno run --allow-ffi --allow-net=127.0.0.1 examples/blocking_handler.ts [options]", {
  backend: LOOP_FLAGS.backend,
  seconds: { type: "string", default: "1", help: "How long each handler takes to answer" },
  clients: { type: "string", default: "5", help: "Concurrent clients per route" },
  sync: { type: "boolean", help: "Refused: the clients report through Deno's event loop, which runSync() stalls" },
});

if (flags.sync) {
  console.error("--sync makes no sense here: runSync() blocks Deno's event loop, so the clients' reports never arrive");
  Deno.exit(2);
}
const seconds = Number(flags.seconds);
if (!(seconds > 0 && seconds <= 60)) {
  console.error(`--seconds must be a number above 0 and at most 60, got ${JSON.stringify(flags.seconds)}`);
  Deno.exit(2);
}
const clients = Number(flags.clients);
if (!Number.isInteger(clients) || clients < 1 || clients > 100) {
  console.error(`--clients must be an integer from 1 to 100, got ${JSON.stringify(flags.clients)}`);
  Deno.exit(2);
}
const ms = seconds * 1000;

const reactor = new Reactor({ backend: backendFlag(flags.backend) });
/** What a blocked thread looks like: `Atomics.wait` sleeps without burning a core. */
const blocker = new Int32Array(new SharedArrayBuffer(4));

const server = listenHttp({ port: 0, reactor }, (req, res) => {
  if (req.path === "/sleep") {
    // Cooperative: the answer is a timer; the loop serves other clients meanwhile.
    reactor.callLater(ms, () => res.end(`slept ${seconds} s\n`));
  } else if (req.path === "/block") {
    // Blocking: nothing else runs on this thread, the reactor included, until it returns.
    Atomics.wait(blocker, 0, 0, ms);
    res.end(`blocked ${seconds} s\n`);
  } else if (req.path === "/") {
    res.end("hello\n");
  } else {
    res.status = 404;
    res.end("not found\n");
  }
});
console.log(`listening on 127.0.0.1:${server.port} (${reactor.selector.name})`);
const running = reactor.run();

/**
 * The clients: given a URL, fire `count` fetches at once and report each one's
 * wait (from the common start to its complete body), in milliseconds.
 */
const CLIENTS_WORKER = `
self.onmessage = async ({ data: { url, count } }) => {
  try {
    const client = Deno.createHttpClient({});
    const start = performance.now();
    const waits = await Promise.all(Array.from({ length: count }, async () => {
      const res = await fetch(url, { client });
      await res.text();
      if (res.status !== 200) throw new Error(url + " answered " + res.status);
      return performance.now() - start;
    }));
    client.close();
    self.postMessage({ waits, total: performance.now() - start });
  } catch (err) {
    self.postMessage({ error: String(err) });
  }
};
`;
const workerUrl = URL.createObjectURL(new Blob([CLIENTS_WORKER], { type: "text/javascript" }));
const worker = new Worker(workerUrl, { type: "module" });

/** Sends the clients at `path` and waits for their report. */
function measure(path: string): Promise<{ waits: number[]; total: number }> {
  return new Promise((resolve, reject) => {
    worker.onmessage = ({ data }) => data.error ? reject(new Error(data.error)) : resolve(data);
    worker.onerror = (event) => {
      event.preventDefault();
      reject(new Error(`the client worker failed: ${event.message}`));
    };
    worker.postMessage({ url: `http://127.0.0.1:${server.port}${path}`, count: clients });
  });
}

const s = (msValue: number) => (msValue / 1000).toFixed(2);
function report(path: string, r: { waits: number[]; total: number }): void {
  const waits = r.waits.toSorted((a, b) => a - b).map(s).join(", ");
  console.log(`${path}: ${clients} clients done in ${s(r.total)} s (waits ${waits} s)`);
}

let exitCode = 0;
try {
  await measure("/"); // warm-up: the first fetch of a process pays for setting itself up
  const sleep = await measure("/sleep");
  report("/sleep", sleep);
  const block = await measure("/block");
  report("/block", block);
  console.log(
    `one blocking handler stalls every client: ${clients} clients took ${
      (block.total / sleep.total).toFixed(1)
    }× as long ` +
      `(${s(block.total)} s vs ${s(sleep.total)} s); with callLater() they all waited ~${seconds} s`,
  );
} catch (err) {
  console.error(`blocking_handler: ${(err as Error).message}`);
  exitCode = 1;
} finally {
  worker.terminate();
  URL.revokeObjectURL(workerUrl);
  await server.shutdown(1000);
  reactor.stop();
  await running;
  reactor.close();
}
Deno.exit(exitCode);
