/**
 * Transports on the reactor: TCP (IPv4/IPv6) and Unix stream servers and
 * clients with buffered writes and backpressure, and UDP.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect, listen } from "@fdloop/fdloop/net";
 * import { Reactor } from "@fdloop/fdloop/reactor";
 * const reactor = new Reactor();
 * const server = listen({ port: 0, reactor }, (conn) => {
 *   conn.on("data", (chunk) => conn.write(chunk));
 * });
 * const client = connect({ port: server.port, reactor });
 * client.write("ping");
 * client.on("data", (chunk) => {
 *   assert.equal(new TextDecoder().decode(chunk), "ping");
 *   client.destroy();
 *   server.close({ closeConnections: true }).then(() => reactor.stop());
 * });
 * await reactor.run();
 * reactor.close();
 * ```
 *
 * @module
 */

export { formatAddress, formatHostPort, type HostPort, resolveHost, type UnixPath } from "./address.ts";
export { Emitter, type Listener } from "./emitter.ts";
export {
  type ConnectingOptions,
  Connection,
  type ConnectionEvents,
  type ConnectionInit,
  type ConnectionOptions,
} from "./connection.ts";
export { listen, type ListenOptions, Server, type ServerEvents } from "./server.ts";
export { connect, type ConnectOptions } from "./client.ts";
export { bindUdp, type IPAddress, type UdpEvents, type UdpOptions, type UdpRemoteInfo, UdpSocket } from "./udp.ts";
export { defaultReactor } from "./default_reactor.ts";
export type { SocketAddress } from "../ffi/mod.ts";
