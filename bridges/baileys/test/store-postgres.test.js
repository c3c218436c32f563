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
import { newStoreKey, runBridge } from './support/bridge.js';
import { serverStoreBehaviour } from './support/store-behaviour.js';

const SERVER_URL = process.env.BRIDGE_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

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

  serverStoreBehaviour({
    spec,
    key,
    rawRows: async (instance) => {
      const { rows } = await db.query('SELECT id, value FROM bridge_entries WHERE instance = $1', [instance]);
      return rows.map((row) => [row.id, row.value]);
    },
  });

  test('the bridge started with another key exits 2, naming the database without its password', async () => {
    const url = new URL(spec.url);
    url.password ||= 'not-needed-with-trust';
    const { code, stderr } = await runBridge({ BRIDGE_PORT: '0', BRIDGE_STORE: url.toString(), BRIDGE_STORE_KEY: newStoreKey() });
    assert.equal(code, 2);
    assert.match(stderr, new RegExp(`^BRIDGE_STORE_KEY: does not open the store at postgres://[^ ]*/${database} \\(it was written with another key\\)\\n$`));
    assert.equal(stderr.includes(url.password), false);
  });
});
