/**
 * What every server-backed store must do, whatever holds its rows: defined
 * once, run by test/store-postgres.test.js and test/store-redis.test.js
 * inside their own `describe`, each with its own server and clean-up.
 *
 * `spec` opens the store, `key` is its store key, and `rawRows(instance)`
 * returns every row the backend keeps for `instance` as `[id, value]` pairs
 * of what is really on the server, for the plaintext check.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StoreKeyMismatch, openStore } from '../../src/store.js';
import { newInstanceKey, newStoreKey } from './bridge.js';

const PHONE = '6281234567890';

export function serverStoreBehaviour({ spec, key, rawRows }) {
  test('values read back with the key, across a reopen', async () => {
    const instance = newInstanceKey();
    let store = await openStore(spec, key);
    await store.setCreds(instance, '{"a":1}');
    await store.setKeys(instance, [
      { type: 'pre-key', id: '1', value: '"one"' },
      { type: 'pre-key', id: '2', value: '"two"' },
      { type: 'session', id: '1', value: '"not a pre-key"' },
    ]);
    await store.setCreds(instance, '{"a":2}');
    await store.close();
    store = await openStore(spec, key);
    assert.equal(await store.getCreds(instance), '{"a":2}', 'the second write replaced the first');
    const { values, unreadable } = await store.getKeys(instance, 'pre-key', ['1', '2', '3']);
    assert.deepEqual(Object.fromEntries(values), { 1: '"one"', 2: '"two"' });
    assert.deepEqual(unreadable, []);
    await store.setKeys(instance, [{ type: 'pre-key', id: '1', value: null }]);
    assert.deepEqual([...(await store.getKeys(instance, 'pre-key', ['1', '2'])).values.keys()], ['2']);
    assert.equal(await store.getCreds(newInstanceKey()), null, 'instances do not share rows');
    await store.close();
  });

  test('the server holds none of the plaintext: credentials, key ids, message ids, tokens', async () => {
    const instance = newInstanceKey();
    const store = await openStore(spec, key);
    const marker = 'PLAINTEXT-MARKER-7f3a';
    await store.setCreds(instance, JSON.stringify({ marker, me: { id: `${PHONE}@s.whatsapp.net` } }));
    await store.setKeys(instance, [{ type: 'session', id: `${PHONE}.0`, value: JSON.stringify({ marker }) }]);
    await store.putSent(instance, 'campaign-42-msg-0001', { wa_id: '3EB0AAAABBBBCCCCDDDDEE', state: 'acked', to: `+${PHONE}` });
    const token = 'tok-SECRET-do-not-store';
    assert.equal(await store.bindToken(instance, token), 'bound');
    assert.match(await store.getCreds(instance), new RegExp(marker), 'it was written, and reads back with the key');
    await store.close();
    const rows = await rawRows(instance);
    assert.equal(rows.length, 5, 'creds, one key, the dedupe record and its reverse index, the token');
    const raw = Buffer.concat(rows.flatMap(([id, value]) => [Buffer.from(id), value]));
    for (const plain of [marker, PHONE, 'campaign-42-msg-0001', '3EB0AAAABBBBCCCCDDDDEE', token, 'session']) {
      assert.equal(raw.includes(plain), false, `the server holds ${plain}`);
    }
  });

  test('opening with another key is refused, and the store is left as it was', async () => {
    const instance = newInstanceKey();
    const store = await openStore(spec, key);
    await store.setCreds(instance, '{"kept":true}');
    await store.close();
    await assert.rejects(openStore(spec, Buffer.from(newStoreKey(), 'hex')), StoreKeyMismatch);
    const again = await openStore(spec, key);
    assert.equal(await again.getCreds(instance), '{"kept":true}');
    await again.close();
  });

  test('the instance token is bound on first sight, and another token is refused', async () => {
    const store = await openStore(spec, key);
    const instance = newInstanceKey();
    assert.equal(await store.bindToken(instance, 'first-token'), 'bound');
    assert.equal(await store.bindToken(instance, 'first-token'), 'match');
    assert.equal(await store.bindToken(instance, 'other-token'), 'mismatch');
    assert.equal(await store.bindToken(newInstanceKey(), 'other-token'), 'bound', 'each instance binds its own');
    await store.close();
  });

  test('deleting the credentials keeps the dedupe map and the token', async () => {
    const store = await openStore(spec, key);
    const instance = newInstanceKey();
    await store.setCreds(instance, '{}');
    await store.setKeys(instance, [{ type: 'session', id: 'x', value: '1' }]);
    await store.putSent(instance, 'm1', { wa_id: '3EB0X', state: 'acked' });
    await store.bindToken(instance, 'tok');
    await store.deleteCredentials(instance);
    assert.equal(await store.getCreds(instance), null);
    assert.equal((await store.getKeys(instance, 'session', ['x'])).values.size, 0);
    assert.deepEqual(await store.getSent(instance, 'm1'), { wa_id: '3EB0X', state: 'acked' });
    assert.equal(await store.clientIdFor(instance, '3EB0X'), 'm1');
    await store.deleteSent(instance, 'm1', '3EB0X');
    assert.equal(await store.getSent(instance, 'm1'), null);
    assert.equal(await store.clientIdFor(instance, '3EB0X'), null);
    assert.equal(await store.bindToken(instance, 'tok'), 'match');
    await store.close();
  });
}
