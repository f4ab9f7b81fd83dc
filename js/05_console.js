// `console.*` for workers: Deno's Console formats, Isola's log op records the line with the
// worker's name, so output lands in the operator's structured logs rather than raw stdout.
import { core, primordials } from "ext:core/mod.js";
import { op_isola_exception, op_isola_log } from "ext:core/ops";

const { ObjectDefineProperty } = primordials;
const consoleExt = core.loadExtScript("ext:deno_web/01_console.js");

/**
 * The request the running code works for: the id `dispatch` put into the async context, which
 * promise continuations and timers carry; 0 for the worker's own work.
 */
function currentRequest() {
  const context = core.getAsyncContext();
  return typeof context === "number" ? context : 0;
}

/** Logs one line, tagged with the request the running code works for. */
function log(level, message) {
  op_isola_log(level, message, currentRequest());
}

/**
 * Reports an uncaught exception (message and stack) of the running code's request: logged at
 * level error and put on the request's tail event, or a tail event of its own naming it.
 */
function reportException(text) {
  op_isola_exception(text, currentRequest());
}

/** Installs the workers' console (once, into the snapshot: each isolate gets its own copy). */
function install() {
  const console = new consoleExt.Console((message, level) => log(level, message));
  ObjectDefineProperty(globalThis, "console", {
    value: console,
    writable: true,
    configurable: true,
    enumerable: false,
  });
}

/** Formats any thrown value for a log line: an Error's stack, otherwise an inspection. */
function describeThrown(value) {
  if (value !== null && typeof value === "object" && typeof value.stack === "string") {
    return value.stack;
  }
  return `Uncaught ${consoleExt.inspect(value)}`;
}

/** Formats a value a handler returned in place of a Response, for the error log. */
function describeValue(value) {
  return consoleExt.inspect(value, { depth: 1, colors: false });
}

export const consoleInternals = {
  install,
  currentRequest,
  describeThrown,
  describeValue,
  log,
  reportException,
};
