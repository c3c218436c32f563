/**
 * The store on a real PostgreSQL server: BRIDGE_TEST_DATABASE_URL, or the
 * local one (trust auth). The tests create a database of their own, with a
 * random name, and drop it at the end; without a reachable server they are
 * skipped, saying so.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { StoreKeyMismatch, openStore } from '../src/store.js';
import { newInstanceKey, newStoreKey, runBridge } from './support/bridge.js';

const SERVER_URL = process.env.BRIDGE_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const PHONE = '6281234567890';

/** Why the tests cannot run here, or null when the server answers. */
async function unreachable() {
  const client = new pg.Client({ connectionString: SERVER_URL, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (err) {
    return `no PostgreSQL at ${SERVER_URL} (${err.message}); set BRIDGE_TEST_DATABASE_URL to a server where the tests may create a database`;
  } finally {
    await client.end().catch(() => {});
  }
}

/** `sql` run on the server's own database (CREATE and DROP DATABASE cannot run in the one they name). */
async function onServer(sql) {
  const client = new pg.Client({ connectionString: SERVER_URL });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

function urlOf(database) {
  const url = new URL(SERVER_URL);
  url.pathname = `/${database}`;
  return url.toString();
}

const skip = await unreachable();

describe('the store on PostgreSQL', { skip: skip ?? false }, () => {
  const database = `bridge_test_${randomBytes(6).toString('hex')}`;
  const spec = { kind: 'postgres', url: urlOf(database) };
  const key = Buffer.from(newStoreKey(), 'hex');
  let db;

  before(async () => {
    await onServer(`CREATE DATABASE ${database}`);
    db = new pg.Client({ connectionString: spec.url });
    await db.connect();
  });

  after(async () => {
    await db?.end();
    await onServer(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  });

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

  test('the table holds none of the plaintext: credentials, key ids, message ids, tokens', async () => {
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
    const { rows } = await db.query('SELECT id, value FROM bridge_entries WHERE instance = $1', [instance]);
    assert.equal(rows.length, 5, 'creds, one key, the dedupe record and its reverse index, the token');
    const raw = Buffer.concat(rows.flatMap((row) => [Buffer.from(row.id), row.value]));
    for (const plain of [marker, PHONE, 'campaign-42-msg-0001', '3EB0AAAABBBBCCCCDDDDEE', token, 'session']) {
      assert.equal(raw.includes(plain), false, `the table contains ${plain}`);
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

  test('the bridge started with another key exits 2, naming the database without its password', async () => {
    const url = new URL(spec.url);
    url.password ||= 'not-needed-with-trust';
    const { code, stderr } = await runBridge({ BRIDGE_PORT: '0', BRIDGE_STORE: url.toString(), BRIDGE_STORE_KEY: newStoreKey() });
    assert.equal(code, 2);
    assert.match(stderr, new RegExp(`^BRIDGE_STORE_KEY: does not open the store at postgres://[^ ]*/${database} \\(it was written with another key\\)\\n$`));
    assert.equal(stderr.includes(url.password), false);
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
});
