// Compiled (never run) by types.test.js with `tsc --strict`: every method and option of the client as an app would
// use them, so index.d.ts cannot drift from the API without this failing.
import {
  Client, Decay, Strength, Decision, Reason, KairosError, KairosTimeoutError, UnknownModel, Unavailable,
  Scores, Ranking, PushDecision, ServerInfo, ServerStats, ServingReport, Hello, ScoredItem, LATEST_TIME,
} from 'kairos-client';

export async function everything(): Promise<void> {
  const c = new Client(['127.0.0.1:7878', ['10.0.0.2', 7878], { host: 'kairos-3' }], {
    timeoutMs: 50, connectTimeoutMs: 20, backoffMs: 100, maxBackoffMs: 5000, port: 7878,
  });
  await c.ping();
  const hello: Hello = await c.hello([1]);
  const info: ServerInfo = await c.info();
  const stats: ServerStats = await c.stats();
  const scores: Scores = await c.score('default', 'user-1', new Set(['item-1', 'item-2']), {
    events: [{ item: 'item-7', strength: Strength.CART, timestamp: new Date() }, ['item-9', 8, 1767225600n]],
    now: 1767225600,
    decay: Decay.exponential(3600),
  });
  const best: ScoredItem[] = scores.ranked(3);
  const byItem: Map<string, number> = scores.asMap();
  const topk: Ranking = await c.topk({ name: 'default', version: 3 }, 'user-1', 10, {
    exclude: ['item-4'], allowRepeats: true, category: 'shoes', trendingWeight: 0.5, buyAgainWeight: 0.25,
    events: [], decay: Decay.sigmoid(1800, 0.01),
  });
  const similar: Ranking = await c.similar(['default', 2], 'item-1', 5, { category: 'shoes', signal: new AbortController().signal });
  const push: PushDecision = await c.pushDecide('default', 'user-1', null, {
    recentPushes: [1767225600, new Date()], maxPerDay: 2, maxPerWeek: 7, minGapSeconds: 14400, quietHours: null,
    utcOffsetMinutes: -300, threshold: 0.1, k: 3, events: [['item-3', 1, 1767225600]], decay: Decay.none(),
  });
  const reports: ServingReport[] = [await c.reload(), await c.pin('default', 2), await c.unpin('default')];
  try {
    await c.rollback('default');
  } catch (e) {
    if (e instanceof UnknownModel || e instanceof Unavailable || e instanceof KairosTimeoutError) {
      const code: number | null = e.code;
      console.log(code, e.codeName, e.serverMessage, e.requestId);
    } else if (!(e instanceof KairosError)) {
      throw e;
    }
  }
  const sendAt: number = push.sendAt;
  const pushNow: boolean = push.pushNow || push.decision === Decision.PUSH_NOW || push.reason === Reason.QUIET_HOURS;
  const personal: boolean = !topk.fallback && !topk.coldStart;
  const first: number = scores.scores[0];
  const unknown: string[] = scores.unknownItems;
  console.log(hello.chosenVersion, info.model('default')?.checksum, stats.ops[0].p99Us, best, byItem, similar.itemIds,
    reports[0].rejected, sendAt, pushNow, personal, first, unknown, LATEST_TIME, topk.modelVersion);
  c.close();
}
