// Date.now(), new Date() and performance.now() that advance only between event-loop turns
// (Rust sets the turn's time): synchronous code cannot time itself, as on Workers.
import { primordials } from "ext:core/mod.js";
import { op_isola_now } from "ext:core/ops";

const {
  FunctionPrototypeCall,
  ObjectDefineProperty,
  ObjectGetOwnPropertyDescriptor,
  ReflectConstruct,
} = primordials;

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

/**
 * `Intl.DateTimeFormat`'s `format` and `formatToParts` without a date format the turn's time
 * too (V8 would read the real clock).
 */
function coarsenDateTimeFormat() {
  const proto = globalThis.Intl.DateTimeFormat.prototype;
  const formatGetter = ObjectGetOwnPropertyDescriptor(proto, "format").get;
  ObjectDefineProperty(proto, "format", {
    get() {
      const format = FunctionPrototypeCall(formatGetter, this);
      return (date) => format(date === undefined ? op_isola_now() : date);
    },
    configurable: true,
    enumerable: false,
  });
  const nativeFormatToParts = proto.formatToParts;
  ObjectDefineProperty(proto, "formatToParts", {
    value: function formatToParts(date) {
      return FunctionPrototypeCall(
        nativeFormatToParts,
        this,
        date === undefined ? op_isola_now() : date,
      );
    },
    writable: true,
    configurable: true,
    enumerable: false,
  });
}

/** Installs the clock; `performance` comes from deno_web. */
export function installClock(Performance) {
  coarsenDateTimeFormat();
  ObjectDefineProperty(globalThis, "Date", {
    value: Date,
    writable: true,
    configurable: true,
    enumerable: false,
  });
  // As workerd: the time origin is 0, so `performance.now()` is `Date.now()` (the turn's
  // time). A per-isolate origin would tell a worker when its isolate (or spare) was made, and
  // would carry sub-millisecond digits that the turn clock hides.
  ObjectDefineProperty(Performance.prototype, "timeOrigin", {
    get() {
      return 0;
    },
    configurable: true,
    enumerable: true,
  });
  ObjectDefineProperty(Performance.prototype, "now", {
    value: function now() {
      return op_isola_now();
    },
    writable: true,
    configurable: true,
    enumerable: true,
  });
}
