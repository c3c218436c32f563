/**
 * The store on a real Redis server: BRIDGE_TEST_REDIS_URL, or the local one.
 * The tests claim a logical database of their own (an empty one, taken with
 * SET NX so that two runs never share it), since the bridge's keys have a
 * fixed prefix, and delete their keys at the end; without a reachable server,
 * or with no empty database, they are skipped, saying so.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { commandOptions, createClient } from 'redis';
import { StoreKeyMismatch, openStore } from '../src/store.js';
import { newInstanceKey, newStoreKey, runBridge } from './support/bridge.js';

const SERVER_URL = process.env.BRIDGE_TEST_REDIS_URL || 'redis://127.0.0.1:6379/0';
const PHONE = '6281234567890';
/** Marks a database as this run's; expires on its own if the run dies. */
const CLAIM_KEY = 'blast-bridge-test:claim';
const CLAIM_TTL_S = 600;

function urlOf(db) {
  const url = new URL(SERVER_URL);
  url.pathname = `/${db}`;
  return url.toString();
}

/** A client on database `db`, connected (failing at once if the server is away). */
async function connect(db) {
  const client = createClient({ url: urlOf(db), socket: { connectTimeout: 3000, reconnectStrategy: false } });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** `{ db, client }` of an empty database claimed for this run, or `{ skip }` saying why not. */
async function claimDatabase() {
  let client;
  try {
    client = await connect(0);
  } catch (err) {
    return { skip: `no Redis at ${SERVER_URL} (${err.message}); set BRIDGE_TEST_REDIS_URL to a server where the tests may use an empty database` };
  }
  const claim = randomBytes(8).toString('hex');
  for (let db = 15; db >= 1; db -= 1) {
    try {
      await client.select(db);
    } catch {
      continue; // the server has fewer databases
    }
    if (!(await client.set(CLAIM_KEY, claim, { NX: true, EX: CLAIM_TTL_S }))) continue;
    if ((await client.dbSize()) === 1) return { db, client };
    await client.del(CLAIM_KEY);
  }
  await client.quit();
  return { skip: `no empty database (1-15) on the Redis at ${SERVER_URL} for the tests to use` };
}

const claimed = await claimDatabase();

/** Every key and value under the bridge's prefix for `instance`, as one Buffer. */
async function rawRows(client, instance) {
  const fields = [];
  for await (const key of client.scanIterator({ MATCH: `blast-bridge:${instance}:*` })) {
    const hash = await client.hGetAll(commandOptions({ returnBuffers: true }), key);
    for (const [field, value] of Object.entries(hash)) fields.push([field, value]);
  }
  return fields;
}

describe('the store on Redis', { skip: claimed.skip ?? false }, () => {
  const { db, client } = claimed;
  const spec = { kind: 'redis', url: urlOf(db) };
  const key = Buffer.from(newStoreKey(), 'hex');

  after(async () => {
    const keys = [];
    for await (const found of client.scanIterator({ MATCH: 'blast-bridge:*' })) keys.push(found);
    if (keys.length) await client.del(keys);
    await client.del(CLAIM_KEY);
    await client.quit();
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

  test('the database holds none of the plaintext: credentials, key ids, message ids, tokens', async () => {
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
    const rows = await rawRows(client, instance);
    assert.equal(rows.length, 5, 'creds, one key, the dedupe record and its reverse index, the token');
    const raw = Buffer.concat(rows.flatMap(([field, value]) => [Buffer.from(field), value]));
    for (const plain of [marker, PHONE, 'campaign-42-msg-0001', '3EB0AAAABBBBCCCCDDDDEE', token, 'session']) {
      assert.equal(raw.includes(plain), false, `the database contains ${plain}`);
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
    const { code, stderr } = await runBridge({ BRIDGE_PORT: '0', BRIDGE_STORE: url.toString(), BRIDGE_STORE_KEY: newStoreKey() });
    assert.equal(code, 2);
    assert.match(stderr, new RegExp(`^BRIDGE_STORE_KEY: does not open the store at redis[s]?://[^ ]*/${db} \\(it was written with another key\\)\\n$`));
    if (url.password) assert.equal(stderr.includes(url.password), false);
  });

  test('the bridge exits 2 when the server cannot be reached, without echoing the password', async () => {
    const { code, stderr } = await runBridge({
      BRIDGE_PORT: '0',
      BRIDGE_STORE: 'redis://:s3cret@127.0.0.1:1/0',
      BRIDGE_STORE_KEY: newStoreKey(),
    });
    assert.equal(code, 2);
    assert.match(stderr, /^BRIDGE_STORE: cannot open redis:\/\/127\.0\.0\.1:1\/0: .*\n$/);
    assert.equal(stderr.includes('s3cret'), false);
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
