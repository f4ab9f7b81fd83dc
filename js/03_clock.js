// Date.now(), new Date() and performance.now() that advance only between event-loop turns
// (Rust sets the turn's time): synchronous code cannot time itself, as on Workers.
import { primordials } from "ext:core/mod.js";
import { op_isola_now } from "ext:core/ops";

const { ObjectDefineProperty, ReflectConstruct } = primordials;

const NativeDate = globalThis.Date;

/** The global `Date`: as the native one, but "now" is the turn's time. */
function Date(...args) {
  if (new.target === undefined) {
    return new NativeDate(op_isola_now()).toString();
  }
  return args.length === 0
    ? ReflectConstruct(NativeDate, [op_isola_now()], new.target)
    : ReflectConstruct(NativeDate, args, new.target);
}
Date.prototype = NativeDate.prototype;
Date.now = function now() {
  return op_isola_now();
};
Date.parse = NativeDate.parse;
Date.UTC = NativeDate.UTC;
ObjectDefineProperty(NativeDate.prototype, "constructor", {
  value: Date,
  writable: true,
  configurable: true,
  enumerable: false,
});

/** Installs the clock; `performance` comes from deno_web. */
export function installClock(Performance, performance) {
  ObjectDefineProperty(globalThis, "Date", {
    value: Date,
    writable: true,
    configurable: true,
    enumerable: false,
  });
  ObjectDefineProperty(Performance.prototype, "now", {
    value: function now() {
      return op_isola_now() - performance.timeOrigin;
    },
    writable: true,
    configurable: true,
    enumerable: true,
  });
}
