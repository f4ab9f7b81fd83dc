// Maps error classes raised by Rust ops to the JavaScript errors the Web platform specifies.
// An op error whose class has no builder would reach JavaScript as `undefined`.
import { core } from "ext:core/mod.js";

const DOM_EXCEPTION_NAMES = [
  "DataError",
  "IndexSizeError",
  "InvalidCharacterError",
  "InvalidStateError",
  "NotSupportedError",
  "OperationError",
  "QuotaExceededError",
  "SyntaxError",
  "TypeMismatchError",
  "AbortError",
  "NotFoundError",
  "NetworkError",
];

const IO_ERROR_CLASSES = [
  "InvalidData",
  "NotFound",
  "PermissionDenied",
  "ConnectionRefused",
  "ConnectionReset",
  "ConnectionAborted",
  "NotConnected",
  "AddrInUse",
  "AddrNotAvailable",
  "BrokenPipe",
  "AlreadyExists",
  "TimedOut",
  "UnexpectedEof",
  "WriteZero",
  "Http",
  "Busy",
];

/** Registers builders for DOMException names and I/O error classes. */
export function installErrorBuilders(DOMException) {
  for (const name of DOM_EXCEPTION_NAMES) {
    core.registerErrorBuilder(
      `DOMException${name}`,
      (msg) => new DOMException(msg, name),
    );
  }
  for (const name of IO_ERROR_CLASSES) {
    core.registerErrorClass(name, TypeError);
  }
}
