// Type declarations for kairos-client (the Node.js client for `kairos serve`, proto-spec/PROTOCOL.md).

/** A u64 from the wire: a number when it is exact (below 2^53), else a bigint. */
export type U64 = number | bigint;
/** Unix seconds (fractions are dropped), a bigint, or a Date; 1970 to 9999. */
export type TimeLike = number | bigint | Date;
/** "name" (the version serving now), [name, version], or {name, version}. */
export type ModelLike = string | [string, number | bigint] | { name: string; version?: number | bigint };
/** What the user just did. */
export type EventLike = { item: string; strength: number; timestamp: TimeLike } | [string, number, TimeLike];
/** "host", "host:port", "[v6]:port", [host, port], or {host, port}. */
export type EndpointSpec = string | [string, number] | { host: string; port?: number };

export const DEFAULT_PORT: 7878;
/** The latest time a request may carry (9999-12-31T23:59:59Z). */
export const LATEST_TIME: 253402300799;

/** How the server discounts real-time events by age. */
export class Decay {
  constructor(form: number, a?: number, b?: number);
  readonly form: number;
  readonly a: number;
  readonly b: number;
  static modelDefault(): Decay;
  static none(): Decay;
  static exponential(halfLifeSeconds: number): Decay;
  static linear(windowSeconds: number): Decay;
  static sigmoid(midpointSeconds: number, steepnessPerSecond: number): Decay;
  static readonly MODEL_DEFAULT: 0;
  static readonly NONE: 1;
  static readonly EXPONENTIAL: 2;
  static readonly LINEAR: 3;
  static readonly SIGMOID: 4;
}

export const Strength: { readonly VIEW: 1; readonly CLICK: 2; readonly CART: 4; readonly PURCHASE: 8 };
export const AnswerFlag: { readonly FALLBACK: 1; readonly COLD_START: 2 };
export const Decision: { readonly PUSH_NOW: 0; readonly NOT_NOW: 1; readonly NEVER: 2 };
export const Reason: {
  readonly OK: 0;
  readonly DAILY_CAP: 1;
  readonly WEEKLY_CAP: 2;
  readonly MINIMUM_GAP: 3;
  readonly QUIET_HOURS: 4;
  readonly BELOW_THRESHOLD: 5;
  readonly BETTER_TIME_LATER: 6;
  readonly NO_CANDIDATES: 7;
};

export class ModelStamp {
  readonly name: string;
  readonly version: U64;
}

export interface ScoredItem {
  item: string;
  score: number;
}

declare class Answer {
  readonly model: ModelStamp;
  /** Answer flag bits (AnswerFlag). */
  readonly flags: number;
  /** Unknown user: trending popularity, not personal. */
  readonly fallback: boolean;
  /** Unknown user made personal by the request's events. */
  readonly coldStart: boolean;
  readonly modelVersion: U64;
}

export class Scores extends Answer {
  /** The candidates, in the order sent. */
  readonly items: string[];
  /** One score per candidate; NaN for unknown items. */
  readonly scores: Float32Array;
  /** Bit 0: the item is unknown to the model. */
  readonly itemFlags: Uint8Array;
  readonly unknownItems: string[];
  asMap(): Map<string, number>;
  ranked(n?: number): ScoredItem[];
}

export class Ranking extends Answer {
  /** Best first. */
  readonly items: ScoredItem[];
  readonly itemIds: string[];
}

export class PushDecision extends Answer {
  readonly decision: number;
  readonly reason: number;
  /** Unix seconds: now for push now, the suggested time for not now, 0 for never. */
  readonly sendAt: number;
  readonly items: ScoredItem[];
  readonly pushNow: boolean;
  readonly decisionName: string;
  readonly reasonName: string;
}

export interface Limits {
  maxPayload: number;
  maxCandidates: number;
  maxK: number;
  maxEvents: number;
}

export interface ModelInfo {
  name: string;
  version: U64;
  dimensions: number;
  items: number;
  users: number;
  encoding: string;
  loadedAt: number;
  /** The file's header checksum, 16 hex digits. */
  checksum: string;
}

export interface ServerInfo {
  limits: Limits;
  models: ModelInfo[];
  model(name: string): ModelInfo | null;
}

export interface ServingReport {
  models: ModelInfo[];
  /** Files rejected during the operation, "file: reason". */
  rejected: string[];
  model(name: string): ModelInfo | null;
}

export interface OpStats {
  opcode: number;
  op: string;
  requests: U64;
  errors: U64;
  p50Us: number;
  p99Us: number;
  p999Us: number;
}

export interface ServerStats {
  uptimeSeconds: U64;
  openConnections: U64;
  totalConnections: U64;
  ops: OpStats[];
}

export interface Hello {
  chosenVersion: number;
  versions: number[];
  limits: Limits;
  server: string;
}

/** Rejects the call with the signal's reason when it aborts (an answer arriving later is dropped). */
export interface Abortable {
  signal?: AbortSignal;
}

export interface RealtimeOptions extends Abortable {
  events?: Iterable<EventLike>;
  /** Reference time for the events; the server's clock when left out. */
  now?: TimeLike;
  decay?: Decay;
}

export interface TopkOptions extends RealtimeOptions {
  exclude?: Iterable<string>;
  allowRepeats?: boolean;
  category?: string;
  trendingWeight?: number;
  buyAgainWeight?: number;
}

export interface PushOptions extends Abortable {
  recentPushes?: Iterable<TimeLike>;
  maxPerDay?: number;
  maxPerWeek?: number;
  minGapSeconds?: number;
  /** [start, end) in the user's local hours; null for none. Default [22, 8]. */
  quietHours?: [number, number] | null;
  utcOffsetMinutes?: number;
  threshold?: number;
  k?: number;
  events?: Iterable<EventLike>;
  decay?: Decay;
}

export interface ClientOptions {
  /** Bounds a whole call: connect, send, answer. Default 1000. */
  timeoutMs?: number;
  /** One connection attempt. Default: timeoutMs. */
  connectTimeoutMs?: number;
  /** How long a failed endpoint is avoided, doubling up to maxBackoffMs. Defaults 500 and 30000. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Port for endpoints given without one. Default 7878. */
  port?: number;
}

export class Client {
  constructor(endpoints?: EndpointSpec | EndpointSpec[], options?: ClientOptions);
  ping(): Promise<void>;
  hello(versions?: number[]): Promise<Hello>;
  info(): Promise<ServerInfo>;
  stats(): Promise<ServerStats>;
  score(model: ModelLike, user: string, items: Iterable<string>, options?: RealtimeOptions): Promise<Scores>;
  topk(model: ModelLike, user: string, k: number, options?: TopkOptions): Promise<Ranking>;
  similar(model: ModelLike, item: string, k: number, options?: { category?: string } & Abortable): Promise<Ranking>;
  pushDecide(model: ModelLike, user: string, now: TimeLike | null, options?: PushOptions): Promise<PushDecision>;
  reload(): Promise<ServingReport>;
  pin(model: string, version: number | bigint): Promise<ServingReport>;
  unpin(model: string): Promise<ServingReport>;
  rollback(model: string): Promise<ServingReport>;
  close(): void;
}

export const ErrorCode: {
  readonly MALFORMED_FRAME: 1;
  readonly FRAME_TOO_LARGE: 2;
  readonly UNSUPPORTED_VERSION: 3;
  readonly UNKNOWN_OPCODE: 4;
  readonly BAD_REQUEST: 5;
  readonly LIMIT_EXCEEDED: 6;
  readonly UNKNOWN_MODEL: 7;
  readonly UNKNOWN_USER: 8;
  readonly UNKNOWN_ITEM: 9;
  readonly OVERLOADED: 10;
  readonly SHUTTING_DOWN: 11;
  readonly INTERNAL_ERROR: 12;
  readonly FRAME_TIMEOUT: 13;
};

export class KairosError extends Error {
  /** The protocol error code, or null for client-side errors. */
  readonly code: number | null;
  readonly codeName: string | null;
  /** The server's human-readable message (not stable). */
  readonly serverMessage: string;
  /** The id of the request the server answered (0: addressed to the connection). */
  readonly requestId: number | null;
}
export class ProtocolError extends KairosError {}
export class MalformedFrame extends ProtocolError {}
export class FrameTooLarge extends ProtocolError {}
export class UnsupportedVersion extends ProtocolError {}
export class UnknownOpcode extends ProtocolError {}
export class FrameTimeout extends ProtocolError {}
export class BadRequest extends KairosError {}
export class LimitExceeded extends KairosError {}
export class UnknownModel extends KairosError {}
export class UnknownUser extends KairosError {}
export class UnknownItem extends KairosError {}
export class InternalError extends KairosError {}
export class Unavailable extends KairosError {}
export class Overloaded extends Unavailable {}
export class ShuttingDown extends Unavailable {}
export class KairosConnectionError extends KairosError {}
export class KairosTimeoutError extends KairosError {}

/** The pure codec (bytes in, values out), for tools and tests. */
export const protocol: Record<string, unknown>;
