import assert from 'node:assert/strict';
import { test } from 'node:test';
import { closeCodeFor } from '../src/codes.js';

// Every row of issue 11's table and PROTOCOL.md section 6.
const ROWS = [
  [401, 4401, 'logged out'],
  [402, 4402, 'temporarily banned'],
  [403, 4403, 'forbidden'],
  [405, 4405, 'client outdated'],
  [408, 4408, 'timed out / connection lost'],
  [411, 4411, 'multi-device mismatch'],
  [428, 4428, 'connection closed'],
  [440, 4440, 'connection replaced'],
  [503, 4503, 'service unavailable'],
  [515, 4515, 'restart required'],
  [406, 4403, 'banned reads as forbidden'],
  [409, 4405, 'client not accepted reads as outdated'],
];

for (const [status, code, meaning] of ROWS) {
  test(`Baileys ${status} (${meaning}) closes with ${code}`, () => {
    assert.equal(closeCodeFor(status), code);
    // Knowing the credentials are corrupt changes nothing but 500.
    assert.equal(closeCodeFor(status, { credentialsCorrupt: true }), code);
  });
}

test('Baileys 500 is transient 4503 while the stored credentials are sound', () => {
  assert.equal(closeCodeFor(500), 4503);
  assert.equal(closeCodeFor(500, { credentialsCorrupt: false }), 4503);
});

test('Baileys 500 is a bad session 4500 only when the stored credentials are known corrupt', () => {
  assert.equal(closeCodeFor(500, { credentialsCorrupt: true }), 4500);
});

test('a missing status code is transient 4503', () => {
  assert.equal(closeCodeFor(undefined), 4503);
  assert.equal(closeCodeFor(null), 4503);
  assert.equal(closeCodeFor(undefined, { credentialsCorrupt: true }), 4503);
});

test('any other status code is transient 4503', () => {
  for (const status of [0, 200, 400, 404, 419, 429, 499, 501, 502, 599, 1000, NaN, '401']) {
    assert.equal(closeCodeFor(status), 4503, `status ${String(status)}`);
  }
});
