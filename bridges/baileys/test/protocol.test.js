import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_TEXT_CHARS, sendProblem } from '../src/protocol.js';

const send = (text) => ({ type: 'send', id: 'm-1', to: '+6281234567890', text });

test('a text is measured in characters as the platform counts them (code points)', () => {
  // 4096 emoji are 8192 UTF-16 units: still 4096 characters, a valid send.
  assert.equal(sendProblem(send('😀'.repeat(MAX_TEXT_CHARS))), null);
  assert.match(sendProblem(send('😀'.repeat(MAX_TEXT_CHARS + 1))), /text must be 1-4096 characters/);
  assert.match(sendProblem(send('')), /text must be/);
});
