/**
 * The echo load benchmark's bare FFI server (`bench/load/bare_echo.ts`) is a
 * measured reference: it must echo what the load generator sends, print the
 * `listening on` line the benchmark waits for, and exit 0 on SIGINT with its
 * summary, as the other servers do.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Example, within } from "./_examples.ts";

Deno.test("bench/load/bare_echo.ts echoes 20 clients' messages in turn and exits 0 on SIGINT", async () => {
  await using child = new Example("../bench/load/bare_echo.ts", ["--port", "0"]);
  const [port] = await child.listening();
  const conns = await Promise.all(Array.from({ length: 20 }, () => Deno.connect({ hostname: "127.0.0.1", port })));
  const got = new Uint8Array(64);
  let echoed = 0;
  try {
    await within(
      10_000,
      "three echoes per client",
      (async () => {
        for (let round = 0; round < 3; round++) {
          for (const [i, conn] of conns.entries()) {
            const msg = new Uint8Array(64).fill(i + round);
            await conn.write(msg);
            let n = 0;
            while (n < 64) {
              const r = await conn.read(got.subarray(n));
              assert.notEqual(r, null, `client ${i}: closed after ${n} bytes`);
              n += r!;
            }
            assert.deepEqual(got, msg, `client ${i}, round ${round}`);
            echoed += 64;
          }
        }
      })(),
      () => child.signal("SIGKILL"),
    );
  } finally {
    for (const c of conns) c.close();
  }
  child.signal("SIGINT");
  const status = await child.exit();
  assert.equal(status.code, 0, child.transcript);
  assert.ok(child.lines.includes(`bare_echo: served 20 connections, echoed ${echoed} bytes`), child.transcript);
});
