/**
 * The real bridge process and the real Baileys library against WhatsApp
 * endpoints that fail: each failure reaches the worker as `hello` and then
 * the close code PROTOCOL.md gives it, and the bridge stays up to serve the
 * next session.
 *
 * What Baileys reports (lib/Socket/socket.js, lib/Utils/generics.js):
 * - refused TCP, and TCP closed before the HTTP answer: ws emits an error
 *   with an `E...` code (ECONNREFUSED, ECONNRESET "socket hang up"), which
 *   getCodeFromWSError reads as 408;
 * - no answer to the upgrade: ws's handshake timeout ("timed out"), 408;
 * - an HTTP error answer: Baileys loses the status; the bridge ends the
 *   socket at once as the same 408 (see session.js);
 * - the upgrade completes, then the server closes: Baileys' own close
 *   handler runs first, "Connection Terminated", 428;
 * - a garbage frame: decoding the handshake throws a plain RangeError,
 *   without a status code, so transient 4503.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import * as endpoints from './support/endpoints.js';
import { newInstanceKey, newToken, startBridge, waitFor } from './support/bridge.js';

const CASES = [
  { name: 'refused TCP', endpoint: endpoints.refused, code: 4408, status: 408 },
  { name: 'TCP accepted then closed', endpoint: endpoints.acceptThenClose, code: 4408, status: 408 },
  { name: 'an upgrade that hangs', endpoint: endpoints.hang, code: 4408, status: 408 },
  { name: 'HTTP 500 on upgrade', endpoint: () => endpoints.httpError(500), code: 4408, status: 408, marker: 'WA-UPGRADE-REFUSED' },
  { name: 'HTTP 403 on upgrade', endpoint: () => endpoints.httpError(403), code: 4408, status: 408, marker: 'WA-UPGRADE-REFUSED' },
  { name: 'upgrade accepted then closed', endpoint: endpoints.wsClose, code: 4428, status: 428 },
  { name: 'a garbage frame', endpoint: endpoints.garbage, code: 4503, status: undefined },
];

async function session(bridge) {
  const client = await bridge.connect(newInstanceKey(), newToken());
  const hello = await client.next('hello');
  return { client, hello, code: await client.closedWith(8000) };
}

function assertClean(bridge, token) {
  const text = bridge.stdout();
  assert.doesNotMatch(text, /UNHANDLED-REJECTION|UNCAUGHT-EXCEPTION|SESSION-ERROR/);
  assert.equal(text.includes(bridge.env.BRIDGE_STORE_KEY), false, 'the store key is never logged');
  if (token) assert.equal(text.includes(token), false, 'tokens are never logged');
}

for (const { name, endpoint, code, status, marker } of CASES) {
  describe(`WhatsApp endpoint: ${name}`, () => {
    let wa;
    let bridge;
    after(async () => {
      await bridge?.stop();
      await wa?.close();
    });

    test(`the worker sees hello, then ${code}, and the bridge serves the next session`, async () => {
      wa = await endpoint();
      bridge = await startBridge({ BRIDGE_WA_URL: wa.url, BRIDGE_WA_CONNECT_TIMEOUT_S: '1' });
      const first = await session(bridge);
      assert.deepEqual(
        { ...first.hello, session_id: typeof first.hello.session_id },
        { type: 'hello', v: 1, session_id: 'string', paired: false, heartbeat_s: 20, features: ['pair_code', 'media', 'check', 'presence'] },
      );
      assert.equal(first.code, code);
      const closed = bridge.lines().find((line) => line.msg === 'WA-CLOSED');
      assert.equal(closed?.status, status, 'the Baileys status code behind it');
      if (marker) assert.ok(bridge.lines().some((line) => line.msg === marker));

      const second = await session(bridge);
      assert.equal(second.code, code);
      assert.notEqual(second.hello.session_id, first.hello.session_id);
      assert.ok(bridge.running);
      await waitFor(async () => (await bridge.health()).sessions === 0, 5000, 'sessions to be released');
      assert.deepEqual(await bridge.health(), { status: 'ok', sessions: 0, malformed_received: 0 });
      assertClean(bridge);
      assert.equal(await bridge.stop(), 0);
    });
  });
}

describe('one failing WhatsApp connection', () => {
  test('ends its own session only', async () => {
    const wa = await endpoints.scripted(['silent', 'garbage']);
    const bridge = await startBridge({ BRIDGE_WA_URL: wa.url, BRIDGE_WA_CONNECT_TIMEOUT_S: '20' });
    try {
      const tokenA = newToken();
      const a = await bridge.connect(newInstanceKey(), tokenA);
      await a.next('hello');
      await waitFor(() => bridge.lines().some((line) => line.msg === 'OPEN'), 5000, 'the first session to open');
      const b = await bridge.connect(newInstanceKey(), newToken());
      await b.next('hello');
      assert.equal(await b.closedWith(), 4503);
      assert.equal(a.closeCode, null, 'the other session is still open');
      a.send({ type: 'send', id: 'm1', to: '+6281234567890', text: 'hi' });
      assert.equal((await a.next('error')).code, 'not_ready', 'and still answers');
      assert.equal(await a.close(1000), 1000);
      assertClean(bridge, tokenA);
    } finally {
      await bridge.stop();
      await wa.close();
    }
  });
});
