'use strict';
// kairos-client: the Node.js client for `kairos serve` (proto-spec/PROTOCOL.md). No dependencies.

const errors = require('./lib/errors');
const protocol = require('./lib/protocol');
const { Client, DEFAULT_PORT } = require('./lib/client');

module.exports = {
  Client,
  DEFAULT_PORT,
  Decay: protocol.Decay,
  Decision: protocol.Decision,
  Reason: protocol.Reason,
  Strength: protocol.Strength,
  AnswerFlag: protocol.AnswerFlag,
  ModelStamp: protocol.ModelStamp,
  Scores: protocol.Scores,
  Ranking: protocol.Ranking,
  PushDecision: protocol.PushDecision,
  LATEST_TIME: protocol.LATEST_TIME,
  protocol,
  ...errors,
};
