// The request lifecycle inside an isolate: Rust hands each HTTP request to `dispatch`, which
// builds a fetch-spec Request, calls the worker (module `fetch` export or service-worker `fetch`
// event) and hands the Response back through the isola_http ops. A streaming body is passed
// as a resource so Rust can pull chunks with backpressure.
import { core, primordials } from "ext:core/mod.js";
import {
  op_isola_request_headers,
  op_isola_respond_bytes,
  op_isola_respond_empty,
  op_isola_respond_error,
  op_isola_respond_stream,
  op_isola_respond_text,
  op_isola_respond_text_typed,
  op_isola_respond_websocket,
  op_isola_wait_until_expired,
  op_isola_wait_until_pending,
} from "ext:core/ops";
import { consoleInternals } from "ext:isola_console/05_console.js";
import { websocketInternals } from "ext:isola_websocket/50_websocket.js";

const {
  ArrayPrototypePush,
  NumberPrototypeToString,
  ObjectDefineProperty,
  ObjectKeys,
  ObjectPrototypeIsPrototypeOf,
  PromisePrototypeThen,
  PromiseReject,
  PromiseResolve,
  ReflectApply,
  SafeMap,
  StringPrototypeToLowerCase,
  TypedArrayPrototypeGetSymbolToStringTag,
} = primordials;

const body = core.loadExtScript("ext:deno_fetch/22_body.js");
const requestExt = core.loadExtScript("ext:deno_fetch/23_request.js");
const responseExt = core.loadExtScript("ext:deno_fetch/23_response.js");
const streams = core.loadExtScript("ext:deno_web/06_streams.js");
const event = core.loadExtScript("ext:deno_web/02_event.js");
const { URL } = core.loadExtScript("ext:deno_web/00_url.js");

const { currentRequest, describeThrown, describeValue, log, reportException } = consoleInternals;
const { getAsyncContext, setAsyncContext } = core;
const { clearTimeout, setTimeout } = core.loadExtScript("ext:deno_web/02_timers.js");
const LOG_ERROR = 3;

const MODULE = 1;
const SERVICE_WORKER = 2;
let mode = 0;
let handler = null;
let env = undefined;
/** While the module evaluates, a rejection is the module's own failure, not a stray one. */
let starting = true;
/** How long `ctx.waitUntil` work may run after the response (`wait_until_ms`). */
let waitUntilMs = 30000;
let startupError = undefined;

/**
 * Requests whose client may still disconnect while the worker works on them, by exchange id:
 * a slot per id modulo the ring's size, and a map for an id whose slot is taken. A map alone
 * rehashed or shrank its table every few requests as entries came and went.
 */
class InFlight {
  static SIZE = 256;
  #ids = new Array(InFlight.SIZE).fill(-1);
  #requests = new Array(InFlight.SIZE).fill(null);
  #overflow = new SafeMap();

  set(id, request) {
    const slot = id % InFlight.SIZE;
    if (this.#ids[slot] === -1) {
      this.#ids[slot] = id;
      this.#requests[slot] = request;
    } else {
      this.#overflow.set(id, request);
    }
  }

  get(id) {
    const slot = id % InFlight.SIZE;
    return this.#ids[slot] === id ? this.#requests[slot] : this.#overflow.get(id);
  }

  delete(id) {
    const slot = id % InFlight.SIZE;
    if (this.#ids[slot] === id) {
      this.#ids[slot] = -1;
      this.#requests[slot] = null;
    } else if (this.#overflow.size !== 0) {
      this.#overflow.delete(id);
    }
  }
}
const inFlight = new InFlight();

const TEXT_PLAIN = [["content-type", "text/plain;charset=UTF-8"]];
const NO_HEADERS = [];
/** The methods Rust passes by number (`KNOWN_METHODS` in `runtime/src/isolate/mod.rs`). */
const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];

/** `ctx` of a module worker's `fetch(request, env, ctx)`, bound to its request. */
class ExecutionContext {
  #id;

  constructor(id) {
    this.#id = id;
  }

  /**
   * Keeps `promise` running after the response is sent; a rejection is logged. The request's
   * context stays open (its fetches and logs are its own) until the promise settles. Work still
   * pending after `wait_until_ms` gets the isolate discarded (which cancels it).
   */
  waitUntil(promise) {
    const id = this.#id;
    const deadline = setTimeout(() => op_isola_wait_until_expired(waitUntilMs), waitUntilMs);
    op_isola_wait_until_pending(id, 1);
    PromisePrototypeThen(
      PromiseResolve(promise),
      () => {
        clearTimeout(deadline);
        op_isola_wait_until_pending(id, -1);
      },
      (error) => {
        clearTimeout(deadline);
        // Reported while the request is still open, so it lands on the request's own event.
        reportException(`Uncaught (in waitUntil) ${describeThrown(error)}`);
        op_isola_wait_until_pending(id, -1);
      },
    );
  }

  /** Falls through to the origin when the handler throws; a no-op until routes have origins. */
  passThroughOnException() {}
}

/** The `fetch` event of a service-worker-syntax worker. */
class FetchEvent extends event.Event {
  #request;
  #ctx;
  #response = null;
  #responded = false;

  constructor(type, init) {
    super(type, { cancelable: true });
    this.#request = init.request;
    this.#ctx = init.ctx;
  }

  get request() {
    return this.#request;
  }

  /** Supplies the response (a Response or a promise of one); may be called once. */
  respondWith(response) {
    if (this.#responded) {
      throw new DOMException("respondWith() was already called", "InvalidStateError");
    }
    this.#responded = true;
    this.#response = response;
  }

  waitUntil(promise) {
    this.#ctx.waitUntil(promise);
  }

  passThroughOnException() {}

  static responseOf(fetchEvent) {
    return fetchEvent.#responded ? fetchEvent.#response : undefined;
  }
}

/**
 * The fetch spec's inner request of an incoming request: the shape deno_fetch's
 * `newInnerRequest` returns, with its accessors on a prototype. `newInnerRequest` returns an
 * object literal with getters and setters, which V8 builds in dictionary mode, property by
 * property, and that cost each request about 2 us (profiled: `DefineAccessorPropertyUnchecked`
 * was half of `dispatch`). The header list is made on first use, from Rust
 * (`op_isola_request_headers`), which keeps the headers until the request ends (its response
 * sent and its `waitUntil` work settled); read later for the first time, they throw, as
 * Deno's do.
 */
class IncomingInnerRequest {
  constructor(method, url, id, body) {
    this.methodInner = method;
    this.headerListInner = null;
    this.id = id;
    this.body = body;
    this.redirectMode = "follow";
    this.redirectCount = 0;
    this.urlList = [() => url];
    this.urlListProcessed = [url];
    this.clientRid = null;
    this.blobUrlEntry = null;
  }

  get method() {
    return this.methodInner;
  }

  set method(value) {
    this.methodInner = value;
  }

  get headerList() {
    if (this.headerListInner === null) {
      const flat = op_isola_request_headers(this.id);
      if (flat === null) {
        throw new TypeError(
          "Request closed: its headers were first read after its response was sent and its waitUntil work settled",
        );
      }
      this.headerListInner = headerPairs(flat);
    }
    return this.headerListInner;
  }

  set headerList(value) {
    this.headerListInner = value;
  }

  url() {
    return this.urlListProcessed[0];
  }

  currentUrl() {
    const last = this.urlList.length - 1;
    if (this.urlListProcessed[last] === undefined) {
      this.urlListProcessed[last] = this.urlList[last]();
    }
    return this.urlListProcessed[last];
  }
}

function headerPairs(flat) {
  const list = [];
  for (let i = 0; i < flat.length; i += 2) {
    ArrayPrototypePush(list, [flat[i], flat[i + 1]]);
  }
  return list;
}

// The functions every isolate runs on its start and first request but that need a request
// (or a worker) to run are parenthesized function expressions: V8 compiles those with the
// module ("likely called"), so their bytecode is in the snapshot and an isolate does not parse
// and compile them on its first request. `warmUp` below covers the rest of the request path.

/**
 * Entry point for each HTTP request (called from Rust). The request's id becomes the async
 * context of everything the handler starts, so its fetches, logs and `waitUntil` work find the
 * request's context in Rust however requests interleave.
 */
const dispatch = (function dispatch(id, method, url, bodyRid) {
  const previous = getAsyncContext();
  setAsyncContext(id);
  try {
    run(id, typeof method === "number" ? METHODS[method] : method, url, bodyRid);
  } finally {
    setAsyncContext(previous);
  }
});

const run = (function run(id, method, url, bodyRid) {
  const innerBody = bodyRid === null ? null : new body.InnerBody(streams.readableStreamForRid(bodyRid));
  const inner = new IncomingInnerRequest(method, url, id, innerBody);
  const request = requestExt.fromInnerRequest(inner, "immutable");
  inFlight.set(id, request);
  const ctx = new ExecutionContext(id);
  let result;
  try {
    if (mode === MODULE) {
      result = handler.fetch(request, env, ctx);
    } else {
      const fetchEvent = new FetchEvent("fetch", { request, ctx });
      event.EventTarget.prototype.dispatchEvent.call(globalThis, fetchEvent);
      result = FetchEvent.responseOf(fetchEvent);
      if (result === undefined) {
        fail(id, "no fetch event listener called respondWith()");
        return;
      }
    }
  } catch (error) {
    fail(id, describeThrown(error));
    return;
  }
  if (result !== null && typeof result === "object" && typeof result.then === "function") {
    PromisePrototypeThen(
      result,
      (response) => respond(id, response),
      (error) => fail(id, describeThrown(error)),
    );
  } else {
    respond(id, result);
  }
});

function isBytes(value) {
  return TypedArrayPrototypeGetSymbolToStringTag(value) === "Uint8Array";
}

/**
 * How a response's header list can travel as a kind (`op_isola_respond_text_typed`): none, or
 * one `content-type` (deno_fetch's serve-fast kinds, which it sets only for status 200);
 * `LISTED` when the list must be read.
 */
const LISTED = -1;
const headerKind = (function headerKind(headerList) {
  if (headerList.length === 0) return responseExt.SERVE_FAST_HEADER_NONE;
  if (headerList.length !== 1) return LISTED;
  const name = headerList[0][0];
  if (name !== "content-type" && StringPrototypeToLowerCase(name) !== "content-type") return LISTED;
  return headerList[0][1] === "text/plain;charset=UTF-8"
    ? responseExt.SERVE_FAST_HEADER_DEFAULT_TEXT
    : responseExt.SERVE_FAST_HEADER_CONTENT_TYPE;
});

const sendStatic = (function sendStatic(id, status, headerList, staticBody) {
  if (typeof staticBody === "string") {
    const kind = headerKind(headerList);
    if (kind === LISTED) {
      op_isola_respond_text(id, status, headerList, staticBody);
    } else {
      const contentType = kind === responseExt.SERVE_FAST_HEADER_CONTENT_TYPE ? headerList[0][1] : "";
      op_isola_respond_text_typed(id, status, kind, contentType, staticBody);
    }
  } else if (isBytes(staticBody)) {
    op_isola_respond_bytes(id, status, headerList, staticBody);
  } else {
    return false;
  }
  inFlight.delete(id);
  return true;
});

const respond = (function respond(id, response) {
  if (!ObjectPrototypeIsPrototypeOf(responseExt.ResponsePrototype, response)) {
    fail(id, `the handler returned ${describeValue(response)}, which is not a Response`);
    return;
  }
  if (response.status === 101) {
    respondWithSocket(id, response);
    return;
  }
  // Fast path: a Response built from a string or bytes whose headers were never touched.
  const fastStatus = response[responseExt.serveFastStatusKey];
  if (fastStatus !== 0 && response[responseExt.serveFastConsumedKey] === false) {
    const kind = response[responseExt.serveFastHeaderKindKey];
    const headerList = kind === responseExt.SERVE_FAST_HEADER_NONE
      ? NO_HEADERS
      : kind === responseExt.SERVE_FAST_HEADER_DEFAULT_TEXT
      ? TEXT_PLAIN
      : [["content-type", response[responseExt.serveFastContentTypeKey]]];
    if (sendStatic(id, fastStatus, headerList, response[responseExt.serveFastBodyKey])) {
      return;
    }
  }
  let inner;
  try {
    inner = responseExt.toInnerResponse(response);
  } catch (error) {
    fail(id, describeThrown(error));
    return;
  }
  if (inner.type === "error") {
    fail(id, "the handler returned Response.error()");
    return;
  }
  const { status, headerList } = inner;
  if (inner.body === null) {
    op_isola_respond_empty(id, status, headerList);
    inFlight.delete(id);
    return;
  }
  if (inner.body.unusable()) {
    fail(id, "the handler returned a Response whose body was already used");
    return;
  }
  const source = inner.body.streamOrStatic;
  if (!ObjectPrototypeIsPrototypeOf(streams.ReadableStreamPrototype, source)) {
    source.consumed = true;
    if (sendStatic(id, status, headerList, source.body)) {
      return;
    }
  }
  const rid = streams.resourceForReadableStream(inner.body.stream, inner.body.length);
  op_isola_respond_stream(id, status, headerList, rid);
});

/** A 101 response carrying the client end of a WebSocketPair: the front end takes it over. */
function respondWithSocket(id, response) {
  try {
    const rid = websocketInternals.socketOf(response);
    if (rid === undefined) {
      fail(id, "the handler returned a 101 Response without a webSocket");
      return;
    }
    const { status, headerList } = responseExt.toInnerResponse(response);
    op_isola_respond_websocket(id, status, headerList, rid);
    inFlight.delete(id);
  } catch (error) {
    fail(id, describeThrown(error));
  }
}

function fail(id, message) {
  inFlight.delete(id);
  op_isola_respond_error(id, message);
}

/** The client went away, or the exchange ended: abort `request.signal` if still pending. */
function finish(id, aborted) {
  const request = inFlight.get(id);
  if (request === undefined) return;
  inFlight.delete(id);
  if (aborted) {
    requestExt.abortRequest(request);
  }
}

/**
 * `fetch()` as workers see it: deno_fetch's, with the calling request named in a header that
 * the outbound guard removes, so each subrequest (every redirect hop too) counts against, and
 * carries the loop chain of, the request it was made for. Like the standard's, it never throws:
 * a bad URL or init rejects the promise it returns (a `TypeError`).
 */
function contextualFetch(innerFetch, Request, contextHeader) {
  return function fetch(input, init = undefined) {
    let request;
    try {
      request = new Request(input, init);
    } catch (error) {
      return PromiseReject(error);
    }
    request.headers.set(contextHeader, NumberPrototypeToString(currentRequest()));
    return innerFetch(request);
  };
}

/**
 * `setTimeout` / `setInterval` as workers see them: an exception their callback throws is
 * reported (as an `error` event, then logged) while the timer's async context is still
 * current, so it names the request that set the timer, also after that request ended.
 * deno_web's timer restores the previous context before the exception reaches the isolate's
 * report callback.
 */
function reportingTimer(setTimer) {
  return function (callback, timeout = 0, ...args) {
    if (typeof callback !== "function") {
      return setTimer(callback, timeout, ...args);
    }
    const reporting = function (...callArgs) {
      try {
        return ReflectApply(callback, globalThis, callArgs);
      } catch (error) {
        onReportedException(error);
      }
    };
    return setTimer(reporting, timeout, ...args);
  };
}

/** Defines the vars as globals, as service-worker-syntax workers expect. */
function installGlobals(varsJson) {
  const vars = JSON.parse(varsJson);
  for (const name of ObjectKeys(vars)) {
    ObjectDefineProperty(globalThis, name, {
      value: vars[name],
      writable: true,
      configurable: true,
      enumerable: true,
    });
  }
}

/**
 * Picks the worker's entry: the module's default export with a `fetch` method, else a
 * `fetch` event listener. Returns an error message, or undefined when the worker is usable.
 */
const setHandler = (function setHandler(namespace, varsJson, waitUntilLimitMs) {
  waitUntilMs = Number(waitUntilLimitMs);
  const exported = namespace.default;
  if (exported !== null && exported !== undefined && typeof exported.fetch === "function") {
    mode = MODULE;
    handler = exported;
    env = JSON.parse(varsJson);
    return undefined;
  }
  if (event.listenerCount(globalThis, "fetch") > 0) {
    mode = SERVICE_WORKER;
    return undefined;
  }
  if (exported !== undefined) {
    return "the default export has no fetch(request, env, ctx) method, and no fetch event listener was added";
  }
  return "the worker has no default export with a fetch(request, env, ctx) method and added no fetch event listener";
});

/** Dispatches `ev` on the global scope; true unless a listener called preventDefault(). */
function dispatchGlobal(ev) {
  try {
    event.EventTarget.prototype.dispatchEvent.call(globalThis, ev);
  } catch (error) {
    log(LOG_ERROR, `dispatching ${ev.type} failed: ${describeThrown(error)}`);
  }
  return !ev.defaultPrevented;
}

/** Reports an unhandled rejection as an `unhandledrejection` event; never kills the isolate. */
function onUnhandledRejection(promise, reason) {
  if (starting) {
    startupError ??= reason;
    return true;
  }
  const rejection = new event.PromiseRejectionEvent("unhandledrejection", {
    cancelable: true,
    promise,
    reason,
  });
  if (dispatchGlobal(rejection)) {
    reportException(`Uncaught (in promise) ${describeThrown(reason)}`);
  }
  return true;
}

/** Reports an exception thrown by a timer or microtask callback as an `error` event. */
function onReportedException(error) {
  const errorEvent = new event.ErrorEvent("error", {
    cancelable: true,
    message: error?.message ?? String(error),
    error,
  });
  if (dispatchGlobal(errorEvent)) {
    reportException(describeThrown(error));
  }
}

/** After evaluation: what the module threw at its top level, if anything. */
const takeStartupError = (function takeStartupError() {
  starting = false;
  return startupError === undefined ? undefined : describeThrown(startupError);
});

/**
 * Runs the request path's JavaScript (no ops that need a request) a few times while the
 * snapshot is made, so its bytecode is in the snapshot: otherwise every isolate parses and
 * compiles these functions lazily on its first requests, which a node with many tenants,
 * each with few requests per isolate, pays all the time.
 */
function warmUp() {
  const flat = ["host", "example.com", "accept", "*/*", "user-agent", "isola-warm-up"];
  const { Response } = websocketInternals;
  for (let i = 0; i < 3; i++) {
    const inner = new IncomingInnerRequest("GET", "http://example.com/warm-up?x=1", 0, null);
    // No request to take headers from while the snapshot is made.
    inner.headerList = headerPairs(flat);
    const request = requestExt.fromInnerRequest(inner, "immutable");
    // Taken and given back: the ring is left as it was.
    inFlight.set(0, request);
    inFlight.get(0);
    inFlight.delete(0);
    new ExecutionContext(0);
    const url = new URL(request.url);
    if (url.pathname !== "/warm-up" || url.searchParams.get("x") !== "1") break;
    request.headers.get("accept");
    const text = new Response("warm");
    if (text.status !== 200 || text[responseExt.serveFastStatusKey] === 0) break;
    responseExt.toInnerResponse(Response.json({ warm: request.method }));
    responseExt.toInnerResponse(
      new Response("warm", { status: 201, headers: { "content-type": "text/html", "x-warm": "1" } }),
    );
  }
}

warmUp();

core.setUnhandledPromiseRejectionHandler(onUnhandledRejection);
core.setReportExceptionCallback(onReportedException);

ObjectDefineProperty(globalThis, "FetchEvent", {
  value: FetchEvent,
  writable: true,
  configurable: true,
  enumerable: false,
});

export const fetchEventInternals = {
  contextualFetch,
  dispatch,
  finish,
  installGlobals,
  reportingTimer,
  setHandler,
  takeStartupError,
};
