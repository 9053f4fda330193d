/**
 * HTTP/1.1 on the reactor: a strict incremental request parser, a server
 * engine with a raw handler API (`listenHttp`) and a fetch-style one
 * (`serve`), for code written for `Deno.serve`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { listenHttp } from "@fdloop/fdloop/http";
 * import { Reactor } from "@fdloop/fdloop/reactor";
 * const reactor = new Reactor();
 * const server = listenHttp({ port: 0, reactor }, (_req, res) => res.end("Hello, World!"));
 * const client = (async () => {
 *   const res = await fetch(`http://127.0.0.1:${server.port}/`);
 *   assert.equal(await res.text(), "Hello, World!");
 *   await server.shutdown();
 *   reactor.stop();
 * })();
 * await reactor.run();
 * await client;
 * reactor.close();
 * ```
 *
 * @module
 */

export { DEFAULT_LIMITS, type ParserHandler, type ParserLimits, RequestHead, RequestParser } from "./parser.ts";
export { httpDate, PreparedHeaders } from "./response.ts";
export { reasonPhrase, STATUS_TEXT } from "./status.ts";
export {
  type HttpHandler,
  type HttpRequest,
  type HttpResponse,
  HttpServer,
  type HttpServerOptions,
  listenHttp,
} from "./server.ts";
export { serve, type ServeHandler, type ServeHandlerInfo, type ServeOptions, type ServeServer } from "./serve.ts";
export { HttpClient, type HttpClientOptions, request, type RequestOptions } from "./client.ts";
