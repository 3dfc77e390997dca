'use strict';
// Errors: one class per protocol error code (PROTOCOL.md "Errors"), plus the client's own (timeouts, lost
// connections). Every class derives from KairosError, so one `catch (e) { if (e instanceof KairosError) ... }`
// covers everything this package throws on purpose.

/** The protocol's error codes. */
const ErrorCode = Object.freeze({
  MALFORMED_FRAME: 1,
  FRAME_TOO_LARGE: 2,
  UNSUPPORTED_VERSION: 3,
  UNKNOWN_OPCODE: 4,
  BAD_REQUEST: 5,
  LIMIT_EXCEEDED: 6,
  UNKNOWN_MODEL: 7,
  UNKNOWN_USER: 8,
  UNKNOWN_ITEM: 9,
  OVERLOADED: 10,
  SHUTTING_DOWN: 11,
  INTERNAL_ERROR: 12,
  FRAME_TIMEOUT: 13,
});

const CODE_NAMES = Object.freeze(Object.fromEntries(Object.entries(ErrorCode).map(([k, v]) => [v, k])));

// Codes after which the server closes the connection when they answer a request. OVERLOADED closes it only as a
// refusal at accept (request id 0); answering one request (too many scans waiting) it leaves the connection open.
const CLOSES_CONNECTION = new Set([1, 2, 3, 13]);

/** Base of every error this package throws; `code` is the protocol code, or null for client-side errors. */
class KairosError extends Error {
  constructor(message = '', code = null, requestId = null) {
    const name = code != null ? (CODE_NAMES[code] || `code ${code}`) : null;
    super(name ? (message ? `${name}: ${message}` : name) : message);
    this.name = new.target.name;
    this.code = code != null ? code : (new.target.CODE != null ? new.target.CODE : null);
    this.serverMessage = message;
    this.requestId = requestId;
  }

  /** The code's protocol name (`UNKNOWN_MODEL`), or null. */
  get codeName() {
    return this.code != null ? (CODE_NAMES[this.code] || null) : null;
  }
}

/** The two sides do not understand each other's bytes: a framing error the server reported, or an answer this
 * client cannot decode (code null). */
class ProtocolError extends KairosError {}
class MalformedFrame extends ProtocolError {}
MalformedFrame.CODE = 1;
class FrameTooLarge extends ProtocolError {}
FrameTooLarge.CODE = 2;
class UnsupportedVersion extends ProtocolError {}
UnsupportedVersion.CODE = 3;
class UnknownOpcode extends ProtocolError {}
UnknownOpcode.CODE = 4;
class FrameTimeout extends ProtocolError {}
FrameTimeout.CODE = 13;
/** The request payload does not decode or has out-of-range fields. */
class BadRequest extends KairosError {}
BadRequest.CODE = 5;
/** A documented limit was exceeded: candidates, k, events, string length. */
class LimitExceeded extends KairosError {}
LimitExceeded.CODE = 6;
class UnknownModel extends KairosError {}
UnknownModel.CODE = 7;
class UnknownUser extends KairosError {}
UnknownUser.CODE = 8;
class UnknownItem extends KairosError {}
UnknownItem.CODE = 9;
class InternalError extends KairosError {}
InternalError.CODE = 12;
/** The server did not take the request: safe to retry later or on another endpoint. */
class Unavailable extends KairosError {}
class Overloaded extends Unavailable {}
Overloaded.CODE = 10;
class ShuttingDown extends Unavailable {}
ShuttingDown.CODE = 11;
/** No endpoint could be reached, or the connection was lost and the one retry failed too. */
class KairosConnectionError extends KairosError {}
/** No complete answer within the client's timeout. */
class KairosTimeoutError extends KairosError {}

const BY_CODE = new Map(
  [MalformedFrame, FrameTooLarge, UnsupportedVersion, UnknownOpcode, FrameTimeout, BadRequest, LimitExceeded,
    UnknownModel, UnknownUser, UnknownItem, Overloaded, ShuttingDown, InternalError].map((c) => [c.CODE, c]));

/** The error for a server error response; a code this client does not know gives a plain KairosError with it. */
function errorForCode(code, message, requestId = null) {
  const Cls = BY_CODE.get(code);
  return Cls ? new Cls(message, code, requestId) : new KairosError(message, code, requestId);
}

module.exports = {
  ErrorCode,
  CODE_NAMES,
  CLOSES_CONNECTION,
  KairosError,
  ProtocolError,
  MalformedFrame,
  FrameTooLarge,
  UnsupportedVersion,
  UnknownOpcode,
  FrameTimeout,
  BadRequest,
  LimitExceeded,
  UnknownModel,
  UnknownUser,
  UnknownItem,
  InternalError,
  Unavailable,
  Overloaded,
  ShuttingDown,
  KairosConnectionError,
  KairosTimeoutError,
  errorForCode,
};
