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
import { newStoreKey, runBridge } from './support/bridge.js';
import { serverStoreBehaviour } from './support/store-behaviour.js';

const SERVER_URL = process.env.BRIDGE_TEST_REDIS_URL || 'redis://127.0.0.1:6379/0';
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

  serverStoreBehaviour({ spec, key, rawRows: (instance) => rawRows(client, instance) });

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
});
