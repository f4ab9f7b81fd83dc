// WebSockets with Cloudflare Workers' API. Accepted: `new WebSocketPair()` gives a client and
// a server socket; the worker calls `server.accept()` and returns
// `new Response(null, { status: 101, webSocket: client })`. The front end owns the connection
// and the framing (bindings/src/websocket/ and runtime/src/server/websocket). Outbound: the
// standard `new WebSocket(url, protocols)`, connected through the deployment's outbound policy
// (bindings/src/websocket/outbound.rs), counting as a subrequest of the calling request. Here
// each socket reads its messages with one pending op and dispatches them as events.
import { core, primordials } from "ext:core/mod.js";
import {
  op_isola_ws_buffered,
  op_isola_ws_close,
  op_isola_ws_connect,
  op_isola_ws_create,
  op_isola_ws_event,
  op_isola_ws_opened,
  op_isola_ws_recv,
  op_isola_ws_send_binary,
  op_isola_ws_send_text,
} from "ext:core/ops";
import { consoleInternals } from "ext:isola_console/05_console.js";

const {
  ArrayBufferPrototype,
  ArrayBufferPrototypeSlice,
  ArrayBufferIsView,
  ArrayPrototypeIncludes,
  ArrayPrototypePush,
  ObjectDefineProperty,
  ObjectGetOwnPropertyDescriptor,
  ObjectPrototypeIsPrototypeOf,
  PromisePrototypeThen,
  PromiseResolve,
  ReflectConstruct,
  ReflectOwnKeys,
  RegExpPrototypeTest,
  SafeArrayIterator,
  SafeWeakMap,
  String,
  StringPrototypeIncludes,
  SymbolIterator,
  TypedArrayPrototypeGetBuffer,
  TypedArrayPrototypeGetByteLength,
  TypedArrayPrototypeGetByteOffset,
  TypeError,
  Uint8Array,
} = primordials;

const event = core.loadExtScript("ext:deno_web/02_event.js");
const responseExt = core.loadExtScript("ext:deno_fetch/23_response.js");
const { URL } = core.loadExtScript("ext:deno_web/00_url.js");
const file = core.loadExtScript("ext:deno_web/09_file.js");

const LOG_WARN = 2;

/** A subprotocol is an RFC 7230 token. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

const KIND_TEXT = 1;
const KIND_BINARY = 2;

/** Arguments of the socket being made by `WebSocketPair` (the constructor is not public). */
let creating = null;

/** Responses built with a `webSocket`, and their socket. */
const responseSockets = new SafeWeakMap();

/** A UTF-8 length, for the 123-byte limit on close reasons. */
function utf8Length(text) {
  return core.encode(text).length;
}

/**
 * The WHATWG WebSockets URL steps: parse, `http:` -> `ws:`, `https:` -> `wss:`; any other
 * scheme, or a fragment, is a `SyntaxError`.
 */
function normalizeUrl(input) {
  let url;
  try {
    url = new URL(input);
  } catch {
    throw new DOMException(`${JSON.stringify(input)} is not a valid URL`, "SyntaxError");
  }
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new DOMException(
      `a WebSocket URL must use ws:, wss:, http: or https:, not ${url.protocol}`,
      "SyntaxError",
    );
  }
  if (url.hash !== "" || StringPrototypeIncludes(url.href, "#")) {
    throw new DOMException("a WebSocket URL must not have a fragment", "SyntaxError");
  }
  return url.href;
}

/** The `protocols` argument as a list of distinct tokens, else a `SyntaxError`. */
function normalizeProtocols(protocols) {
  if (protocols === undefined) return [];
  let list;
  if (
    protocols !== null && typeof protocols === "object" &&
    typeof protocols[SymbolIterator] === "function"
  ) {
    list = [];
    for (const protocol of new SafeArrayIterator([...protocols])) {
      ArrayPrototypePush(list, String(protocol));
    }
  } else {
    list = [String(protocols)];
  }
  const seen = [];
  for (const protocol of new SafeArrayIterator(list)) {
    if (!RegExpPrototypeTest(TOKEN, protocol)) {
      throw new DOMException(`${JSON.stringify(protocol)} is not a valid subprotocol`, "SyntaxError");
    }
    if (ArrayPrototypeIncludes(seen, protocol)) {
      throw new DOMException(`the subprotocol ${JSON.stringify(protocol)} is listed twice`, "SyntaxError");
    }
    ArrayPrototypePush(seen, protocol);
  }
  return seen;
}

class WebSocket extends event.EventTarget {
  static CONNECTING = CONNECTING;
  static OPEN = OPEN;
  static CLOSING = CLOSING;
  static CLOSED = CLOSED;

  #rid;
  #server;
  #state = OPEN;
  #accepted = false;
  #returned = false;
  #url = null;
  #protocol = "";
  #extensions = "";
  #binaryType = "arraybuffer";
  /** Sends waiting behind a Blob being read (they go out in order), and their bytes. */
  #queue = null;
  #queued = 0;
  #queuedBytes = 0;

  /** `new WebSocket(url, protocols)`: an outbound socket, `CONNECTING` until it opens. */
  constructor(url, protocols = undefined) {
    super();
    if (creating !== null) {
      this.#rid = creating.rid;
      this.#server = creating.server;
      return;
    }
    if (url === undefined) {
      throw new TypeError("new WebSocket() needs a URL");
    }
    const href = normalizeUrl(String(url));
    const list = normalizeProtocols(protocols);
    this.#rid = op_isola_ws_connect(href, list, consoleInternals.currentRequest());
    this.#server = false;
    this.#state = CONNECTING;
    this.#accepted = true;
    this.#returned = true;
    this.#url = href;
    connect(this, this.#rid, href);
  }

  get readyState() {
    return this.#state;
  }

  get url() {
    return this.#url;
  }

  get protocol() {
    return this.#protocol;
  }

  get extensions() {
    return this.#extensions;
  }

  /** Bytes of messages sent but not written to the connection yet. */
  get bufferedAmount() {
    if (this.#state === CLOSED) return this.#queuedBytes;
    return op_isola_ws_buffered(this.#rid) + this.#queuedBytes;
  }

  get binaryType() {
    return this.#binaryType;
  }

  /** "arraybuffer" (the default) or "blob"; other values are ignored, as Web IDL has it. */
  set binaryType(value) {
    value = String(value);
    if (value === "arraybuffer" || value === "blob") this.#binaryType = value;
  }

  static binaryTypeOf(ws) {
    return ws.#binaryType;
  }

  /** The server accepted an outbound socket (unless the worker closed it meanwhile). */
  static opened(ws, protocol, extensions) {
    ws.#protocol = protocol;
    ws.#extensions = extensions;
    if (ws.#state !== CONNECTING) return;
    ws.#state = OPEN;
    ws.dispatchEvent(new event.Event("open"));
  }

  /** Starts delivering the client's messages to this (server) end's listeners. */
  accept() {
    if (!this.#server) {
      throw new TypeError("accept() is called on the server end of a WebSocketPair (its [1])");
    }
    if (this.#accepted) {
      throw new TypeError("accept() was already called on this WebSocket");
    }
    this.#accepted = true;
    readMessages(this, this.#rid);
  }

  /**
   * Sends a text (string) or binary (ArrayBuffer, view or Blob) message. Throws while
   * `CONNECTING`; after `close()` the message is dropped, as the standard has it.
   */
  send(data) {
    if (!this.#accepted) {
      throw new TypeError("call accept() on this WebSocket before sending messages");
    }
    if (this.#state === CONNECTING) {
      throw new DOMException("the WebSocket is still connecting", "InvalidStateError");
    }
    let message;
    if (typeof data === "string") {
      message = data;
    } else if (ObjectPrototypeIsPrototypeOf(ArrayBufferPrototype, data)) {
      message = new Uint8Array(data);
    } else if (ArrayBufferIsView(data)) {
      message = new Uint8Array(
        TypedArrayPrototypeGetBuffer(data),
        TypedArrayPrototypeGetByteOffset(data),
        TypedArrayPrototypeGetByteLength(data),
      );
    } else if (ObjectPrototypeIsPrototypeOf(file.BlobPrototype, data)) {
      message = data;
    } else {
      throw new TypeError(
        "a WebSocket message is a string, an ArrayBuffer, an ArrayBufferView or a Blob",
      );
    }
    if (this.#state !== OPEN) return;
    if (this.#queue === null && typeof message === "string") {
      op_isola_ws_send_text(this.#rid, message);
    } else if (this.#queue === null && !ObjectPrototypeIsPrototypeOf(file.BlobPrototype, message)) {
      op_isola_ws_send_binary(this.#rid, message);
    } else {
      this.#enqueue(message);
    }
  }

  /** Sends `message` after what is queued: a Blob is read first, so it keeps its place. */
  #enqueue(message) {
    const isBlob = ObjectPrototypeIsPrototypeOf(file.BlobPrototype, message);
    const bytes = typeof message === "string"
      ? utf8Length(message)
      : isBlob
      ? message.size
      : TypedArrayPrototypeGetByteLength(message);
    if (!isBlob && typeof message !== "string") {
      message = new Uint8Array(message); // a copy: the caller may reuse its buffer
    }
    this.#queued++;
    this.#queuedBytes += bytes;
    const rid = this.#rid;
    const previous = this.#queue ?? PromiseResolve();
    const sent = PromisePrototypeThen(previous, async () => {
      const payload = isBlob ? new Uint8Array(await message.arrayBuffer()) : message;
      this.#queuedBytes -= bytes;
      if (this.#state !== OPEN) return;
      if (typeof payload === "string") op_isola_ws_send_text(rid, payload);
      else op_isola_ws_send_binary(rid, payload);
    });
    this.#queue = PromisePrototypeThen(sent, () => this.#dequeued(), () => this.#dequeued());
  }

  #dequeued() {
    this.#queued--;
    if (this.#queued === 0) {
      this.#queue = null;
      this.#queuedBytes = 0;
    }
  }

  /** Starts the close handshake with `code` (1000 or 3000-4999) and `reason` (<= 123 bytes). */
  close(code = undefined, reason = "") {
    if (code !== undefined) {
      code = Number(code);
      if (code !== 1000 && !(code >= 3000 && code <= 4999)) {
        throw new DOMException(
          `the close code must be 1000 or in 3000-4999, not ${code}`,
          "InvalidAccessError",
        );
      }
    }
    reason = String(reason);
    if (utf8Length(reason) > 123) {
      throw new DOMException("the close reason is longer than 123 bytes", "SyntaxError");
    }
    if (this.#state === CLOSING || this.#state === CLOSED) return;
    this.#state = CLOSING;
    op_isola_ws_close(this.#rid, code ?? 1000, reason);
  }

  static closed(ws, code, reason, clean, message = "the WebSocket closed abnormally") {
    ws.#state = CLOSED;
    if (!clean) {
      ws.dispatchEvent(new event.ErrorEvent("error", { message }));
    }
    ws.dispatchEvent(new event.CloseEvent("close", { code, reason, wasClean: clean }));
    core.tryClose(ws.#rid);
  }

  /** The rid of a client end returned in a Response (once). */
  static takeForResponse(ws) {
    if (ws.#server) {
      throw new TypeError("the webSocket of a Response is the client end of a WebSocketPair (its [0])");
    }
    if (ws.#returned) {
      throw new TypeError("this WebSocket was already returned in a Response");
    }
    ws.#returned = true;
    return ws.#rid;
  }
}

event.defineEventHandler(WebSocket.prototype, "message");
event.defineEventHandler(WebSocket.prototype, "close");
event.defineEventHandler(WebSocket.prototype, "error");
event.defineEventHandler(WebSocket.prototype, "open");

const WebSocketPrototype = WebSocket.prototype;

function makeSocket(rid, server) {
  creating = { rid, server };
  try {
    return new WebSocket();
  } finally {
    creating = null;
  }
}

/** Cloudflare's pair: `[client, server]`, as `Object.values(new WebSocketPair())`. */
class WebSocketPair {
  constructor() {
    const rid = op_isola_ws_create(consoleInternals.currentRequest());
    this[0] = makeSocket(rid, false);
    this[1] = makeSocket(rid, true);
  }
}

/**
 * Waits for an outbound socket's handshake: `open`, then its messages; or, refused or failed,
 * an `error` event saying why (also logged), then `close` with 1006.
 */
function connect(ws, rid, url) {
  PromisePrototypeThen(
    op_isola_ws_opened(rid),
    (opened) => {
      if (opened.ok) {
        WebSocket.opened(ws, opened.protocol, opened.extensions);
        readMessages(ws, rid);
        return;
      }
      const message = `WebSocket connection to ${url} failed: ${opened.error}`;
      consoleInternals.log(LOG_WARN, message);
      WebSocket.closed(ws, 1006, "", false, message);
    },
    () => WebSocket.closed(ws, 1006, "", false),
  );
}

function toArrayBuffer(bytes) {
  const buffer = TypedArrayPrototypeGetBuffer(bytes);
  const offset = TypedArrayPrototypeGetByteOffset(bytes);
  const length = TypedArrayPrototypeGetByteLength(bytes);
  if (offset === 0 && length === buffer.byteLength) return buffer;
  return ArrayBufferPrototypeSlice(buffer, offset, offset + length);
}

/** Reads the socket's events one at a time until it closes. */
function readMessages(ws, rid) {
  PromisePrototypeThen(
    op_isola_ws_recv(rid),
    (received) => {
      if (received.kind === KIND_TEXT) {
        op_isola_ws_event(rid);
        ws.dispatchEvent(new event.MessageEvent("message", { data: received.text }));
      } else if (received.kind === KIND_BINARY) {
        op_isola_ws_event(rid);
        const buffer = toArrayBuffer(received.data);
        const data = WebSocket.binaryTypeOf(ws) === "blob" ? new file.Blob([buffer]) : buffer;
        ws.dispatchEvent(new event.MessageEvent("message", { data }));
      } else {
        WebSocket.closed(ws, received.code, received.reason, received.clean);
        return;
      }
      readMessages(ws, rid);
    },
    () => WebSocket.closed(ws, 1006, "", false),
  );
}

const BaseResponse = responseExt.Response;

/**
 * `Response` as workers see it: deno_fetch's, whose init may also carry `webSocket` (the client
 * end of a pair) with status 101. A plain function with deno_fetch's prototype and statics, not
 * a Proxy: a Proxy's construct trap is not inlined, and cost every request about 0.5 us.
 */
function Response(body = null, init = undefined) {
  if (new.target === undefined) {
    throw new TypeError(
      "Failed to construct 'Response': Please use the 'new' operator, this DOM object constructor cannot be called as a function.",
    );
  }
  const ws = init !== null && typeof init === "object" ? init.webSocket : undefined;
  if (ws === undefined || ws === null) {
    // `Response.prototype` is deno_fetch's, so a plain `new` makes the same object without
    // `Reflect.construct` and its argument array, which cost every request in an isolate
    // whose code is not optimised yet (many tenants); a subclass needs its own prototype.
    return new.target === Response
      ? new BaseResponse(body, init)
      : ReflectConstruct(BaseResponse, [body, init], new.target);
  }
  if (!ObjectPrototypeIsPrototypeOf(WebSocketPrototype, ws)) {
    throw new TypeError("the webSocket of a Response must be a WebSocket from a WebSocketPair");
  }
  if (init.status !== 101) {
    throw new TypeError("a Response with a webSocket must have status 101");
  }
  const response = ReflectConstruct(BaseResponse, [body, init], new.target);
  responseSockets.set(response, ws);
  return response;
}

// The interface object's own properties as Web IDL has them: deno_fetch's statics
// (`json`, `error`, `redirect`) and its prototype, not writable.
for (const key of ReflectOwnKeys(BaseResponse)) {
  if (key !== "length" && key !== "name") {
    ObjectDefineProperty(Response, key, ObjectGetOwnPropertyDescriptor(BaseResponse, key));
  }
}

// `Response.prototype.constructor` is the global `Response`, as Web IDL has it.
ObjectDefineProperty(responseExt.Response.prototype, "constructor", {
  value: Response,
  writable: true,
  configurable: true,
  enumerable: false,
});

ObjectDefineProperty(responseExt.Response.prototype, "webSocket", {
  get() {
    return responseSockets.get(this) ?? null;
  },
  configurable: true,
  enumerable: true,
});

/** The socket rid a response hands over, or undefined. Throws if it cannot be handed over. */
function socketOf(response) {
  const ws = responseSockets.get(response);
  if (ws === undefined) return undefined;
  return WebSocket.takeForResponse(ws);
}

export const websocketInternals = {
  CloseEvent: event.CloseEvent,
  Response,
  socketOf,
  WebSocket,
  WebSocketPair,
};
