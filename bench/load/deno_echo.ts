/**
 * The Deno peer of the load benchmark: an echo server on `Deno.listen`, one
 * async read/write loop per connection, `TCP_NODELAY` on.
 *
 *   deno run --allow-net bench/load/deno_echo.ts --port 0
 *
 * Prints `listening on HOST:PORT`, serves until SIGINT/SIGTERM, prints a
 * summary line and exits 0. Used by `bench/load/run.ts`.
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: { host: { type: "string", default: "127.0.0.1" }, port: { type: "string", default: "8000" } },
});

const listener = Deno.listen({ hostname: values.host, port: Number(values.port) });
const conns = new Set<Deno.Conn>();
let served = 0;
let bytes = 0;

async function serve(conn: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      bytes += n;
      let off = 0;
      while (off < n) off += await conn.write(buf.subarray(off, n));
    }
  } catch {
    // A reset peer, or closed on shutdown.
  } finally {
    conns.delete(conn);
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  listener.close();
  for (const c of conns) c.close();
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);

const addr = listener.addr as Deno.NetAddr;
console.log(`listening on ${addr.hostname}:${addr.port}`);
try {
  for await (const conn of listener) {
    conn.setNoDelay(true);
    served++;
    conns.add(conn);
    serve(conn);
  }
} catch (err) {
  if (!stopping) throw err;
}
Deno.removeSignalListener("SIGINT", stop);
Deno.removeSignalListener("SIGTERM", stop);
console.log(`deno_echo: served ${served} connections, echoed ${bytes} bytes`);
