// Isola's bootstrap: loads Deno's Web extension scripts and installs the globals a worker
// expects (the Workers/WinterTC set). Evaluated once, at build time, into the startup snapshot.
import { core, internals, primordials } from "ext:core/mod.js";
import { installErrorBuilders } from "ext:isola_bootstrap/01_errors.js";
import { fetchEventInternals } from "ext:isola_http/10_fetch_event.js";
import { consoleInternals } from "ext:isola_console/05_console.js";
import { cacheInternals } from "ext:isola_cache/20_cache.js";
import { installClock } from "ext:isola_clock/03_clock.js";
import { HTMLRewriter } from "ext:isola_html_rewriter/40_html_rewriter.js";
import { websocketInternals } from "ext:isola_websocket/50_websocket.js";

const {
  ObjectDefineProperties,
  ObjectDefineProperty,
  ObjectPrototypeIsPrototypeOf,
  ObjectSetPrototypeOf,
  Promise,
  PromiseReject,
  SymbolFor,
  SymbolToStringTag,
  TypeError,
} = primordials;

// deno_fetch asks for Deno's telemetry hooks when it loads; Isola has none.
internals.__telemetry = {
  TRACING_ENABLED: false,
  PROPAGATORS: [],
  DID_NOT_ENTER: undefined,
  builtinTracer() {},
  ContextManager: { active() {} },
  enterSpan() {},
  exitSpan() {},
};
internals.__telemetryUtil = {
  updateSpanFromRequest() {},
  updateSpanFromClientResponse() {},
  updateSpanFromError() {},
};

const load = (specifier) => core.loadExtScript(specifier);
const webidl = load("ext:deno_webidl/00_webidl.js");
const url = load("ext:deno_web/00_url.js");
const urlPattern = load("ext:deno_web/01_urlpattern.js");
const domException = load("ext:deno_web/01_dom_exception.js");
const event = load("ext:deno_web/02_event.js");
const globalInterfaces = load("ext:deno_web/04_global_interfaces.js");
const timers = load("ext:deno_web/02_timers.js");
const abortSignal = load("ext:deno_web/03_abort_signal.js");
const base64 = load("ext:deno_web/05_base64.js");
const streams = load("ext:deno_web/06_streams.js");
const encoding = load("ext:deno_web/08_text_encoding.js");
const file = load("ext:deno_web/09_file.js");
const fileReader = load("ext:deno_web/10_filereader.js");
const messagePort = load("ext:deno_web/13_message_port.js");
const compression = load("ext:deno_web/14_compression.js");
const performance = load("ext:deno_web/15_performance.js");
const headers = load("ext:deno_fetch/20_headers.js");
const formData = load("ext:deno_fetch/21_formdata.js");
const request = load("ext:deno_fetch/23_request.js");
const response = load("ext:deno_fetch/23_response.js");
const fetch = load("ext:deno_fetch/26_fetch.js");
const crypto = load("ext:deno_crypto/00_crypto.js");

installErrorBuilders(domException.DOMException);
installClock(performance.Performance);

const nonEnumerable = (value) => core.propNonEnumerable(value);
const writable = (value) => core.propWritable(value);

/** The `navigator` global: what a worker can learn about the runtime it runs on. */
class Navigator {
  get userAgent() {
    return "Isola";
  }
  get hardwareConcurrency() {
    return 1;
  }
  get language() {
    return "en-US";
  }
  get languages() {
    return ["en-US"];
  }
}
const navigator = new Navigator();

/**
 * The `scheduler` global (Workers' subset of the Prioritized Task Scheduling API):
 * `wait(ms, { signal })` resolves after `ms` through `setTimeout`, so the request's clock
 * rules and async context hold for it as for a timer.
 */
class Scheduler {
  wait(delay, options = undefined) {
    const signal = options?.signal;
    if (signal !== undefined && signal !== null) {
      if (!ObjectPrototypeIsPrototypeOf(abortSignal.AbortSignal.prototype, signal)) {
        throw new TypeError("scheduler.wait: options.signal must be an AbortSignal");
      }
      if (signal.aborted) {
        return PromiseReject(signal.reason);
      }
    }
    return new Promise((resolve, reject) => {
      const { clearTimeout, setTimeout } = timers;
      const onAbort = () => {
        clearTimeout(id);
        reject(signal.reason);
      };
      const id = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, delay);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}
const scheduler = new Scheduler();

ObjectDefineProperties(globalThis, {
  // URL and patterns
  URL: nonEnumerable(url.URL),
  URLSearchParams: nonEnumerable(url.URLSearchParams),
  URLPattern: nonEnumerable(urlPattern.URLPattern),
  // DOM events, errors and abort
  DOMException: nonEnumerable(domException.DOMException),
  Event: nonEnumerable(event.Event),
  EventTarget: nonEnumerable(event.EventTarget),
  CustomEvent: nonEnumerable(event.CustomEvent),
  ErrorEvent: nonEnumerable(event.ErrorEvent),
  MessageEvent: nonEnumerable(event.MessageEvent),
  PromiseRejectionEvent: nonEnumerable(event.PromiseRejectionEvent),
  reportError: writable(event.reportError),
  AbortController: nonEnumerable(abortSignal.AbortController),
  AbortSignal: nonEnumerable(abortSignal.AbortSignal),
  // timers, encoding, cloning
  setTimeout: writable(fetchEventInternals.reportingTimer(timers.setTimeout)),
  setInterval: writable(fetchEventInternals.reportingTimer(timers.setInterval)),
  clearTimeout: writable(timers.clearTimeout),
  clearInterval: writable(timers.clearInterval),
  atob: writable(base64.atob),
  btoa: writable(base64.btoa),
  structuredClone: writable(messagePort.structuredClone),
  MessageChannel: nonEnumerable(messagePort.MessageChannel),
  MessagePort: nonEnumerable(messagePort.MessagePort),
  TextEncoder: nonEnumerable(encoding.TextEncoder),
  TextDecoder: nonEnumerable(encoding.TextDecoder),
  TextEncoderStream: nonEnumerable(encoding.TextEncoderStream),
  TextDecoderStream: nonEnumerable(encoding.TextDecoderStream),
  // streams
  ReadableStream: nonEnumerable(streams.ReadableStream),
  ReadableStreamDefaultReader: nonEnumerable(streams.ReadableStreamDefaultReader),
  ReadableStreamBYOBReader: nonEnumerable(streams.ReadableStreamBYOBReader),
  ReadableStreamBYOBRequest: nonEnumerable(streams.ReadableStreamBYOBRequest),
  ReadableByteStreamController: nonEnumerable(streams.ReadableByteStreamController),
  ReadableStreamDefaultController: nonEnumerable(streams.ReadableStreamDefaultController),
  WritableStream: nonEnumerable(streams.WritableStream),
  WritableStreamDefaultWriter: nonEnumerable(streams.WritableStreamDefaultWriter),
  WritableStreamDefaultController: nonEnumerable(streams.WritableStreamDefaultController),
  TransformStream: nonEnumerable(streams.TransformStream),
  TransformStreamDefaultController: nonEnumerable(streams.TransformStreamDefaultController),
  ByteLengthQueuingStrategy: nonEnumerable(streams.ByteLengthQueuingStrategy),
  CountQueuingStrategy: nonEnumerable(streams.CountQueuingStrategy),
  CompressionStream: nonEnumerable(compression.CompressionStream),
  DecompressionStream: nonEnumerable(compression.DecompressionStream),
  // files and forms
  Blob: nonEnumerable(file.Blob),
  File: nonEnumerable(file.File),
  FileReader: nonEnumerable(fileReader.FileReader),
  ProgressEvent: nonEnumerable(event.ProgressEvent),
  FormData: nonEnumerable(formData.FormData),
  // fetch
  Headers: nonEnumerable(headers.Headers),
  Request: nonEnumerable(request.Request),
  Response: nonEnumerable(websocketInternals.Response),
  // WebSockets a worker accepts or opens (bindings/src/websocket/)
  WebSocket: nonEnumerable(websocketInternals.WebSocket),
  WebSocketPair: nonEnumerable(websocketInternals.WebSocketPair),
  CloseEvent: nonEnumerable(websocketInternals.CloseEvent),
  // the Cache API (bindings/src/cache.rs)
  Cache: nonEnumerable(cacheInternals.Cache),
  CacheStorage: nonEnumerable(cacheInternals.CacheStorage),
  caches: core.propGetterOnly(() => cacheInternals.caches),
  // The outbound guard's header naming the calling request (bindings/src/outbound/guard.rs).
  fetch: writable(fetchEventInternals.contextualFetch(fetch.fetch, request.Request, "isola-context")),
  // crypto (a getter: the cppgc-backed Crypto object cannot live in the snapshot)
  Crypto: nonEnumerable(crypto.Crypto),
  CryptoKey: nonEnumerable(crypto.CryptoKey),
  SubtleCrypto: nonEnumerable(crypto.SubtleCrypto),
  crypto: core.propGetterOnly(() => crypto.crypto),
  // performance and navigator
  Performance: nonEnumerable(performance.Performance),
  performance: writable(performance.performance),
  Navigator: nonEnumerable(Navigator),
  navigator: core.propGetterOnly(() => navigator),
  Scheduler: nonEnumerable(Scheduler),
  scheduler: writable(scheduler),
  // A worker's scope has no origin of its own: opaque, serialized "null" (as workerd).
  origin: core.propGetterOnly(() => "null"),
  // Cloudflare's streaming HTML rewriter (bindings/src/html_rewriter).
  HTMLRewriter: nonEnumerable(HTMLRewriter),
  self: core.propGetterOnly(() => globalThis),
});

// The global scope is a ServiceWorkerGlobalScope (as workerd's), hence a WorkerGlobalScope and
// an EventTarget: `addEventListener("fetch", ...)` and `unhandledrejection` work on it, with or
// without `this`, as on Workers; Web IDL's exposure sets (`[Exposed=ServiceWorker]`) and
// test harnesses recognise it by its class.
class ServiceWorkerGlobalScope extends globalInterfaces.WorkerGlobalScope {
  constructor() {
    throw new TypeError("Illegal constructor");
  }

  get [SymbolToStringTag]() {
    return "ServiceWorkerGlobalScope";
  }
}
ObjectSetPrototypeOf(globalThis, ServiceWorkerGlobalScope.prototype);
ObjectDefineProperty(globalThis, webidl.brand, {
  value: webidl.brand,
  enumerable: false,
  configurable: true,
  writable: true,
});
ObjectDefineProperty(globalThis, "WorkerGlobalScope", nonEnumerable(globalInterfaces.WorkerGlobalScope));
ObjectDefineProperty(globalThis, "ServiceWorkerGlobalScope", nonEnumerable(ServiceWorkerGlobalScope));
event.setEventTargetData(globalThis);
event.saveGlobalThisReference(globalThis);
core.setWasmStreamingCallback(fetch.handleWasmStreaming);

// The console is made here, into the snapshot: each isolate restores its own copy, and none
// builds a `Console` (and compiles its constructor) as it starts.
consoleInternals.install();

/**
 * Per-isolate start: what cannot be frozen into the snapshot (clocks, cppgc objects, vars).
 * Rust takes this object once, before any user code runs, and the global is deleted.
 */
const isolaInternal = {
  init() {
    performance.setTimeOrigin();
    // User code gets the Web platform, not the runtime's internals. (deno_core binds the ops
    // onto `Deno.core` when an isolate is restored, so this happens per isolate.)
    delete globalThis.Deno;
    delete globalThis.__bootstrap;
  },
  ...fetchEventInternals,
};
ObjectDefineProperty(globalThis, SymbolFor("isola.internal"), {
  value: isolaInternal,
  configurable: true,
  enumerable: false,
  writable: false,
});
