// WebSockets a worker accepts, with Cloudflare Workers' API: `new WebSocketPair()` gives a
// client and a server socket; the worker calls `server.accept()` and returns
// `new Response(null, { status: 101, webSocket: client })`. The front end owns the connection
// and the framing (bindings/src/websocket.rs and runtime/src/server/websocket); here each
// socket reads its messages with one pending op and dispatches them as events.
import { core, primordials } from "ext:core/mod.js";
import {
  op_isola_ws_close,
  op_isola_ws_create,
  op_isola_ws_event,
  op_isola_ws_recv,
  op_isola_ws_send_binary,
  op_isola_ws_send_text,
} from "ext:core/ops";

const {
  ArrayBufferPrototype,
  ArrayBufferPrototypeSlice,
  ArrayBufferIsView,
  ObjectDefineProperty,
  ObjectGetOwnPropertyDescriptor,
  ObjectPrototypeIsPrototypeOf,
  PromisePrototypeThen,
  ReflectConstruct,
  ReflectOwnKeys,
  SafeWeakMap,
  TypedArrayPrototypeGetBuffer,
  TypedArrayPrototypeGetByteLength,
  TypedArrayPrototypeGetByteOffset,
  Uint8Array,
} = primordials;

const event = core.loadExtScript("ext:deno_web/02_event.js");
const responseExt = core.loadExtScript("ext:deno_fetch/23_response.js");

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

  constructor(url, _protocols = undefined) {
    super();
    if (creating === null) {
      throw new TypeError(
        `outbound WebSocket connections (new WebSocket(${
          typeof url === "string" ? JSON.stringify(url) : "url"
        })) are not supported by Isola; accept client sockets with WebSocketPair`,
      );
    }
    this.#rid = creating.rid;
    this.#server = creating.server;
  }

  get readyState() {
    return this.#state;
  }

  get url() {
    return null;
  }

  get protocol() {
    return "";
  }

  get extensions() {
    return "";
  }

  get binaryType() {
    return "arraybuffer";
  }

  set binaryType(_value) {}

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

  /** Sends a text (string) or binary (ArrayBuffer or view) message. */
  send(data) {
    if (!this.#accepted) {
      throw new TypeError("call accept() on this WebSocket before sending messages");
    }
    if (this.#state !== OPEN) {
      throw new DOMException("the WebSocket is not open", "InvalidStateError");
    }
    if (typeof data === "string") {
      op_isola_ws_send_text(this.#rid, data);
    } else if (ObjectPrototypeIsPrototypeOf(ArrayBufferPrototype, data)) {
      op_isola_ws_send_binary(this.#rid, new Uint8Array(data));
    } else if (ArrayBufferIsView(data)) {
      op_isola_ws_send_binary(
        this.#rid,
        new Uint8Array(
          TypedArrayPrototypeGetBuffer(data),
          TypedArrayPrototypeGetByteOffset(data),
          TypedArrayPrototypeGetByteLength(data),
        ),
      );
    } else {
      throw new TypeError("a WebSocket message is a string, an ArrayBuffer or an ArrayBufferView");
    }
  }

  /** Starts the close handshake with `code` (1000 or 3000–4999) and `reason` (≤ 123 bytes). */
  close(code = undefined, reason = "") {
    if (code !== undefined) {
      code = Number(code);
      if (code !== 1000 && !(code >= 3000 && code <= 4999)) {
        throw new DOMException(
          `the close code must be 1000 or in 3000–4999, not ${code}`,
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

  static closed(ws, code, reason, clean) {
    ws.#state = CLOSED;
    if (!clean) {
      ws.dispatchEvent(new event.ErrorEvent("error", { message: "the WebSocket closed abnormally" }));
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
    const rid = op_isola_ws_create();
    this[0] = makeSocket(rid, false);
    this[1] = makeSocket(rid, true);
  }
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
        ws.dispatchEvent(new event.MessageEvent("message", { data: toArrayBuffer(received.data) }));
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
 * a Proxy: a Proxy's construct trap is not inlined, and cost every request about 0.5 µs.
 */
function Response(body = null, init = undefined) {
  if (new.target === undefined) {
    throw new TypeError(
      "Failed to construct 'Response': Please use the 'new' operator, this DOM object constructor cannot be called as a function.",
    );
  }
  const ws = init !== null && typeof init === "object" ? init.webSocket : undefined;
  if (ws === undefined || ws === null) {
    return ReflectConstruct(BaseResponse, [body, init], new.target);
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
