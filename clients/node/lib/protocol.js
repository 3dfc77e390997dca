'use strict';
// Kairos wire protocol v1 (proto-spec/PROTOCOL.md), pure bytes in, values out: the constants (wire.js), the request
// encoder (encode.js) and the response decoder (decode.js) under one name.

const wire = require('./wire');
const encode = require('./encode');
const decode = require('./decode');

module.exports = {
  MAGIC: wire.MAGIC,
  VERSION: wire.VERSION,
  HEADER_SIZE: wire.HEADER_SIZE,
  ERROR_OPCODE: wire.ERROR_OPCODE,
  MAX_RESPONSE_PAYLOAD: wire.MAX_RESPONSE_PAYLOAD,
  LATEST_TIME: wire.LATEST_TIME,
  Op: wire.Op,
  OP_NAMES: wire.OP_NAMES,
  NOT_IDEMPOTENT: wire.NOT_IDEMPOTENT,
  AnswerFlag: wire.AnswerFlag,
  Decision: wire.Decision,
  Reason: wire.Reason,
  Strength: wire.Strength,
  Decay: wire.Decay,
  ...encode,
  ...decode,
};
