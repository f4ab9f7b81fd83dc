// HTMLRewriter, as on Cloudflare Workers: `new HTMLRewriter().on(selector, handlers)
// .onDocument(handlers).transform(response)` returns a Response whose body is the original one
// rewritten as it streams. lol-html runs in Rust (bindings/src/html_rewriter); this file pumps the
// body through it chunk by chunk and runs the handlers it asks for, awaiting those that return a
// promise before the rewriting goes on.
import { core, primordials } from "ext:core/mod.js";
import {
  op_html_rewriter_attribute,
  op_html_rewriter_attributes,
  op_html_rewriter_check_selector,
  op_html_rewriter_doctype,
  op_html_rewriter_end,
  op_html_rewriter_has_attribute,
  op_html_rewriter_insert,
  op_html_rewriter_last_in_text_node,
  op_html_rewriter_name,
  op_html_rewriter_namespace,
  op_html_rewriter_new,
  op_html_rewriter_on_end_tag,
  op_html_rewriter_output,
  op_html_rewriter_remove,
  op_html_rewriter_remove_attribute,
  op_html_rewriter_removed,
  op_html_rewriter_resume,
  op_html_rewriter_set_attribute,
  op_html_rewriter_set_name,
  op_html_rewriter_set_text,
  op_html_rewriter_text,
  op_html_rewriter_write,
} from "ext:core/ops";

const {
  ArrayBufferIsView,
  ArrayPrototypePush,
  ArrayPrototypeSlice,
  ArrayPrototypeSymbolIterator,
  FunctionPrototypeCall,
  ObjectPrototypeIsPrototypeOf,
  PromisePrototypeCatch,
  SafeMap,
  String,
  TypeError,
  TypedArrayPrototypeGetBuffer,
  TypedArrayPrototypeGetByteLength,
  TypedArrayPrototypeGetByteOffset,
  Uint8Array,
} = primordials;

const { ReadableStream } = core.loadExtScript("ext:deno_web/06_streams.js");
const { TextEncoder } = core.loadExtScript("ext:deno_web/08_text_encoding.js");
const { Headers } = core.loadExtScript("ext:deno_fetch/20_headers.js");
const { Response } = core.loadExtScript("ext:deno_fetch/23_response.js");

// Handler kinds (low 4 bits of a call's code; bindings/src/html_rewriter/machine.rs).
const ELEMENT = 1;
const COMMENTS = 2;
const TEXT = 3;
const DOCTYPE = 4;
const DOC_COMMENTS = 5;
const DOC_TEXT = 6;
const DOC_END = 7;
const END_TAG = 8;
// Handler set flags.
const FLAG_FIRST = 1;
const FLAG_COMMENTS = 2;
const FLAG_TEXT = 4;
const FLAG_END = 8;
// Where content goes (units.rs).
const BEFORE = 0;
const AFTER = 1;
const PREPEND = 2;
const APPEND = 3;
const REPLACE = 4;
const SET_INNER = 5;

const encoder = new TextEncoder();

function isHtml(options) {
  return options !== undefined && options !== null && !!options.html;
}

function insert(run, token, place, content, options) {
  op_html_rewriter_insert(run.rewriter, token, place, String(content), isHtml(options));
}

// The run and token of a unit, for the subclasses (private fields are per class).
let runOf;
let tokenOf;

/** What every unit a handler gets has: its rewriter run, its token, `remove()`. */
class Unit {
  #run;
  #token;
  static {
    runOf = (unit) => unit.#run;
    tokenOf = (unit) => unit.#token;
  }
  constructor(run, token) {
    this.#run = run;
    this.#token = token;
  }
  remove() {
    op_html_rewriter_remove(this.#run.rewriter, this.#token, false);
    return this;
  }
}

/** A unit content can go before and after. */
class Inserting extends Unit {
  before(content, options) {
    insert(runOf(this), tokenOf(this), BEFORE, content, options);
    return this;
  }
  after(content, options) {
    insert(runOf(this), tokenOf(this), AFTER, content, options);
    return this;
  }
}

/** A unit of the document's content: it can also be replaced, and tells if it was removed. */
class Content extends Inserting {
  get removed() {
    return op_html_rewriter_removed(runOf(this).rewriter, tokenOf(this));
  }
  replace(content, options) {
    insert(runOf(this), tokenOf(this), REPLACE, content, options);
    return this;
  }
}

/** An element start tag matched by a selector. Valid only while its handler runs. */
class Element extends Content {
  get tagName() {
    return op_html_rewriter_name(runOf(this).rewriter, tokenOf(this));
  }
  set tagName(name) {
    op_html_rewriter_set_name(runOf(this).rewriter, tokenOf(this), String(name));
  }
  get namespaceURI() {
    return op_html_rewriter_namespace(runOf(this).rewriter, tokenOf(this));
  }
  /** An iterator of `[name, value]` pairs. */
  get attributes() {
    const pairs = op_html_rewriter_attributes(runOf(this).rewriter, tokenOf(this));
    return ArrayPrototypeSymbolIterator(pairs);
  }
  getAttribute(name) {
    return op_html_rewriter_attribute(runOf(this).rewriter, tokenOf(this), String(name));
  }
  hasAttribute(name) {
    return op_html_rewriter_has_attribute(runOf(this).rewriter, tokenOf(this), String(name));
  }
  setAttribute(name, value) {
    op_html_rewriter_set_attribute(runOf(this).rewriter, tokenOf(this), String(name), String(value));
    return this;
  }
  removeAttribute(name) {
    op_html_rewriter_remove_attribute(runOf(this).rewriter, tokenOf(this), String(name));
    return this;
  }
  prepend(content, options) {
    insert(runOf(this), tokenOf(this), PREPEND, content, options);
    return this;
  }
  append(content, options) {
    insert(runOf(this), tokenOf(this), APPEND, content, options);
    return this;
  }
  setInnerContent(content, options) {
    insert(runOf(this), tokenOf(this), SET_INNER, content, options);
    return this;
  }
  removeAndKeepContent() {
    op_html_rewriter_remove(runOf(this).rewriter, tokenOf(this), true);
    return this;
  }
  /** Runs `handler(endTag)` at this element's end tag (which may return a promise). */
  onEndTag(handler) {
    if (typeof handler !== "function") {
      throw new TypeError("onEndTag expects a function");
    }
    const id = runOf(this).addEndTagHandler(handler);
    op_html_rewriter_on_end_tag(runOf(this).rewriter, tokenOf(this), id);
  }
}

/** An element's end tag, given to an `onEndTag` handler. */
class EndTag extends Inserting {
  get name() {
    return op_html_rewriter_name(runOf(this).rewriter, tokenOf(this));
  }
  set name(name) {
    op_html_rewriter_set_name(runOf(this).rewriter, tokenOf(this), String(name));
  }
}

/** A chunk of a text node (a node may come in several chunks; see `lastInTextNode`). */
class Text extends Content {
  get text() {
    return op_html_rewriter_text(runOf(this).rewriter, tokenOf(this));
  }
  get lastInTextNode() {
    return op_html_rewriter_last_in_text_node(runOf(this).rewriter, tokenOf(this));
  }
}

/** An HTML comment. */
class Comment extends Content {
  get text() {
    return op_html_rewriter_text(runOf(this).rewriter, tokenOf(this));
  }
  set text(text) {
    op_html_rewriter_set_text(runOf(this).rewriter, tokenOf(this), String(text));
  }
}

/** The document's doctype. */
class Doctype extends Unit {
  #ids;
  #read() {
    if (this.#ids === undefined) {
      this.#ids = op_html_rewriter_doctype(runOf(this).rewriter, tokenOf(this));
    }
    return this.#ids;
  }
  get name() {
    return this.#read()[0];
  }
  get publicId() {
    return this.#read()[1];
  }
  get systemId() {
    return this.#read()[2];
  }
  get removed() {
    return op_html_rewriter_removed(runOf(this).rewriter, tokenOf(this));
  }
}

/** The end of the document, to append to. */
class DocumentEnd {
  #run;
  #token;
  constructor(run, token) {
    this.#run = run;
    this.#token = token;
  }
  append(content, options) {
    insert(this.#run, this.#token, APPEND, content, options);
    return this;
  }
}

function isThenable(value) {
  return value !== null && (typeof value === "object" || typeof value === "function") &&
    typeof value.then === "function";
}

/** One `transform()`: the Rust rewriter and the handlers it calls. */
class Run {
  constructor(rewriter, elements, documents) {
    this.rewriter = rewriter;
    this.elements = elements;
    this.documents = documents;
    /** Mirrors the Rust side's token: bumped for every handler call. */
    this.token = 0;
    this.endTagHandlers = new SafeMap();
    this.nextEndTagId = 0;
    this.finished = false;
  }

  addEndTagHandler(handler) {
    const id = this.nextEndTagId++;
    this.endTagHandlers.set(id, handler);
    return id;
  }

  /** Calls the handler that `code` names; returns what it returned. */
  invoke(code) {
    const kind = code & 15;
    const index = code >>> 4;
    const token = ++this.token;
    switch (kind) {
      case ELEMENT: {
        const set = this.elements[index];
        return FunctionPrototypeCall(set.element, set.receiver, new Element(this, token));
      }
      case COMMENTS: {
        const set = this.elements[index];
        return FunctionPrototypeCall(set.comments, set.receiver, new Comment(this, token));
      }
      case TEXT: {
        const set = this.elements[index];
        return FunctionPrototypeCall(set.text, set.receiver, new Text(this, token));
      }
      case DOCTYPE: {
        const set = this.documents[index];
        return FunctionPrototypeCall(set.doctype, set.receiver, new Doctype(this, token));
      }
      case DOC_COMMENTS: {
        const set = this.documents[index];
        return FunctionPrototypeCall(set.comments, set.receiver, new Comment(this, token));
      }
      case DOC_TEXT: {
        const set = this.documents[index];
        return FunctionPrototypeCall(set.text, set.receiver, new Text(this, token));
      }
      case DOC_END: {
        const set = this.documents[index];
        return FunctionPrototypeCall(set.end, set.receiver, new DocumentEnd(this, token));
      }
      case END_TAG: {
        const handler = this.endTagHandlers.get(index);
        this.endTagHandlers.delete(index);
        return handler(new EndTag(this, token));
      }
      default:
        throw new TypeError(`HTMLRewriter: unknown handler call ${code}`);
    }
  }

  /**
   * Runs handler calls from `code` on until the rewriter is idle again. Synchronous handlers
   * cost no promise; a handler's promise is awaited before the rewriting goes on.
   */
  async drive(code) {
    while (code !== 0) {
      try {
        const result = this.invoke(code);
        if (isThenable(result)) {
          await result;
        }
      } catch (error) {
        this.abort();
        throw error;
      }
      code = op_html_rewriter_resume(this.rewriter, true);
    }
  }

  /** Stops the rewriter (a handler failed, or the stream was cancelled). */
  abort() {
    if (this.finished) return;
    this.finished = true;
    try {
      op_html_rewriter_resume(this.rewriter, false);
    } catch {
      // The rewriter reports that it stopped; the caller has the reason already.
    }
  }
}

function toBytes(chunk) {
  if (ObjectPrototypeIsPrototypeOf(Uint8Array.prototype, chunk)) return chunk;
  if (typeof chunk === "string") return encoder.encode(chunk);
  if (ArrayBufferIsView(chunk)) {
    return new Uint8Array(
      TypedArrayPrototypeGetBuffer(chunk),
      TypedArrayPrototypeGetByteOffset(chunk),
      TypedArrayPrototypeGetByteLength(chunk),
    );
  }
  if (ObjectPrototypeIsPrototypeOf(ArrayBuffer.prototype, chunk)) return new Uint8Array(chunk);
  throw new TypeError("HTMLRewriter: the body's chunks must be bytes");
}

/** The charset label of a Content-Type, or utf-8. */
function charsetOf(contentType) {
  if (contentType === null) return "utf-8";
  const match = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType);
  return match === null ? "utf-8" : match[1];
}

function handlerSet(handlers, names) {
  if (handlers === null || typeof handlers !== "object" && typeof handlers !== "function") {
    throw new TypeError("HTMLRewriter: handlers must be an object");
  }
  const set = { receiver: handlers, flags: 0 };
  for (let i = 0; i < names.length; i++) {
    const [name, flag] = names[i];
    const handler = handlers[name];
    if (handler === undefined) continue;
    if (typeof handler !== "function") {
      throw new TypeError(`HTMLRewriter: the ${name} handler must be a function`);
    }
    set[name] = handler;
    set.flags |= flag;
  }
  return set;
}

const ELEMENT_HANDLERS = [["element", FLAG_FIRST], ["comments", FLAG_COMMENTS], [
  "text",
  FLAG_TEXT,
]];
const DOCUMENT_HANDLERS = [
  ["doctype", FLAG_FIRST],
  ["comments", FLAG_COMMENTS],
  ["text", FLAG_TEXT],
  ["end", FLAG_END],
];

/** Cloudflare's streaming HTML rewriter. */
class HTMLRewriter {
  #elements = [];
  #documents = [];

  /** Runs `handlers` (`element`, `comments`, `text`) on what `selector` matches. */
  on(selector, handlers) {
    selector = String(selector);
    op_html_rewriter_check_selector(selector);
    const set = handlerSet(handlers, ELEMENT_HANDLERS);
    set.selector = selector;
    ArrayPrototypePush(this.#elements, set);
    return this;
  }

  /** Runs `handlers` (`doctype`, `comments`, `text`, `end`) on the whole document. */
  onDocument(handlers) {
    ArrayPrototypePush(this.#documents, handlerSet(handlers, DOCUMENT_HANDLERS));
    return this;
  }

  /** A Response like `response` whose body is rewritten as it streams. */
  transform(response) {
    if (!ObjectPrototypeIsPrototypeOf(Response.prototype, response)) {
      throw new TypeError("HTMLRewriter.transform expects a Response");
    }
    const headers = new Headers(response.headers);
    headers.delete("content-length");
    const init = { status: response.status, statusText: response.statusText, headers };
    const body = response.body;
    if (body === null) {
      return new Response(null, init);
    }
    const elements = ArrayPrototypeSlice(this.#elements);
    const documents = ArrayPrototypeSlice(this.#documents);
    const plan = [];
    for (let i = 0; i < elements.length; i++) {
      ArrayPrototypePush(plan, [elements[i].selector, elements[i].flags]);
    }
    const documentFlags = [];
    for (let i = 0; i < documents.length; i++) {
      ArrayPrototypePush(documentFlags, documents[i].flags);
    }
    const rewriter = op_html_rewriter_new(plan, documentFlags, charsetOf(headers.get("content-type")));
    const run = new Run(rewriter, elements, documents);
    const reader = body.getReader();
    const stream = new ReadableStream({
      async pull(controller) {
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) {
              await run.drive(op_html_rewriter_end(rewriter));
              run.finished = true;
              const rest = op_html_rewriter_output(rewriter);
              if (rest.byteLength > 0) controller.enqueue(rest);
              controller.close();
              return;
            }
            await run.drive(op_html_rewriter_write(rewriter, toBytes(value)));
            const out = op_html_rewriter_output(rewriter);
            if (out.byteLength > 0) {
              controller.enqueue(out);
              return;
            }
          }
        } catch (error) {
          run.abort();
          PromisePrototypeCatch(reader.cancel(error), () => {});
          throw error;
        }
      },
      cancel(reason) {
        run.abort();
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
    return new Response(stream, init);
  }
}

export { HTMLRewriter };
