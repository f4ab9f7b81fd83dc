// The Cache API as on Workers: `caches.default`, `caches.open(name)`, `Cache.match/put/delete`
// (+ `add`/`addAll`), `CacheStorage.has/keys/delete`. Storage, expiry, `Vary`, `Range` and
// the rules on what may be stored live in Rust (the node's response cache, one space per
// deployment and cache name); this file checks arguments and moves bodies.
import { core, primordials } from "ext:core/mod.js";
import {
  op_isola_cache_delete,
  op_isola_cache_drop,
  op_isola_cache_has,
  op_isola_cache_match,
  op_isola_cache_names,
  op_isola_cache_open,
  op_isola_cache_put_bytes,
  op_isola_cache_put_stream,
  op_isola_cache_put_text,
} from "ext:core/ops";

const {
  ArrayPrototypeIncludes,
  ArrayPrototypeMap,
  ObjectPrototypeIsPrototypeOf,
  PromiseAll,
  SafeArrayIterator,
  StringPrototypeSplit,
  StringPrototypeTrim,
  Symbol,
  TypeError,
  TypedArrayPrototypeGetSymbolToStringTag,
} = primordials;

const requestExt = core.loadExtScript("ext:deno_fetch/23_request.js");
const responseExt = core.loadExtScript("ext:deno_fetch/23_response.js");
const streams = core.loadExtScript("ext:deno_web/06_streams.js");
const { URL } = core.loadExtScript("ext:deno_web/00_url.js");

const EMPTY = new Uint8Array(0);
const NULL_BODY_STATUS = [101, 103, 204, 205, 304];
const illegal = Symbol("illegal constructor");

/** `key` as a Request (a string or URL is a GET of it). */
function toRequest(key) {
  if (ObjectPrototypeIsPrototypeOf(requestExt.RequestPrototype, key)) return key;
  return new requestExt.Request(key);
}

/** The cache key of a request: its URL without the fragment. */
function keyUrl(request) {
  const url = new URL(request.url);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`Cache: only http and https URLs can be cached, not ${url.protocol}`);
  }
  url.hash = "";
  return url.href;
}

function varyStar(headers) {
  const vary = headers.get("vary");
  if (vary === null) return false;
  for (const name of new SafeArrayIterator(StringPrototypeSplit(vary, ","))) {
    if (StringPrototypeTrim(name) === "*") return true;
  }
  return false;
}

function isBytes(value) {
  return TypedArrayPrototypeGetSymbolToStringTag(value) === "Uint8Array";
}

/** One named cache (or the default one, name `null`) of this deployment. */
class Cache {
  #name;

  constructor(key, name) {
    if (key !== illegal) throw new TypeError("Illegal constructor");
    this.#name = name;
  }

  /**
   * The stored response for `key`, or undefined. Only GET requests match unless
   * `options.ignoreMethod`; the request's `Range` gets 206 and its preconditions 304.
   */
  async match(key, options = undefined) {
    const request = toRequest(key);
    if (request.method !== "GET" && !options?.ignoreMethod) return undefined;
    const url = keyUrl(request);
    const found = op_isola_cache_match(
      this.#name,
      url,
      requestExt.toInnerRequest(request).headerList,
    );
    if (found === null) return undefined;
    const body = ArrayPrototypeIncludes(NULL_BODY_STATUS, found.status) ? null : found.body;
    return new responseExt.Response(body, { status: found.status, headers: found.headers });
  }

  /**
   * Stores `response` for GET `key`. Throws a TypeError (as Workers does) for another method,
   * a 206 response, `Vary: *` or a used body; a `private`/`no-store`/`Set-Cookie` response
   * or one without a lifetime is silently not stored.
   */
  async put(key, response) {
    const request = toRequest(key);
    if (request.method !== "GET") {
      throw new TypeError("Cache.put() only accepts GET requests");
    }
    if (!ObjectPrototypeIsPrototypeOf(responseExt.ResponsePrototype, response)) {
      throw new TypeError("Cache.put() needs a Response");
    }
    if (response.status === 206) {
      throw new TypeError("Cache.put() cannot store a 206 Partial Content response");
    }
    if (varyStar(response.headers)) {
      throw new TypeError("Cache.put() cannot store a response with Vary: *");
    }
    if (response.bodyUsed) {
      throw new TypeError("Cache.put(): the response body was already used");
    }
    const url = keyUrl(request);
    const inner = responseExt.toInnerResponse(response);
    const head = {
      cache: this.#name,
      url,
      request: requestExt.toInnerRequest(request).headerList,
      status: inner.status,
      headers: inner.headerList,
      length: null,
    };
    if (inner.body === null) {
      op_isola_cache_put_bytes(head, EMPTY);
      return undefined;
    }
    if (inner.body.unusable()) {
      throw new TypeError("Cache.put(): the response body was already used");
    }
    const source = inner.body.streamOrStatic;
    if (!ObjectPrototypeIsPrototypeOf(streams.ReadableStreamPrototype, source)) {
      if (typeof source.body === "string") {
        source.consumed = true;
        op_isola_cache_put_text(head, source.body);
        return undefined;
      }
      if (isBytes(source.body)) {
        source.consumed = true;
        op_isola_cache_put_bytes(head, source.body);
        return undefined;
      }
    }
    head.length = inner.body.length;
    const rid = streams.resourceForReadableStream(inner.body.stream, inner.body.length);
    await op_isola_cache_put_stream(head, rid);
    return undefined;
  }

  /** Removes what is stored for `key`; resolves to whether something was. */
  async delete(key, options = undefined) {
    const request = toRequest(key);
    if (request.method !== "GET" && !options?.ignoreMethod) return false;
    return op_isola_cache_delete(this.#name, keyUrl(request));
  }

  /** Fetches `key` and stores the response; a response that is not ok is a TypeError. */
  async add(key) {
    const request = toRequest(key);
    const response = await globalThis.fetch(request);
    if (!response.ok) {
      throw new TypeError(`Cache.add(): the response had status ${response.status}`);
    }
    await this.put(request, response);
  }

  /** `add` for each of `keys`. */
  async addAll(keys) {
    await PromiseAll(ArrayPrototypeMap(keys, (key) => this.add(key)));
  }
}

/** `caches`: the default cache and named ones, all of this deployment only. */
class CacheStorage {
  #default = new Cache(illegal, null);

  constructor(key) {
    if (key !== illegal) throw new TypeError("Illegal constructor");
  }

  /** The deployment's default cache. */
  get default() {
    return this.#default;
  }

  /** The cache `name` (made if new). */
  async open(name) {
    name = `${name}`;
    op_isola_cache_open(name);
    return new Cache(illegal, name);
  }

  /** Whether cache `name` was opened. */
  async has(name) {
    return op_isola_cache_has(`${name}`);
  }

  /** The names of the opened caches. */
  async keys() {
    return op_isola_cache_names();
  }

  /** Removes cache `name` and its entries; resolves to whether it existed. */
  async delete(name) {
    return op_isola_cache_drop(`${name}`);
  }
}

const caches = new CacheStorage(illegal);

export const cacheInternals = { Cache, CacheStorage, caches };
