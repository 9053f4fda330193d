/**
 * A raw HTTP/1.1 server for the `HttpClient` tests: a `net/` `listen()` on a
 * fresh reactor, reading request heads (and Content-Length bodies) and
 * answering with exact bytes, counting connections accepted and closed.
 *
 * @module
 */

import { HttpClient, type HttpClientOptions } from "../http/mod.ts";
import { type Connection, listen, type Server } from "../net/mod.ts";
import type { BackendName, Reactor } from "../reactor/mod.ts";
import { setSockOpt, SO_LINGER, SOL_SOCKET } from "../ffi/mod.ts";
import { assertNoFdLeak } from "./_helpers.ts";
import { turns } from "./_net.ts";
import { assertNoErrors, newReactor, stopAndClose } from "./_reactor.ts";

const latin1 = new TextDecoder("latin1");

/** One request head a raw server read, and where it came from. */
export interface RawRequest {
  conn: Connection;
  /** The head, without the blank line. */
  head: string;
  /** The index of the connection (accept order, from 0). */
  connIndex: number;
  /** Bytes of the body (by Content-Length), counted, not kept. */
  bodyBytes: number;
}

/** What a test body gets. */
export interface RawContext {
  reactor: Reactor;
  client: HttpClient;
  server: Server;
  base: string;
  /** Connections accepted so far. */
  accepted: () => number;
  /** Server-side connections closed so far. */
  closed: () => number;
  /** Every request read, in order. */
  requests: RawRequest[];
}

/** The server side of a connection: calls `onRequest` for each head (and its Content-Length body). */
export function readRequests(conn: Connection, connIndex: number, onRequest: (req: RawRequest) => void): void {
  let text = "";
  let bodyLeft = -1;
  let current: RawRequest | null = null;
  conn.on("data", (chunk) => {
    let bytes = chunk;
    while (bytes.length > 0) {
      if (bodyLeft > 0) {
        const n = Math.min(bodyLeft, bytes.length);
        bodyLeft -= n;
        current!.bodyBytes += n;
        bytes = bytes.subarray(n);
        if (bodyLeft === 0) onRequest(current!);
        continue;
      }
      text += latin1.decode(bytes);
      bytes = bytes.subarray(bytes.length);
      for (let end = text.indexOf("\r\n\r\n"); end >= 0; end = text.indexOf("\r\n\r\n")) {
        const head = text.slice(0, end);
        const rest = text.slice(end + 4);
        text = "";
        current = { conn, head, connIndex, bodyBytes: 0 };
        const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
        bodyLeft = cl === null ? 0 : Number(cl[1]);
        if (bodyLeft === 0) onRequest(current);
        if (rest.length > 0) {
          // Re-enter with the rest as bytes (latin1 round-trips).
          const again = Uint8Array.from(rest, (c) => c.charCodeAt(0));
          bytes = again;
          break;
        }
      }
    }
  });
}

/**
 * Runs `body` with an `HttpClient` and a raw server (`net/` `listen()`) on a
 * fresh reactor running in the background. `onRequest` answers each request
 * head with whatever bytes it likes; `onConnection` (if given) replaces the
 * request reading entirely. Fails on an fd leak or an error the reactor reports.
 */
export async function rawTest(
  options: {
    backend?: BackendName;
    client?: Omit<HttpClientOptions, "reactor">;
    onConnection?: (conn: Connection, connIndex: number) => void;
    onRequest?: (req: RawRequest) => void;
  },
  body: (ctx: RawContext) => Promise<void>,
): Promise<void> {
  await assertNoFdLeak(async () => {
    const { reactor, errors } = newReactor(options.backend ?? "epoll");
    let accepted = 0;
    let closed = 0;
    const requests: RawRequest[] = [];
    const server = listen({ host: "127.0.0.1", port: 0, reactor }, (conn) => {
      const index = accepted++;
      conn.on("close", () => closed++);
      conn.on("error", () => {});
      if (options.onConnection) options.onConnection(conn, index);
      else {
        readRequests(conn, index, (req) => {
          requests.push(req);
          options.onRequest?.(req);
        });
      }
    });
    const client = new HttpClient({ reactor, maxConnectionsPerHost: 4, ...options.client });
    const running = reactor.run();
    try {
      await body({
        reactor,
        client,
        server,
        base: `http://127.0.0.1:${server.port}`,
        accepted: () => accepted,
        closed: () => closed,
        requests,
      });
    } finally {
      client.close();
      await server.close({ closeConnections: true });
      await turns(reactor, 3);
      await stopAndClose(reactor, running);
    }
    assertNoErrors(errors);
  });
}

/** Resets the connection (`SO_LINGER` 0, then close): the peer's next read or write fails with ECONNRESET/EPIPE. */
export function reset(conn: Connection): void {
  setSockOpt(conn.fd, SOL_SOCKET, SO_LINGER, new Uint8Array(new Int32Array([1, 0]).buffer));
  conn.destroy();
}
