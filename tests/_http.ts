/**
 * The harness of the `http/` tests: a server on a fresh reactor running in
 * the background (`run()`), a raw TCP client that sends exact bytes and reads
 * until the server closes, and an fd leak check around it all.
 *
 * @module
 */

import {
  type HttpHandler,
  type HttpServer,
  type HttpServerOptions,
  listenHttp,
  serve,
  type ServeHandler,
} from "../http/mod.ts";
import type { BackendName, Reactor } from "../reactor/mod.ts";
import { assertNoFdLeak } from "./_helpers.ts";
import { assertNoErrors, newReactor, stopAndClose } from "./_reactor.ts";

/** What an HTTP test body gets. */
export interface HttpContext {
  reactor: Reactor;
  server: HttpServer;
  port: number;
  /** Errors the server passed to its `onError` (handler failures). */
  handlerErrors: unknown[];
}

/**
 * Runs `body` against a raw-API server with `handler` on `backend`, the
 * reactor running cooperatively in the background. Fails on any error the
 * reactor reports, and on an fd leak.
 */
export async function httpTest(
  backend: BackendName,
  options: Omit<HttpServerOptions, "reactor" | "port">,
  handler: (ctx: { reactor: Reactor }) => HttpHandler,
  body: (ctx: HttpContext) => Promise<void>,
): Promise<void> {
  await assertNoFdLeak(async () => {
    const { reactor, errors } = newReactor(backend);
    const handlerErrors: unknown[] = [];
    const server = listenHttp(
      { onError: (err) => handlerErrors.push(err), ...options, port: 0, reactor },
      handler({ reactor }),
    );
    const running = reactor.run();
    try {
      await body({ reactor, server, port: server.port, handlerErrors });
    } finally {
      await server.shutdown(1000);
      await stopAndClose(reactor, running);
    }
    assertNoErrors(errors);
  });
}

/**
 * Runs `body` against `serve(handler)` on a reactor of `backend` running in
 * the background. Fails on any error the reactor reports, and on an fd leak.
 */
export async function serveTest(
  backend: BackendName,
  handler: ServeHandler,
  body: (port: number, reactor: Reactor) => Promise<void>,
): Promise<void> {
  await assertNoFdLeak(async () => {
    const { reactor, errors } = newReactor(backend);
    const running = reactor.run();
    const server = serve({ port: 0, hostname: "127.0.0.1", reactor, onListen() {} }, handler);
    try {
      await body(server.addr.port, reactor);
    } finally {
      await server.server.shutdown(500);
      await stopAndClose(reactor, running);
    }
    assertNoErrors(errors);
  });
}

const decoder = new TextDecoder("latin1");

/** What {@linkcode rawRequest} saw. */
export interface RawResult {
  /** Everything the server sent, as Latin-1 text. */
  text: string;
  /** True when the server closed the connection (EOF) within the time limit. */
  closed: boolean;
  /** The status codes of the responses, in order. */
  statuses: number[];
}

/**
 * Sends `pieces` (each written separately, `gapMs` apart) on a fresh TCP
 * connection and reads until the server closes or `timeoutMs` passes.
 */
export async function rawRequest(
  port: number,
  pieces: (string | Uint8Array)[] | string,
  options: { timeoutMs?: number; gapMs?: number; halfClose?: boolean; until?: (text: string) => boolean } = {},
): Promise<RawResult> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const list = typeof pieces === "string" ? [pieces] : pieces;
  const chunks: Uint8Array[] = [];
  let closed = false;
  let selfClosed = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const reading = (async () => {
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch {
        n = null; // reset counts as closed
      }
      if (n === null) {
        closed = !selfClosed;
        return;
      }
      chunks.push(buf.slice(0, n));
      if (options.until && options.until(latin1(chunks))) return;
    }
  })();
  try {
    for (const p of list) {
      const bytes = typeof p === "string" ? new TextEncoder().encode(p) : p;
      try {
        await conn.write(bytes);
      } catch {
        break; // the server closed on us: what it said is what counts
      }
      if (options.gapMs) await new Promise((r) => setTimeout(r, options.gapMs));
    }
    if (options.halfClose) await conn.closeWrite().catch(() => {});
    await Promise.race([reading, new Promise((r) => timer = setTimeout(r, options.timeoutMs ?? 5000))]);
  } finally {
    clearTimeout(timer);
    selfClosed = true;
    try {
      conn.close();
    } catch { /* already closed */ }
    await reading.catch(() => {});
  }
  const text = latin1(chunks);
  return { text, closed, statuses: [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1])) };
}

function latin1(chunks: Uint8Array[]): string {
  let s = "";
  for (const c of chunks) s += decoder.decode(c, { stream: true });
  return s;
}

/** Splits raw HTTP text into responses (head + body by Content-Length or chunked). */
export function parseResponses(text: string): { status: number; headers: Map<string, string>; body: string }[] {
  const out: { status: number; headers: Map<string, string>; body: string }[] = [];
  let at = 0;
  while (at < text.length) {
    const end = text.indexOf("\r\n\r\n", at);
    if (end < 0) break;
    const lines = text.slice(at, end).split("\r\n");
    const status = Number(lines[0].split(" ")[1]);
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) {
      const i = l.indexOf(":");
      headers.set(l.slice(0, i).toLowerCase(), l.slice(i + 1).trim());
    }
    at = end + 4;
    let body = "";
    if (status === 100) {
      out.push({ status, headers, body });
      continue;
    }
    if (headers.has("content-length")) {
      const n = Number(headers.get("content-length"));
      body = text.slice(at, at + n);
      at += n;
    } else if (headers.get("transfer-encoding") === "chunked") {
      for (;;) {
        const le = text.indexOf("\r\n", at);
        const size = parseInt(text.slice(at, le), 16);
        at = le + 2;
        if (size === 0) {
          at += 2;
          break;
        }
        body += text.slice(at, at + size);
        at += size + 2;
      }
    } else {
      body = text.slice(at);
      at = text.length;
    }
    out.push({ status, headers, body });
  }
  return out;
}

/** `fetch()` through a client of its own, closed afterwards, so no pooled socket outlives the test. */
export async function fetchText(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; text: string; headers: Headers }> {
  const client = Deno.createHttpClient({});
  try {
    const res = await fetch(url, { ...init, client });
    return { status: res.status, text: await res.text(), headers: res.headers };
  } finally {
    client.close();
  }
}
