/**
 * HTTP/1.1 on a plain socket, for the server tests: {@linkcode WireClient} writes exact bytes and reads the
 * responses off the wire one at a time (framed by Content-Length, chunked, or to the close), on one keep-alive
 * connection, fast or slowly, and can stop reading at will; with it the checks those tests share.
 *
 * @module
 */

import assert from "node:assert/strict";
import { concatBytes } from "./_helpers.ts";
import { delay } from "./_reactor.ts";

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/** One response as read off the socket: its head as text, and its body (de-chunked). */
export interface ReadResponse {
  head: string;
  body: Uint8Array;
}

/** How a {@linkcode WireClient} reads; every option is off by default. */
export interface WireClientOptions {
  /**
   * A slow reader: body bytes in 16 KiB steps (unless `readStep` says otherwise), and a 2 ms rest after each
   * 256 KiB read, so that the server's socket buffer fills and drains many times.
   */
  slow?: boolean;
  /** The most bytes one read of a body asks for (default: all that is still missing). */
  readStep?: number;
  /**
   * A read that fails (the server reset the connection) counts as the server's close, as EOF does; otherwise the
   * error goes to the caller. ({@linkcode WireClient.drainToClose} takes a reset as a close either way.)
   */
  resetIsClose?: boolean;
  /**
   * A response framed by neither Content-Length nor chunked has its body read to the close (HTTP/1.0's way);
   * otherwise such a head fails an assertion.
   */
  closeDelimited?: boolean;
}

/** `conn.read(into)`, a failed read (a reset) taken as the close: `null`, as EOF. */
export async function readOrClose(conn: Deno.Conn, into: Uint8Array): Promise<number | null> {
  try {
    return await conn.read(into);
  } catch {
    return null; // a reset is a close too
  }
}

/** The index of the first CRLF CRLF in `bytes`, or -1. */
export function indexOfBlankLine(bytes: Uint8Array): number {
  for (let i = bytes.indexOf(13); i >= 0 && i + 3 < bytes.byteLength; i = bytes.indexOf(13, i + 1)) {
    if (bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) return i;
  }
  return -1;
}

/**
 * An HTTP/1.1 client on a plain socket: writes exact bytes and reads the responses one at a time, on one keep-alive
 * connection, and can stop reading at will. How it reads is set by {@linkcode WireClientOptions}; a slow but
 * progressing reader can also be had by setting {@linkcode WireClient.restMs} at any time.
 */
export class WireClient {
  readonly #conn: Deno.TcpConn;
  /** Bytes read and not yet consumed. */
  #buf: Uint8Array = new Uint8Array(0);
  readonly #scratch = new Uint8Array(64 * 1024);
  readonly #readStep: number;
  readonly #resetIsClose: boolean;
  readonly #closeDelimited: boolean;
  /** Rest this long after each `restEvery` bytes read (a slow but progressing reader); 0: never. */
  restMs = 0;
  /** How many bytes are read between two rests. */
  restEvery = 1024 * 1024;
  #sinceRest = 0;

  private constructor(conn: Deno.TcpConn, options: WireClientOptions) {
    this.#conn = conn;
    this.#readStep = options.readStep ?? (options.slow ? 16 * 1024 : Infinity);
    this.#resetIsClose = options.resetIsClose ?? false;
    this.#closeDelimited = options.closeDelimited ?? false;
    if (options.slow) {
      this.restMs = 2;
      this.restEvery = 256 * 1024;
    }
  }

  /** Connects to `port` on 127.0.0.1. */
  static async open(port: number, options: WireClientOptions = {}): Promise<WireClient> {
    return new WireClient(await Deno.connect({ hostname: "127.0.0.1", port }), options);
  }

  /** Writes `wire` (a string of requests, UTF-8) whole. */
  async send(wire: string): Promise<void> {
    await this.sendBytes(encoder.encode(wire));
  }

  /** Writes `bytes` whole. */
  async sendBytes(bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.byteLength;) at += await this.#conn.write(bytes.subarray(at));
  }

  /** Shuts down the writing side (a FIN); the client goes on reading. */
  closeWrite(): Promise<void> {
    return this.#conn.closeWrite();
  }

  /**
   * Reads the next response whole: framed by Content-Length or chunked (or, with `closeDelimited`, read to the
   * close); `bodiless` for a response that has no body whatever its head says (a HEAD's, a 100's).
   */
  async response(bodiless = false): Promise<ReadResponse> {
    const head = await this.#head();
    if (bodiless) return { head, body: new Uint8Array(0) };
    const length = head.match(/\r\ncontent-length: (\d+)\r\n/i);
    if (length !== null) return { head, body: await this.#exactly(Number(length[1])) };
    if (!/\r\ntransfer-encoding: chunked\r\n/i.test(head)) {
      if (this.#closeDelimited) return { head, body: await this.#toClose() };
      assert.match(head, /\r\ntransfer-encoding: chunked\r\n/i, head);
    }
    const pieces: Uint8Array[] = [];
    for (;;) {
      const size = parseInt(await this.#line(), 16);
      if (size === 0) {
        assert.equal(await this.#line(), "", "the chunked body ends with an empty line");
        return { head, body: concatBytes(pieces) };
      }
      pieces.push(await this.#exactly(size));
      assert.equal(await this.#line(), "", "a chunk ends with CRLF");
    }
  }

  /** Reads at most `limit` bytes of whatever comes (counting what is buffered), then stops: the rest stays unread. */
  async readSome(limit: number): Promise<number> {
    let got = this.#buf.byteLength;
    while (got < limit) {
      const n = await this.#read(this.#scratch);
      if (n === null) break;
      got += n;
    }
    return got;
  }

  /** Reads and discards until the server closes (EOF or reset); how many bytes came, buffered ones included. */
  async drainToClose(): Promise<number> {
    let got = this.#buf.byteLength;
    this.#buf = new Uint8Array(0);
    for (;;) {
      const n = await readOrClose(this.#conn, this.#scratch);
      if (n === null) return got;
      got += n;
    }
  }

  /** Closes the connection (once; a second close does nothing). */
  close(): void {
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  #read(into: Uint8Array): Promise<number | null> {
    return this.#resetIsClose ? readOrClose(this.#conn, into) : this.#conn.read(into);
  }

  async #head(): Promise<string> {
    for (;;) {
      const end = indexOfBlankLine(this.#buf);
      if (end >= 0) {
        const head = latin1.decode(this.#buf.subarray(0, end + 2));
        this.#buf = this.#buf.subarray(end + 4);
        return head;
      }
      await this.#more();
    }
  }

  async #line(): Promise<string> {
    for (;;) {
      const end = this.#buf.indexOf(13);
      if (end >= 0 && end + 1 < this.#buf.byteLength) {
        const line = latin1.decode(this.#buf.subarray(0, end));
        this.#buf = this.#buf.subarray(end + 2);
        return line;
      }
      await this.#more();
    }
  }

  /** The next `n` bytes, read straight into their own array past what is buffered. */
  async #exactly(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let at = Math.min(n, this.#buf.byteLength);
    out.set(this.#buf.subarray(0, at));
    this.#buf = this.#buf.subarray(at);
    while (at < n) {
      const got = await this.#read(out.subarray(at, Math.min(n, at + this.#readStep)));
      if (got === null) throw new Error(`The server closed the connection after ${at} of ${n} body bytes`);
      at += got;
      await this.#pace(got);
    }
    return out;
  }

  /** Everything up to the server's close. */
  async #toClose(): Promise<Uint8Array> {
    const pieces = [this.#buf];
    this.#buf = new Uint8Array(0);
    for (;;) {
      const n = await this.#read(this.#scratch);
      if (n === null) return concatBytes(pieces);
      pieces.push(this.#scratch.slice(0, n));
      await this.#pace(n);
    }
  }

  async #more(): Promise<void> {
    const n = await this.#read(this.#scratch);
    if (n === null) throw new Error("The server closed the connection before the response was complete");
    const next = new Uint8Array(this.#buf.byteLength + n);
    next.set(this.#buf);
    next.set(this.#scratch.subarray(0, n), this.#buf.byteLength);
    this.#buf = next;
    await this.#pace(n);
  }

  /** Rests `restMs` after each `restEvery` bytes read, if `restMs` is set. */
  async #pace(n: number): Promise<void> {
    if (this.restMs === 0) return;
    this.#sinceRest += n;
    if (this.#sinceRest < this.restEvery) return;
    this.#sinceRest = 0;
    await delay(this.restMs);
  }
}

/**
 * Runs `fn` with a client on a connection of its own (`options` as for {@linkcode WireClient.open}), closed
 * afterwards whatever happens.
 */
export async function withWireClient<T>(
  port: number,
  fn: (client: WireClient) => Promise<T>,
  options: WireClientOptions = {},
): Promise<T> {
  const client = await WireClient.open(port, options);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/** Fails naming the first byte where `actual` differs from `expected` (a 57 MB assert.deepEqual would not finish). */
export function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.byteLength, expected.byteLength, `${what}: the body's length`);
  for (let i = 0; i < expected.byteLength; i++) {
    if (actual[i] !== expected[i]) {
      assert.fail(`${what}: the body differs first at byte ${i} of ${expected.byteLength}`);
    }
  }
}

/** `p`, or a failure naming `what` after `ms`: a stall fails the test instead of hanging it. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** What was read on a connection past the last response {@linkcode nextAnswer} returned. */
const leftovers = new WeakMap<Deno.Conn, string>();

/**
 * The body of the next response on `conn` (framed by Content-Length, as text), or null when the server closed or
 * reset first. Bytes read past it are kept for the next call on the same connection.
 */
export async function nextAnswer(conn: Deno.Conn): Promise<string | null> {
  const buf = new Uint8Array(16 * 1024);
  let text = leftovers.get(conn) ?? "";
  for (;;) {
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0) {
      const length = Number(text.slice(0, end).match(/\r\ncontent-length: *(\d+)/i)?.[1] ?? 0);
      if (text.length >= end + 4 + length) {
        leftovers.set(conn, text.slice(end + 4 + length));
        return text.slice(end + 4, end + 4 + length);
      }
    }
    const n = await readOrClose(conn, buf);
    if (n === null) return null;
    text += latin1.decode(buf.subarray(0, n));
  }
}
