/**
 * UDP: `bindUdp()` and `UdpSocket`.
 *
 * @module
 */

import {
  AF_INET6,
  bind,
  close as closeFd,
  decodeSockaddr,
  getSockName,
  type OSError,
  recvFrom,
  sendTo,
  setSockOptInt,
  setV6Only,
  SO_REUSEADDR,
  SOCK_DGRAM,
  SOCKADDR_STORAGE_SIZE,
  socket,
  type SocketAddress,
  SOL_SOCKET,
  WOULD_BLOCK,
} from "../ffi/mod.ts";
import type { Reactor } from "../reactor/mod.ts";
import { endpoint, type HostPort } from "./address.ts";
import { defaultReactor, soon } from "./default_reactor.ts";
import { Emitter } from "./emitter.ts";

/** Events of a {@linkcode UdpSocket}. */
export interface UdpEvents {
  /** A datagram arrived. `bytes` is a view valid only during the call: copy it to keep it. */
  message: (bytes: Uint8Array, rinfo: SocketAddress & { size: number }) => void;
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
 * import { bindUdp } from "@fdloop/fdloop/net";
 * const sock = bindUdp({ port: 0 });
 * sock.on("message", (bytes, rinfo) => sock.send(bytes, rinfo as { address: string; port: number }));
 * sock.close();
 * ```
 */
export class UdpSocket extends Emitter<UdpEvents> {
  /** The socket's fd, or -1 once closed. */
  fd: number;
  /** The reactor. */
  readonly reactor: Reactor;
  /** The bound address. */
  readonly address: SocketAddress;
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
    const fd = socket(ep.family, SOCK_DGRAM);
    try {
      if (options.reuseAddr) setSockOptInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
      if (ep.family === AF_INET6) setV6Only(fd, options.ipv6Only ?? false);
      bind(fd, ep.buf, ep.len, ep.text);
      this.address = getSockName(fd);
      this.reactor.addReader(fd, this.#onReadable);
    } catch (err) {
      closeFd(fd);
      throw err;
    }
    this.fd = fd;
  }

  /** The bound port. */
  get port(): number {
    return this.address.family === "unix" ? 0 : this.address.port;
  }

  /**
   * Sends one datagram to `{ address | host, port }`.
   *
   * @returns true when sent or queued, false when dropped (queue full).
   * @throws {TypeError} for a bad address; {@linkcode OSError} e.g. `EMSGSIZE` for an oversized datagram.
   */
  send(bytes: Uint8Array | string, to: { address?: string; host?: string; port: number }): boolean {
    if (this.fd < 0) throw new Error("Cannot send on a closed UDP socket");
    const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
    let host = to.address ?? to.host ?? "127.0.0.1";
    // An IPv6 socket reaches IPv4 peers through mapped addresses.
    if (this.#family === AF_INET6 && !host.includes(":") && host !== "localhost") host = `::ffff:${host}`;
    const ep = endpoint({ host, port: to.port });
    if (this.#queue.length === 0) {
      if (sendTo(this.fd, data, ep.buf, ep.len) !== WOULD_BLOCK) return true;
    }
    if (this.#queue.length >= this.#maxQueue) return false;
    this.#queue.push({ bytes: data.slice(), addr: ep.buf, len: ep.len });
    if (!this.#writing) {
      this.reactor.addWriter(this.fd, this.#onWritable);
      this.#writing = true;
    }
    return true;
  }

  /** Closes the socket. */
  close(): void {
    if (this.fd < 0) return;
    this.reactor.removeReader(this.fd);
    if (this.#writing) this.reactor.removeWriter(this.fd);
    closeFd(this.fd);
    this.fd = -1;
    this.#queue = [];
    soon(this.reactor, () => this.emit("close"));
  }

  readonly #onReadable = (): void => {
    for (let i = 0; i < 64 && this.fd >= 0; i++) {
      let n: number;
      try {
        n = recvFrom(this.fd, recvBuf, addrBuf, addrLen);
      } catch (err) {
        // e.g. ECONNREFUSED from an ICMP port-unreachable: report, keep the socket.
        this.emit("error", err as OSError);
        continue;
      }
      if (n === WOULD_BLOCK) return;
      const from = decodeSockaddr(addrBuf, addrLen[0]);
      this.emit("message", recvBuf.subarray(0, n), { ...from, size: n });
    }
  };

  readonly #onWritable = (): void => {
    const q = this.#queue;
    while (q.length > 0 && this.fd >= 0) {
      const d = q[0];
      let n: number;
      try {
        n = sendTo(this.fd, d.bytes, d.addr, d.len);
      } catch (err) {
        q.shift();
        this.emit("error", err as Error);
        continue;
      }
      if (n === WOULD_BLOCK) return;
      q.shift();
    }
    if (this.fd < 0) return; // closed by an error listener
    this.reactor.removeWriter(this.fd);
    this.#writing = false;
  };
}

/**
 * Binds a UDP socket.
 *
 * @example
 * ```ts
 * import { bindUdp } from "@fdloop/fdloop/net";
 * const sock = bindUdp({ host: "127.0.0.1", port: 0 }, (bytes, rinfo) => console.log(bytes.length, rinfo));
 * console.log(sock.port > 0); // true
 * sock.close();
 * ```
 */
export function bindUdp(options: UdpOptions = {}, onMessage?: UdpEvents["message"]): UdpSocket {
  const sock = new UdpSocket(options);
  if (onMessage) sock.on("message", onMessage);
  return sock;
}

export type { HostPort };
