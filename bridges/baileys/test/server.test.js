/**
 * The bridge's side of PROTOCOL.md against the real process: the upgrade
 * (path, token, subprotocol), hello, client frames, replacement, logout,
 * stored credentials, and a graceful stop.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BufferJSON, initAuthCreds } from 'baileys';
import { openStore } from '../src/store.js';
import * as endpoints from './support/endpoints.js';
import { WorkerClient, newInstanceKey, newStoreKey, newToken, startBridge, tempDir, waitFor } from './support/bridge.js';

async function refusal(url, headers) {
  return WorkerClient.open(url, undefined, { headers }).then(
    () => assert.fail('the upgrade was accepted'),
    (err) => err,
  );
}

describe('the upgrade and the session', () => {
  let wa;
  let bridge;
  before(async () => {
    // WhatsApp never answers: sessions stay up, unpaired, until the test ends them.
    wa = await endpoints.hang();
    bridge = await startBridge({ BRIDGE_WA_URL: wa.url, BRIDGE_WA_CONNECT_TIMEOUT_S: '30' });
  });
  after(async () => {
    await bridge.stop();
    await wa.close();
  });

  test('a path that is not /v1/instances/{canonical UUID}/socket is 404', async () => {
    const key = newInstanceKey();
    for (const bad of [`/v1/instances/${key.toUpperCase()}/socket`, '/v1/instances/not-a-uuid/socket', `/v2/instances/${key}/socket`, `/v1/instances/${key}/socket/x`]) {
      const err = await refusal(`${bridge.url}${bad}`, { Authorization: `Bearer ${newToken()}` });
      assert.equal(err.status, 404, bad);
      assert.equal(JSON.parse(err.body).error, 'not_found');
    }
    assert.equal((await fetch(`${bridge.httpUrl}/nothing`)).status, 404);
    assert.equal((await fetch(`${bridge.httpUrl}/v1/instances/${key}/socket`)).status, 400, 'no upgrade');
  });

  test('a missing bearer token is 401', async () => {
    const url = `${bridge.url}/v1/instances/${newInstanceKey()}/socket`;
    assert.equal((await refusal(url, {})).status, 401);
    assert.equal((await refusal(url, { Authorization: 'Basic dXNlcjpwdw==' })).status, 401);
    assert.equal((await refusal(url, { Authorization: 'Bearer ' })).status, 401);
  });

  test('the token is bound on first sight; a different one later is 401, the first still works', async () => {
    const key = newInstanceKey();
    const token = newToken();
    const first = await bridge.connect(key, token);
    await first.next('hello');
    await first.close();
    const err = await refusal(`${bridge.url}/v1/instances/${key}/socket`, { Authorization: `Bearer ${newToken()}` });
    assert.equal(err.status, 401);
    assert.equal(JSON.parse(err.body).error, 'unauthorized');
    const again = await bridge.connect(key, token);
    await again.next('hello');
    await again.close();
    assert.equal(bridge.stdout().includes(token), false, 'the token is never logged');
  });

  test('the subprotocol is selected and hello comes first', async () => {
    const client = await bridge.connect(newInstanceKey(), newToken());
    assert.equal(client.protocol, 'blast-gateway.v1');
    const hello = await client.next('hello');
    assert.equal(hello.v, 1);
    assert.equal(hello.paired, false);
    assert.match(hello.session_id, /^sess-[0-9a-f]{16}$/);
    assert.deepEqual(hello.features, ['pair_code', 'media', 'check', 'presence']);
    assert.equal(await client.close(1000), 1000, 'a client close is answered with its code');
  });

  test('malformed client frames get an error frame, are counted, and the session goes on', async () => {
    const before = (await bridge.health()).malformed_received;
    const client = await bridge.connect(newInstanceKey(), newToken());
    await client.next('hello');
    const problems = [];
    for (const frame of ['{not json', '[1,2]', '"text"', 'null', '{"no":"type"}', '{"type":7}', Buffer.from([1, 2, 3])]) {
      client.send(frame);
      const error = await client.next('error');
      assert.equal(error.code, 'malformed_frame');
      problems.push(error.message);
    }
    assert.deepEqual(problems, [
      'frame is not valid JSON',
      'frame is not a JSON object',
      'frame is not a JSON object',
      'frame is not a JSON object',
      'frame has no string `type`',
      'frame has no string `type`',
      'binary frames are not part of the protocol',
    ]);
    client.send({ type: 'no-such-type' }); // ignored
    client.send({ type: 'send', id: 'm1', to: '+6281234567890', text: 'hi' });
    assert.equal((await client.next('error')).code, 'not_ready', 'the session still answers');
    assert.equal(client.closeCode, null);
    assert.equal((await bridge.health()).malformed_received, before + 7);
    await client.close();
  });

  test('a send before ready is refused with not_ready, echoing its id', async () => {
    const client = await bridge.connect(newInstanceKey(), newToken());
    await client.next('hello');
    client.send({ type: 'send', id: 'cmp-9', to: '+6281234567890', text: 'Halo' });
    assert.deepEqual(await client.next('error'), {
      type: 'error',
      code: 'not_ready',
      message: 'send is accepted only after ready',
      id: 'cmp-9',
    });
    await client.close();
  });

  test('media sends, checks and presences before ready are refused with not_ready', async () => {
    const client = await bridge.connect(newInstanceKey(), newToken());
    await client.next('hello');
    const media = { kind: 'image', url: 'https://blast.example/m/x', mime: 'image/jpeg', filename: 'a.jpg', size: 10 };
    client.send({ type: 'send', id: 'cmp-10', to: '+6281234567890', media });
    assert.deepEqual(await client.next('error'), { type: 'error', code: 'not_ready', message: 'send is accepted only after ready', id: 'cmp-10' });
    client.send({ type: 'check', id: 'c-1', phones: ['+6281234567890'] });
    assert.deepEqual(await client.next('error'), { type: 'error', code: 'not_ready', message: 'check is accepted only after ready', id: 'c-1' });
    client.send({ type: 'check', id: 'x'.repeat(65), phones: 'junk' });
    assert.equal((await client.next('error')).id, undefined, 'an id longer than 64 characters is not echoed');
    client.send({ type: 'presence', to: '+6281234567890', state: 'composing' });
    assert.deepEqual(await client.next('error'), { type: 'error', code: 'not_ready', message: 'presence is accepted only after ready' });
    assert.equal(client.closeCode, null);
    await client.close();
  });

  test('a pair_code frame needs an E.164 phone', async () => {
    const client = await bridge.connect(newInstanceKey(), newToken());
    await client.next('hello');
    for (const phone of [undefined, '6281234567890', '+12', 42]) {
      client.send({ type: 'pair_code', phone });
      assert.equal((await client.next('error')).code, 'invalid_pair_code');
    }
    await client.close();
  });

  test('a second session for an instance closes the older with 4440', async () => {
    const key = newInstanceKey();
    const token = newToken();
    const older = await bridge.connect(key, token);
    await older.next('hello');
    const newer = await bridge.connect(key, token);
    assert.equal(await older.closedWith(), 4440);
    const hello = await newer.next('hello');
    assert.equal(hello.type, 'hello');
    assert.equal(newer.closeCode, null);
    assert.ok(bridge.lines().some((line) => line.msg === 'REPLACED' && line.instance === key));
    await newer.close();
  });

  test('logout closes with 4401', async () => {
    const client = await bridge.connect(newInstanceKey(), newToken());
    await client.next('hello');
    client.send({ type: 'logout' });
    assert.equal(await client.closedWith(), 4401);
  });

  test('health counts the open sessions', async () => {
    const clients = [];
    for (let i = 0; i < 3; i += 1) {
      const client = await bridge.connect(newInstanceKey(), newToken());
      await client.next('hello');
      clients.push(client);
    }
    await waitFor(async () => (await bridge.health()).sessions === 3, 5000, 'three sessions');
    await Promise.all(clients.map((client) => client.close()));
    await waitFor(async () => (await bridge.health()).sessions === 0, 5000, 'no sessions');
    assert.doesNotMatch(bridge.stdout(), /UNHANDLED-REJECTION|UNCAUGHT-EXCEPTION|SESSION-ERROR/);
  });
});

describe('a pair_code request when WhatsApp cannot be reached', () => {
  test('is answered with an error, then the session closes with the timeout', async () => {
    const wa = await endpoints.hang();
    const bridge = await startBridge({ BRIDGE_WA_URL: wa.url, BRIDGE_WA_CONNECT_TIMEOUT_S: '1' });
    try {
      const client = await bridge.connect(newInstanceKey(), newToken());
      await client.next('hello');
      client.send({ type: 'pair_code', phone: '+6281234567890' });
      assert.equal((await client.next('error')).code, 'pair_code_failed');
      assert.equal(await client.closedWith(), 4408);
    } finally {
      await bridge.stop();
      await wa.close();
    }
  });
});

describe('stored credentials', () => {
  async function bridgeWithCreds(instance, credsJson) {
    const dir = tempDir();
    const storeKey = newStoreKey();
    const spec = { kind: 'sqlite', path: path.join(dir, 'bridge.sqlite3') };
    const store = await openStore(spec, Buffer.from(storeKey, 'hex'));
    await store.setCreds(instance, credsJson);
    await store.close();
    const wa = await endpoints.wsClose();
    const bridge = await startBridge({ BRIDGE_WA_URL: wa.url, BRIDGE_STORE: `sqlite:${spec.path}`, BRIDGE_STORE_KEY: storeKey });
    return { wa, bridge, spec, storeKey };
  }

  test('a stored pairing is announced in hello', async () => {
    const instance = newInstanceKey();
    const creds = initAuthCreds();
    creds.me = { id: '6281234567890:3@s.whatsapp.net', name: 'Toko' };
    creds.account = { details: Buffer.from('d'), accountSignatureKey: Buffer.alloc(32) };
    const { wa, bridge } = await bridgeWithCreds(instance, JSON.stringify(creds, BufferJSON.replacer));
    try {
      const client = await bridge.connect(instance, newToken());
      assert.equal((await client.next('hello')).paired, true);
      assert.equal(await client.closedWith(), 4428);
    } finally {
      await bridge.stop();
      await wa.close();
    }
  });

  test('unreadable credentials close with 4500 and are forgotten, so the next session starts unpaired', async () => {
    const instance = newInstanceKey();
    const token = newToken();
    const { wa, bridge, spec, storeKey } = await bridgeWithCreds(instance, '{"me": {"id": "broken');
    try {
      const first = await bridge.connect(instance, token);
      assert.equal((await first.next('hello')).paired, false);
      assert.equal(await first.closedWith(), 4500);
      const second = await bridge.connect(instance, token);
      assert.equal((await second.next('hello')).paired, false);
      assert.equal(await second.closedWith(), 4428, 'a fresh registration reached WhatsApp');
      assert.equal(await bridge.stop(), 0);
      const store = await openStore(spec, Buffer.from(storeKey, 'hex'));
      assert.equal(await store.getCreds(instance), null);
      await store.close();
    } finally {
      await bridge.stop();
      await wa.close();
    }
  });
});

describe('stopping', () => {
  test('SIGTERM closes live sessions with 1001 and exits 0', async () => {
    const wa = await endpoints.hang();
    const bridge = await startBridge({ BRIDGE_WA_URL: wa.url, BRIDGE_WA_CONNECT_TIMEOUT_S: '30' });
    try {
      const clients = [];
      for (let i = 0; i < 2; i += 1) {
        const client = await bridge.connect(newInstanceKey(), newToken());
        await client.next('hello');
        clients.push(client);
      }
      const started = Date.now();
      assert.equal(await bridge.stop(), 0);
      assert.ok(Date.now() - started < 5000, 'without waiting out the WhatsApp timeout');
      for (const client of clients) assert.equal(await client.closedWith(), 1001);
      const lines = bridge.lines().map((line) => line.msg);
      assert.ok(lines.includes('STOPPING') && lines.includes('STOPPED'));
    } finally {
      await bridge.stop();
      await wa.close();
    }
  });
});
