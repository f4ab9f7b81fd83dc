// The conformance runner's worker: runs a batch of Web-platform test cases through this
// runtime's own globals and answers with one result per case. The same file runs under
// `isola dev` and `deno serve` (tests/conformance/main.rs posts identical batches to both).
//
// POST / with {"area": NAME, ...}: data areas carry {"cases": [...]} (the pinned test data,
// as the crates ship it); "idl" carries {"spec": NAME, "harness": {testharness, webidl2,
// idlharness}, "idl": {spec: text}}. The answer: {"results": [{"name", "pass", "message"}]}.
// Case names and checks follow the web-platform-tests files that use the same data
// (url/url-constructor, url-origin, url-setters, fetch/data-urls/processing and base64,
// mimesniff/mime-types/parsing, urlpattern/urlpatterntests, */idlharness).

class Failure extends Error {}

function show(value) {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "undefined") return "undefined";
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function equal(actual, expected, what) {
  if (!Object.is(actual, expected)) {
    throw new Failure(`${what}: expected ${show(expected)} but got ${show(actual)}`);
  }
}

function throwsType(f, what, type = TypeError) {
  try {
    f();
  } catch (e) {
    if (!(e instanceof type)) throw new Failure(`${what}: threw ${e} instead of a ${type.name}`);
    return;
  }
  throw new Failure(`${what}: did not throw`);
}

function throwsDom(name, f, what) {
  try {
    f();
  } catch (e) {
    if (!(e instanceof DOMException) || e.name !== name) {
      throw new Failure(`${what}: threw ${e} instead of a DOMException ${name}`);
    }
    return;
  }
  throw new Failure(`${what}: did not throw`);
}

function sameObject(actual, expected, what) {
  if (typeof expected !== "object" || expected === null) return equal(actual, expected, what);
  if (typeof actual !== "object" || actual === null) {
    throw new Failure(`${what}: expected an object but got ${show(actual)}`);
  }
  const keys = new Set([...Object.keys(expected), ...Object.keys(actual)]);
  for (const key of keys) sameObject(actual[key], expected[key], `${what}.${key}`);
}

/** Runs each case (a name and a possibly async check) one after the other. */
async function run(cases) {
  const results = [];
  for (const [name, check] of cases) {
    try {
      await check();
      results.push({ name, pass: true });
    } catch (e) {
      results.push({ name, pass: false, message: String(e?.message ?? e) });
    }
  }
  return results;
}

// url/urltestdata.json: the URL parser, as url-constructor and url-origin check it.
function urlCases(data) {
  const cases = [];
  for (const expected of data) {
    if (typeof expected === "string") continue;
    const base = expected.base ?? undefined;
    const where = base === undefined ? "without base" : `against <${base}>`;
    cases.push([`Parsing: <${expected.input}> ${where}`, () => {
      if (expected.failure) {
        throwsType(() => new URL(expected.input, base), "new URL");
        return;
      }
      const url = new URL(expected.input, base);
      for (const key of ["href", "protocol", "username", "password", "host", "hostname", "port", "pathname", "search"]) {
        equal(url[key], expected[key], key);
      }
      if ("searchParams" in expected) equal(url.searchParams.toString(), expected.searchParams, "searchParams");
      equal(url.hash, expected.hash, "hash");
    }]);
    if ("origin" in expected) {
      cases.push([`Origin parsing: <${expected.input}> ${where}`, () => {
        equal(new URL(expected.input, base).origin, expected.origin, "origin");
      }]);
    }
  }
  return cases;
}

// url/setters_tests.json: every URL setter.
function setterCases(data) {
  const cases = [];
  for (const [attribute, list] of Object.entries(data)) {
    if (attribute === "comment") continue;
    for (const test of list) {
      const comment = test.comment ? ` ${test.comment}` : "";
      cases.push([`URL: Setting <${test.href}>.${attribute} = '${test.new_value}'${comment}`, () => {
        const url = new URL(test.href);
        url[attribute] = test.new_value;
        for (const [key, value] of Object.entries(test.expected)) equal(url[key], value, key);
      }]);
    }
  }
  return cases;
}

async function fetchBytes(input) {
  const response = await fetch(input);
  return [response, new Uint8Array(await response.arrayBuffer())];
}

function sameBytes(actual, expected, what) {
  equal(actual.length, expected.length, `${what} length`);
  for (let i = 0; i < expected.length; i++) equal(actual[i], expected[i], `${what}[${i}]`);
}

async function rejectsType(promise, what) {
  try {
    await promise;
  } catch (e) {
    if (!(e instanceof TypeError)) throw new Failure(`${what}: rejected with ${e} instead of a TypeError`);
    return;
  }
  throw new Failure(`${what}: did not reject`);
}

// data-url's tests/data-urls.json: fetch() of data: URLs.
function dataUrlCases(data) {
  return data.map(([input, mime, body]) => [show(input), async () => {
    if (mime === null) return rejectsType(fetch(input), "fetch");
    const [response, bytes] = await fetchBytes(input);
    sameBytes(bytes, body, "body");
    equal(response.headers.get("content-type"), mime, "content-type");
  }]);
}

// data-url's tests/base64.json: forgiving base64, through atob() and data: URLs.
function base64Cases(data) {
  const cases = [];
  for (const [input, output] of data) {
    cases.push([`atob(${show(input)})`, () => {
      if (output === null) return throwsDom("InvalidCharacterError", () => atob(input), "atob");
      const decoded = atob(input);
      equal(decoded.length, output.length, "length");
      for (let i = 0; i < output.length; i++) equal(decoded.charCodeAt(i), output[i], `[${i}]`);
    }]);
    cases.push([`data: URL base64 handling: ${show(input)}`, async () => {
      const url = `data:;base64,${input}`;
      if (output === null) return rejectsType(fetch(url), "fetch");
      const [response, bytes] = await fetchBytes(url);
      equal(response.headers.get("content-type"), "text/plain;charset=US-ASCII", "content-type");
      sameBytes(bytes, output, "body");
    }]);
  }
  return cases;
}

// A header value must not start or end with whitespace, nor hold NUL, CR, LF or code points
// above U+00FF (fetch's header value rules).
function headerCompatibility(text) {
  if (/^[\u0009\u0020\u000A\u000D]+|[\u0009\u0020\u000A\u000D]+$/.test(text)) return "whitespace";
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff || c === 0 || c === 0x0a || c === 0x0d) return "invalid";
  }
  return "valid";
}

// data-url's tests/mime-types.json and generated-mime-types.json: MIME type parsing, as Blob,
// File, Request and Response expose it.
function mimeCases(data) {
  const cases = [];
  for (const entry of data) {
    if (typeof entry === "string") continue;
    const output = entry.output ?? "";
    cases.push([`${entry.input} (Blob/File)`, () => {
      equal(new Blob([], { type: entry.input }).type, output, "Blob");
      equal(new File([], "noname", { type: entry.input }).type, output, "File");
    }]);
    const compatibility = headerCompatibility(entry.input);
    if (compatibility === "whitespace") continue;
    cases.push([`${entry.input} (Request/Response)`, async () => {
      const headers = [["Content-Type", entry.input]];
      if (compatibility === "invalid") {
        throwsType(() => new Request("about:blank", { headers }), "Request");
        throwsType(() => new Response(null, { headers }), "Response");
        return;
      }
      equal((await new Request("about:blank", { headers }).blob()).type, output, "Request");
      equal((await new Response(null, { headers }).blob()).type, output, "Response");
    }]);
  }
  return cases;
}

const COMPONENTS = ["protocol", "username", "password", "hostname", "port", "pathname", "search", "hash"];
const EARLIER = {
  protocol: [],
  hostname: ["protocol"],
  port: ["protocol", "hostname"],
  username: [],
  password: [],
  pathname: ["protocol", "hostname", "port"],
  search: ["protocol", "hostname", "port", "pathname"],
  hash: ["protocol", "hostname", "port", "pathname", "search"],
};

// What a compiled component should read when the case does not say: the pattern's own
// value, a wildcard after an earlier given component, the base URL's, else "*".
function defaultComponent(entry, component) {
  const [first, second] = entry.pattern;
  if (entry.exactly_empty_components?.includes(component)) return "";
  if (typeof first === "object" && first[component]) return first[component];
  if (typeof first === "object" && EARLIER[component].some((c) => c in first)) return "*";
  let base = null;
  if (first?.baseURL) base = new URL(first.baseURL);
  else if (typeof second === "string") base = new URL(second);
  if (base && component !== "username" && component !== "password") {
    const value = base[component];
    if (component === "protocol") return value.slice(0, -1);
    if (component === "search" || component === "hash") return value.slice(1);
    return value;
  }
  return "*";
}

// urlpattern's src/testdata/urlpatterntestdata.json: construction, test() and exec().
function urlPatternCases(data) {
  return data.map((entry) => [`Pattern: ${JSON.stringify(entry.pattern)} Inputs: ${JSON.stringify(entry.inputs)}`, () => {
    if (entry.expected_obj === "error") {
      throwsType(() => new URLPattern(...entry.pattern), "URLPattern() constructor");
      return;
    }
    const pattern = new URLPattern(...entry.pattern);
    const compiled = entry.expected_obj ?? {};
    for (const component of COMPONENTS) {
      const expected = compiled[component] ?? defaultComponent(entry, component);
      equal(pattern[component], expected, `compiled pattern property '${component}'`);
    }
    if (entry.expected_match === "error") {
      throwsType(() => pattern.test(...entry.inputs), "test() result");
      throwsType(() => pattern.exec(...entry.inputs), "exec() result");
      return;
    }
    equal(pattern.test(...entry.inputs), !!entry.expected_match, "test() result");
    const result = pattern.exec(...entry.inputs);
    if (!entry.expected_match || typeof entry.expected_match !== "object") {
      equal(result, entry.expected_match, "exec() failed match result");
      return;
    }
    const inputs = entry.expected_match.inputs ?? entry.inputs;
    equal(result.inputs.length, inputs.length, "exec() result.inputs.length");
    result.inputs.forEach((input, i) => {
      if (typeof input === "string") return equal(input, inputs[i], `exec() result.inputs[${i}]`);
      for (const component of COMPONENTS) {
        equal(input[component], inputs[i][component], `exec() result.inputs[${i}][${component}]`);
      }
    });
    for (const component of COMPONENTS) {
      let expected = entry.expected_match[component];
      if (!expected) {
        expected = { input: "", groups: {} };
        if (!entry.exactly_empty_components?.includes(component)) expected.groups["0"] = "";
      }
      const groups = Object.fromEntries(
        Object.entries(expected.groups).map(([key, value]) => [key, value ?? undefined]),
      );
      sameObject(result[component], { ...expected, groups }, `exec() result for ${component}`);
    }
  }]);
}

// The IDL areas: which IDL files the spec's idlharness test reads (its own, then those it
// depends on) and which objects it checks, as the web-platform-tests' */idlharness.any.js do.
const IDL = {
  url: {
    deps: [],
    objects: { URL: ['new URL("http://example.org")'], URLSearchParams: ['new URLSearchParams("hi=there&thank=you")'] },
  },
  encoding: {
    deps: ["streams"],
    objects: {
      TextEncoder: ["new TextEncoder()"],
      TextDecoder: ["new TextDecoder()"],
      TextEncoderStream: ["new TextEncoderStream()"],
      TextDecoderStream: ["new TextDecoderStream()"],
    },
  },
  streams: {
    deps: ["dom"],
    async setup() {
      // Controllers and requests only come from live streams.
      new ReadableStream({ start(c) { self.readableStreamDefaultController = c; } });
      new ReadableStream({
        type: "bytes",
        start(c) { self.readableByteStreamController = c; },
        pull(c) { self.readableStreamByobRequest = c.byobRequest; },
      }).getReader({ mode: "byob" }).read(new Uint8Array(1));
      new WritableStream({ start(c) { self.writableStreamDefaultController = c; } });
      new TransformStream({ start(c) { self.transformStreamDefaultController = c; } });
      await new Promise((resolve) => setTimeout(resolve, 0));
    },
    objects: {
      ReadableStream: ["new ReadableStream()"],
      ReadableStreamDefaultReader: ["(new ReadableStream()).getReader()"],
      ReadableStreamBYOBReader: ['(new ReadableStream({ type: "bytes" })).getReader({ mode: "byob" })'],
      ReadableStreamDefaultController: ["self.readableStreamDefaultController"],
      ReadableByteStreamController: ["self.readableByteStreamController"],
      ReadableStreamBYOBRequest: ["self.readableStreamByobRequest"],
      WritableStream: ["new WritableStream()"],
      WritableStreamDefaultWriter: ["(new WritableStream()).getWriter()"],
      WritableStreamDefaultController: ["self.writableStreamDefaultController"],
      TransformStream: ["new TransformStream()"],
      TransformStreamDefaultController: ["self.transformStreamDefaultController"],
      ByteLengthQueuingStrategy: ["new ByteLengthQueuingStrategy({ highWaterMark: 5 })"],
      CountQueuingStrategy: ["new CountQueuingStrategy({ highWaterMark: 5 })"],
    },
  },
  fetch: {
    deps: ["referrer-policy", "html", "dom"],
    objects: { Headers: ["new Headers()"], Request: ["new Request('about:blank')"], Response: ["new Response()"] },
    global: true,
  },
  FileAPI: {
    deps: ["dom", "html", "url"],
    objects: {
      Blob: ['new Blob(["TEST"])'],
      File: ['new File(["myFileBits"], "myFileName")'],
      FileReader: ["new FileReader()"],
    },
  },
  dom: {
    deps: ["html"],
    setup() {
      self.abortController = new AbortController();
      self.abortSignal = self.abortController.signal;
    },
    objects: {
      EventTarget: ["new EventTarget()"],
      Event: ['new Event("foo")'],
      CustomEvent: ['new CustomEvent("foo")'],
      AbortController: ["abortController"],
      AbortSignal: ["abortSignal"],
    },
  },
  webcrypto: {
    deps: ["html", "dom"],
    objects: { Crypto: ["crypto"], SubtleCrypto: ["crypto.subtle"] },
  },
  urlpattern: {
    deps: [],
    objects: { URLPattern: ["new URLPattern()"] },
  },
  compression: {
    deps: ["streams"],
    objects: {
      CompressionStream: ['new CompressionStream("deflate")'],
      DecompressionStream: ['new DecompressionStream("deflate")'],
    },
  },
};

/** The IDL files each IDL area reads (the runner sends exactly these). */
export const idlFiles = Object.fromEntries(Object.entries(IDL).map(([spec, { deps }]) => [spec, [spec, ...deps]]));

// Loads a fresh testharness.js + webidl2.js + idlharness.js (a new harness per batch: the
// harness keeps its tests in module state) and runs the spec's idl_test, collecting every
// subtest's result.
async function idlCases(spec, harness, idl) {
  const area = IDL[spec];
  if (!area) throw new Error(`unknown IDL area ${spec}`);
  const results = [];
  const finished = new Promise((resolve) => {
    globalThis.fetch_spec = (name) => {
      if (!(name in idl)) return Promise.reject(new Error(`no IDL text for ${name}`));
      return Promise.resolve({ spec: name, idl: idl[name] });
    };
    new Function(`${harness.testharness}\n${harness.webidl2}\n${harness.idlharness}`)();
    const statuses = ["PASS", "FAIL", "TIMEOUT", "NOTRUN", "PRECONDITION_FAILED"];
    globalThis.add_result_callback((test) => {
      results.push({ name: test.name, pass: test.status === 0, message: test.status === 0 ? undefined : `${statuses[test.status]}: ${test.message}` });
    });
    globalThis.add_completion_callback((_, status) => resolve(status));
  });
  globalThis.idl_test([spec], area.deps, async (idlArray) => {
    await area.setup?.();
    idlArray.add_objects(area.objects);
    if (area.global) {
      if ("Window" in self && self instanceof Window) idlArray.add_objects({ Window: ["self"] });
      else if ("WorkerGlobalScope" in self && self instanceof WorkerGlobalScope) idlArray.add_objects({ WorkerGlobalScope: ["self"] });
    }
  });
  // A service worker's harness waits for "install" before it completes (testharness.js).
  if ("ServiceWorkerGlobalScope" in self && self instanceof ServiceWorkerGlobalScope) {
    self.dispatchEvent(new Event("install"));
  }
  globalThis.done?.();
  const status = await finished;
  if (status.status !== 0) {
    results.push({ name: "harness status", pass: false, message: `${status.status}: ${status.message}` });
  }
  return results;
}

async function answer(body) {
  switch (body.area) {
    case "url": return run(urlCases(body.cases));
    case "url-setters": return run(setterCases(body.cases));
    case "data-urls": return run(dataUrlCases(body.cases));
    case "base64": return run(base64Cases(body.cases));
    case "mime-types": return run(mimeCases(body.cases));
    case "urlpattern": return run(urlPatternCases(body.cases));
    case "idl": return idlCases(body.spec, body.harness, body.idl);
    default: throw new Error(`unknown area ${body.area}`);
  }
}

export default {
  async fetch(request) {
    if (request.method !== "POST") return Response.json({ idl: idlFiles });
    try {
      return Response.json({ results: await answer(await request.json()) });
    } catch (e) {
      return Response.json({ error: String(e?.stack ?? e) }, { status: 500 });
    }
  },
};
