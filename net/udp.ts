/**
 * UDP: `bindUdp()` and `UdpSocket`.
 *
 * @module
 */

import {
  AF_INET6,
  close as closeFd,
  decodeSockaddr,
  recvFrom,
  sendTo,
  SOCK_DGRAM,
  SOCKADDR_STORAGE_SIZE,
  WOULD_BLOCK,
} from "../ffi/mod.ts";
import type { Reactor } from "../reactor/mod.ts";
import { endpoint } from "./address.ts";
import { defaultReactor, soon } from "./default_reactor.ts";
import { Emitter } from "./emitter.ts";
import { openBoundSocket } from "./socket.ts";

/** An IP address and port: where a datagram came from, or where to send one. */
export interface IPAddress {
  /** Numeric IPv4 or IPv6 address (`localhost` is accepted when sending). */
  address: string;
  /** The port. */
  port: number;
}

/** The sender of a datagram, as the `message` event gives it. */
export interface UdpRemoteInfo extends IPAddress {
  /** `"IPv4"` or `"IPv6"` (an IPv4 sender reaching a dual-stack `::` socket shows as `::ffff:a.b.c.d`). */
  family: "IPv4" | "IPv6";
  /** The datagram's size in bytes. */
  size: number;
}

/** Events of a {@linkcode UdpSocket}. */
export interface UdpEvents {
  /**
   * A datagram arrived. `bytes` is a view valid only during the call: copy it
   * to keep it. `rinfo` can be passed straight to `send()` to answer.
   */
  message: (bytes: Uint8Array, rinfo: UdpRemoteInfo) => void;
  /** A send or receive failed (the socket stays open). */
  error: (error: Error) => void;
  /** The socket closed. */
  close: () => void;
}

/** Options of {@linkcode bindUdp}. */
export interface UdpOptions {
  /** Host to bind (default 127.0.0.1). */
  host?: string;
  /** Port (default 0: a free port). */
  port?: number;
  /** `SO_REUSEADDR`. */
  reuseAddr?: boolean;
  /** `IPV6_V6ONLY` for an IPv6 host (default false). */
  ipv6Only?: boolean;
  /** The reactor (default: {@linkcode defaultReactor}). */
  reactor?: Reactor;
  /** Datagrams waiting for writability, at most (default 1024); beyond it `send()` drops and returns false. */
  maxQueue?: number;
}

const MAX_DATAGRAM = 65536;
const recvBuf = new Uint8Array(MAX_DATAGRAM);
const addrBuf = new Uint8Array(SOCKADDR_STORAGE_SIZE);
const addrLen = new Uint32Array(1);

/**
 * A bound UDP socket.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bindUdp } from "@fdloop/fdloop/net";
 * const sock = bindUdp({ port: 0 });
 * sock.on("message", (bytes, rinfo) => sock.send(bytes, rinfo)); // echo
 * assert.equal(sock.address.address, "127.0.0.1");
 * sock.close();
 * ```
 */
export class UdpSocket extends Emitter<UdpEvents> {
  /** The reactor. */
  readonly reactor: Reactor;
  /** The bound address. */
  readonly address: IPAddress & { family: "IPv4" | "IPv6" };
  #fd: number;
  readonly #fdForReports: number;
  readonly #family: number;
  readonly #maxQueue: number;
  #queue: { bytes: Uint8Array; addr: Uint8Array; len: number }[] = [];
  #writing = false;

  /** Prefer {@linkcode bindUdp}. */
  constructor(options: UdpOptions = {}) {
    super();
    this.reactor = options.reactor ?? defaultReactor();
    this.#maxQueue = options.maxQueue ?? 1024;
    const ep = endpoint({ host: options.host, port: options.port ?? 0 });
    this.#family = ep.family;
    const { fd, address } = openBoundSocket(ep, SOCK_DGRAM, {
      reuseAddr: options.reuseAddr,
      ipv6Only: options.ipv6Only,
    });
    try {
      this.reactor.addReader(fd, this.#onReadable);
    } catch (err) {
      closeFd(fd);
      throw err;
    }
    this.address = address as UdpSocket["address"]; // an AF_INET/AF_INET6 socket has an IP address
    this.#fd = this.#fdForReports = fd;
  }

  /** The socket's fd, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /** The bound port. */
  get port(): number {
    return this.address.port;
  }

  /**
   * Sends one datagram to `{ address, port }` (a `message` event's `rinfo`
   * works as is).
   *
   * @returns true when sent or queued, false when dropped (queue full).
   * @throws {TypeError} for a bad address; {@linkcode OSError} e.g. `EMSGSIZE` for an oversized datagram.
   */
  send(bytes: Uint8Array | string, to: IPAddress): boolean {
    if (this.#fd < 0) throw new Error("Cannot send on a closed UDP socket");
    const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
    let host = to.address;
    // An IPv6 socket reaches IPv4 peers through mapped addresses.
    if (this.#family === AF_INET6 && !host.includes(":") && host !== "localhost") host = `::ffff:${host}`;
    const ep = endpoint({ host, port: to.port });
    if (this.#queue.length === 0) {
      if (sendTo(this.#fd, data, ep.buf, ep.len) !== WOULD_BLOCK) return true;
    }
    if (this.#queue.length >= this.#maxQueue) return false;
    this.#queue.push({ bytes: data.slice(), addr: ep.buf, len: ep.len });
    if (!this.#writing) {
      this.reactor.addWriter(this.#fd, this.#onWritable);
      this.#writing = true;
    }
    return true;
  }

  /** Closes the socket. */
  close(): void {
    if (this.#fd < 0) return;
    this.reactor.removeReader(this.#fd);
    if (this.#writing) this.reactor.removeWriter(this.#fd);
    closeFd(this.#fd);
    this.#fd = -1;
    this.#queue = [];
    soon(this.reactor, () => this.emit("close"));
  }

  /** An `error` nobody listens for goes to the reactor's `onError`, naming the fd. */
  protected override unhandledError(error: unknown): void {
    this.reactor.reportError(error, { source: "transport", fd: this.#fdForReports });
  }

  readonly #onReadable = (): void => {
    for (let i = 0; i < 64 && this.#fd >= 0; i++) {
      let n: number;
      try {
        n = recvFrom(this.#fd, recvBuf, addrBuf, addrLen);
      } catch (err) {
        // e.g. ECONNREFUSED from an ICMP port-unreachable: report, keep the socket.
        this.emit("error", err as Error);
        continue;
      }
      if (n === WOULD_BLOCK) return;
      const from = decodeSockaddr(addrBuf, addrLen[0]) as IPAddress & { family: "IPv4" | "IPv6" };
      this.emit("message", recvBuf.subarray(0, n), {
        address: from.address,
        port: from.port,
        family: from.family,
        size: n,
      });
    }
  };

  readonly #onWritable = (): void => {
    const q = this.#queue;
    while (q.length > 0 && this.#fd >= 0) {
      const d = q[0];
      let n: number;
      try {
        n = sendTo(this.#fd, d.bytes, d.addr, d.len);
      } catch (err) {
        q.shift();
        this.emit("error", err as Error);
        continue;
      }
      if (n === WOULD_BLOCK) return;
      q.shift();
    }
    if (this.#fd < 0) return; // closed by an error listener
    this.reactor.removeWriter(this.#fd);
    this.#writing = false;
  };
}

/**
 * Binds a UDP socket.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bindUdp, Reactor } from "@fdloop/fdloop";
 * const reactor = new Reactor();
 * const a = bindUdp({ host: "127.0.0.1", port: 0, reactor });
 * const b = bindUdp({ host: "127.0.0.1", port: 0, reactor }, (bytes, rinfo) => {
 *   assert.equal(new TextDecoder().decode(bytes), "hi");
 *   assert.deepEqual(rinfo, { address: "127.0.0.1", port: a.port, family: "IPv4", size: 2 });
 *   reactor.stop();
 * });
 * a.send("hi", { address: "127.0.0.1", port: b.port });
 * await reactor.run();
 * a.close();
 * b.close();
 * reactor.close();
 * ```
 */
export function bindUdp(options: UdpOptions = {}, onMessage?: UdpEvents["message"]): UdpSocket {
  const sock = new UdpSocket(options);
  if (onMessage) sock.on("message", onMessage);
  return sock;
}
