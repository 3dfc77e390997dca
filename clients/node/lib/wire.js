'use strict';
// Kairos wire protocol v1 (proto-spec/PROTOCOL.md): the constants and enumerations shared by the request encoder
// (encode.js) and the response decoder (decode.js).

const MAGIC = 0xca;
const VERSION = 1;
const HEADER_SIZE = 12;
const ERROR_OPCODE = 0xff;
/** Largest response payload this client accepts (a guard against a peer that is not Kairos). */
const MAX_RESPONSE_PAYLOAD = 64 * 1024 * 1024;
/** The latest time a request may carry (9999-12-31T23:59:59Z); the earliest is 0 (1970). */
const LATEST_TIME = 253402300799;
const MAX_U64 = (1n << 64n) - 1n;
const MAX_F32 = 3.4028234663852886e38;
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Request opcodes; a success response carries `opcode | 0x80`. */
const Op = Object.freeze({
  PING: 0x01,
  HELLO: 0x02,
  INFO: 0x03,
  STATS: 0x04,
  SCORE: 0x10,
  TOPK: 0x11,
  SIMILAR: 0x12,
  PUSH_DECIDE: 0x13,
  RELOAD: 0x20,
  PIN: 0x21,
  ROLLBACK: 0x22,
});
const OP_NAMES = Object.freeze(Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k])));
// ROLLBACK pins the version below the one serving, so a retry after a lost answer could roll back two versions.
// Every other operation is idempotent (the server keeps no per-request state).
const NOT_IDEMPOTENT = new Set([Op.ROLLBACK]);

/** Answer flag bits. */
const AnswerFlag = Object.freeze({ FALLBACK: 1, COLD_START: 2 });
/** PUSH_DECIDE decisions. */
const Decision = Object.freeze({ PUSH_NOW: 0, NOT_NOW: 1, NEVER: 2 });
/** PUSH_DECIDE reason codes. */
const Reason = Object.freeze({
  OK: 0,
  DAILY_CAP: 1,
  WEEKLY_CAP: 2,
  MINIMUM_GAP: 3,
  QUIET_HOURS: 4,
  BELOW_THRESHOLD: 5,
  BETTER_TIME_LATER: 6,
  NO_CANDIDATES: 7,
});
const DECISION_NAMES = Object.fromEntries(Object.entries(Decision).map(([k, v]) => [v, k]));
const REASON_NAMES = Object.fromEntries(Object.entries(Reason).map(([k, v]) => [v, k]));
/** Event strengths the trainer's defaults use. */
const Strength = Object.freeze({ VIEW: 1, CLICK: 2, CART: 4, PURCHASE: 8 });

/** How the server discounts real-time events by age; `Decay.modelDefault()` (or leaving it out) uses the model's. */
class Decay {
  constructor(form, a = 0, b = 0) {
    this.form = form;
    this.a = a;
    this.b = b;
  }
  static modelDefault() { return new Decay(0); }
  /** Every event counts fully, whatever its age. */
  static none() { return new Decay(1); }
  static exponential(halfLifeSeconds) { return new Decay(2, halfLifeSeconds); }
  static linear(windowSeconds) { return new Decay(3, windowSeconds); }
  static sigmoid(midpointSeconds, steepnessPerSecond) { return new Decay(4, midpointSeconds, steepnessPerSecond); }
}
Decay.MODEL_DEFAULT = 0;
Decay.NONE = 1;
Decay.EXPONENTIAL = 2;
Decay.LINEAR = 3;
Decay.SIGMOID = 4;

module.exports = {
  MAGIC,
  VERSION,
  HEADER_SIZE,
  ERROR_OPCODE,
  MAX_RESPONSE_PAYLOAD,
  LATEST_TIME,
  MAX_U64,
  MAX_F32,
  LITTLE_ENDIAN_HOST,
  Op,
  OP_NAMES,
  NOT_IDEMPOTENT,
  AnswerFlag,
  Decision,
  Reason,
  DECISION_NAMES,
  REASON_NAMES,
  Strength,
  Decay,
};
