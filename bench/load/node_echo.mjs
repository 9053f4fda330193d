/**
 * The Node peer of the load benchmark: an echo server on `node:net`,
 * `TCP_NODELAY` on.
 *
 *   node bench/load/node_echo.mjs --port 0
 *
 * Prints `listening on HOST:PORT`, serves until SIGINT/SIGTERM, prints a
 * summary line and exits 0. Used by `bench/load/run.ts`.
 */

import net from "node:net";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { host: { type: "string", default: "127.0.0.1" }, port: { type: "string", default: "8000" } },
});

const sockets = new Set();
let served = 0;
let bytes = 0;

const server = net.createServer((socket) => {
  served++;
  sockets.add(socket);
  socket.setNoDelay(true);
  socket.on("data", (chunk) => {
    bytes += chunk.length;
    if (!socket.write(chunk)) socket.pause();
  });
  socket.on("drain", () => socket.resume());
  socket.on("error", () => {});
  socket.on("close", () => sockets.delete(socket));
});

server.listen(Number(values.port), values.host, () => {
  const a = server.address();
  console.log(`listening on ${a.address}:${a.port}`);
});

const stop = () => {
  server.close(() => {
    console.log(`node_echo: served ${served} connections, echoed ${bytes} bytes`);
    process.exit(0);
  });
  for (const s of sockets) s.destroy();
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
