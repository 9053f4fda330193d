/**
 * No silent errors: an `error` event nobody listens for reaches the
 * reactor's `onError` (one line on stderr by default), on every backend.
 */

import assert from "node:assert/strict";
import { connect, OSError, Reactor } from "../mod.ts";
import { soon } from "../net/default_reactor.ts";
import type { BackendName, ErrorContext } from "../reactor/mod.ts";
import { assertNoFdLeak, BACKENDS, unusedPort } from "./_helpers.ts";

const FIXTURE = new URL("./fixtures/unhandled_connect_error.ts", import.meta.url).pathname;

/** A reactor whose `onError` records instead of logging. */
function recordingReactor(backend: BackendName): { reactor: Reactor; reports: [unknown, ErrorContext][] } {
  const reports: [unknown, ErrorContext][] = [];
  const reactor = new Reactor({ backend, onError: (error, context) => reports.push([error, context]) });
  return { reactor, reports };
}

/** Runs the reactor until `done()` is true, at most `turns` blocking turns of 50 ms. */
function runUntil(reactor: Reactor, done: () => boolean, turns = 100): void {
  for (let i = 0; i < turns && !done(); i++) reactor.runOnce(50);
}

Deno.test("connect() to a refused port with no error listener prints one line naming ECONNREFUSED and the target, and the program goes on", async () => {
  const port = unusedPort();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-ffi", FIXTURE, String(port)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr).trimEnd().split("\n");
  const stdout = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, stderr.join("\n"));
  assert.equal(stderr.length, 1, `one line on stderr, got:\n${stderr.join("\n")}`);
  assert.match(stderr[0], /ECONNREFUSED/);
  assert.ok(stderr[0].includes(`127.0.0.1:${port}`), stderr[0]);
  assert.match(stderr[0], /on fd \d+/);
  assert.equal(stdout, "still running\n");
});

for (const backend of BACKENDS) {
  Deno.test(`\`Connection\` (${backend}) with no error listener hands ECONNREFUSED to onError, naming the fd`, async () => {
    await assertNoFdLeak(() => {
      const { reactor, reports } = recordingReactor(backend);
      const conn = connect({ host: "127.0.0.1", port: unusedPort(), reactor });
      const fd = conn.fd;
      let closed = 0;
      conn.on("close", () => closed++);
      runUntil(reactor, () => closed > 0);
      reactor.close();
      assert.equal(closed, 1);
      assert.equal(reports.length, 1);
      const [error, context] = reports[0];
      assert.ok(error instanceof OSError);
      assert.equal(error.code, "ECONNREFUSED");
      assert.deepEqual(context, { source: "transport", fd });
    });
  });

  Deno.test(`\`Connection\` (${backend}) with an error listener does not report the error to onError`, async () => {
    await assertNoFdLeak(() => {
      const { reactor, reports } = recordingReactor(backend);
      const conn = connect({ host: "127.0.0.1", port: unusedPort(), reactor });
      const codes: string[] = [];
      conn.on("error", (err) => codes.push((err as OSError).code));
      runUntil(reactor, () => conn.destroyed && codes.length > 0);
      for (let i = 0; i < 3; i++) reactor.runOnce(0);
      reactor.close();
      assert.deepEqual(codes, ["ECONNREFUSED"]);
      assert.equal(reports.length, 0);
      assert.equal(reactor.metrics.errors, 0);
    });
  });
}

Deno.test("soon() on a closed reactor runs the callback in a microtask and reports what it throws", async () => {
  const { reactor, reports } = recordingReactor("epoll");
  reactor.close();
  let ran = false;
  soon(reactor, () => {
    ran = true;
    throw new Error("boom");
  });
  assert.equal(ran, false, "not synchronously");
  await Promise.resolve();
  assert.equal(ran, true);
  assert.equal(reports.length, 1);
  assert.equal((reports[0][0] as Error).message, "boom");
  assert.deepEqual(reports[0][1], { source: "callSoon" });
});

Deno.test("`Reactor.reportError()` counts in metrics.errors, and a throwing onError hook does not escape", () => {
  const reactor = new Reactor({
    onError: () => {
      throw new Error("hook failed");
    },
  });
  const logged: unknown[][] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => logged.push(args);
  try {
    reactor.reportError(new Error("x"), { source: "transport", fd: 3 });
  } finally {
    console.error = original;
    reactor.close();
  }
  assert.equal(reactor.metrics.errors, 1);
  assert.equal(logged.length, 1);
  assert.match(String(logged[0][0]), /onError hook threw/);
});
