// Must NOT compile (types.test.js checks each line's error): index.d.ts has to refuse these.
import { Client } from 'kairos-client';

export async function misuse(c: Client): Promise<void> {
  await c.score('default', 42, ['item-1']); // expect-error: user is a string
  await c.topk('default', 'user-1', '10'); // expect-error: k is a number
  await c.topk('default', 'user-1', 10, { allowRepeat: true }); // expect-error: no such option
  await c.score('default', 'user-1', ['item-1'], { events: [['item-2', 'two', 0]] }); // expect-error: strength is a number
  const n: number = (await c.topk('default', 'user-1', 10)).items; // expect-error: items are ScoredItem[]
}
