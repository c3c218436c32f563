import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { DEFAULT_CONNECTION_CONFIG } from 'baileys';
import { ConfigError, loadConfig } from '../src/config.js';
import { newStoreKey, runBridge, startBridge, tempDir } from './support/bridge.js';

const KEY_HEX = 'ab'.repeat(32);

function load(env) {
  return loadConfig({ BRIDGE_STORE_KEY: KEY_HEX, ...env }, '/srv/blast');
}

function rejects(env, variable, pattern) {
  assert.throws(
    () => load(env),
    (err) => err instanceof ConfigError && err.variable === variable && pattern.test(err.message) && err.message.startsWith(`${variable}: `),
  );
}

describe('settings from the environment', () => {
  test('the defaults run one bridge on this machine', () => {
    const config = load({});
    assert.equal(config.port, 8766);
    assert.equal(config.host, '127.0.0.1');
    assert.deepEqual(config.store, { kind: 'sqlite', path: '/srv/blast/.bridge/bridge.sqlite3' });
    assert.equal(config.waUrl, DEFAULT_CONNECTION_CONFIG.waWebSocketUrl);
    assert.equal(config.waConnectTimeoutMs, DEFAULT_CONNECTION_CONFIG.connectTimeoutMs);
    assert.equal(config.logLevel, 'info');
    assert.deepEqual(config.storeKey, Buffer.from(KEY_HEX, 'hex'));
  });

  test('values given are read', () => {
    const config = load({
      BRIDGE_PORT: '0',
      BRIDGE_HOST: '0.0.0.0',
      BRIDGE_STORE: 'sqlite:/var/lib/bridge/state.db',
      BRIDGE_WA_URL: 'ws://127.0.0.1:9/ws/chat',
      BRIDGE_WA_CONNECT_TIMEOUT_S: '1.5',
      BRIDGE_LOG_LEVEL: 'debug',
    });
    assert.equal(config.port, 0);
    assert.equal(config.host, '0.0.0.0');
    assert.equal(config.store.path, '/var/lib/bridge/state.db');
    assert.equal(config.waUrl, 'ws://127.0.0.1:9/ws/chat');
    assert.equal(config.waConnectTimeoutMs, 1500);
    assert.equal(config.logLevel, 'debug');
  });

  test('a relative sqlite path is relative to the working directory', () => {
    assert.equal(load({ BRIDGE_STORE: 'sqlite:state/b.db' }).store.path, path.resolve('/srv/blast', 'state/b.db'));
  });

  test('a postgres:// or postgresql:// store is a PostgreSQL database, shown without its password', () => {
    const url = 'postgres://bridge:s3cret@db.internal:5433/blast_bridge?sslmode=require';
    assert.deepEqual(load({ BRIDGE_STORE: url }).store, {
      kind: 'postgres',
      url,
      path: 'postgres://bridge@db.internal:5433/blast_bridge',
    });
    const other = load({ BRIDGE_STORE: 'postgresql://postgres@127.0.0.1/bridge' }).store;
    assert.equal(other.kind, 'postgres');
    assert.equal(other.url, 'postgresql://postgres@127.0.0.1/bridge');
  });

  test('a redis:// or rediss:// store is a Redis database, shown without its password', () => {
    const url = 'rediss://bridge:s3cret@cache.internal:6380/3';
    assert.deepEqual(load({ BRIDGE_STORE: url }).store, { kind: 'redis', url, path: 'rediss://bridge@cache.internal:6380/3' });
    const passwordOnly = 'redis://:s3cret@127.0.0.1:6379/0';
    assert.deepEqual(load({ BRIDGE_STORE: passwordOnly }).store, { kind: 'redis', url: passwordOnly, path: 'redis://127.0.0.1:6379/0' });
  });

  test('the store key may be base64, standard or URL-safe', () => {
    const key = Buffer.from(KEY_HEX, 'hex');
    assert.deepEqual(load({ BRIDGE_STORE_KEY: key.toString('base64') }).storeKey, key);
    assert.deepEqual(load({ BRIDGE_STORE_KEY: key.toString('base64url') }).storeKey, key);
  });

  test('bad values are refused, naming the variable', () => {
    rejects({ BRIDGE_PORT: 'http' }, 'BRIDGE_PORT', /integer 0-65535/);
    rejects({ BRIDGE_PORT: '65536' }, 'BRIDGE_PORT', /integer 0-65535/);
    rejects({ BRIDGE_PORT: '-1' }, 'BRIDGE_PORT', /integer 0-65535/);
    rejects({ BRIDGE_HOST: 'a b' }, 'BRIDGE_HOST', /host name/);
    rejects({ BRIDGE_STORE: 'sqlite:' }, 'BRIDGE_STORE', /file path/);
    rejects(
      { BRIDGE_STORE: 'mysql://db/bridge' },
      'BRIDGE_STORE',
      /must be sqlite:PATH, postgres:\/\/USER@HOST:PORT\/DB or redis:\/\/HOST:PORT\/DB, got "mysql:\.\.\."/,
    );
    rejects({ BRIDGE_STORE: 'redis://:s3cret@cache:notaport/0' }, 'BRIDGE_STORE', /^(?!.*s3cret).*not a valid URL: expected redis:/);
    rejects({ BRIDGE_STORE: 'postgres://bridge:s3cret@db:notaport/bridge' }, 'BRIDGE_STORE', /^(?!.*s3cret).*not a valid URL/);
    rejects({ BRIDGE_WA_URL: 'https://web.whatsapp.com/ws/chat' }, 'BRIDGE_WA_URL', /ws:\/\/ or wss:\/\//);
    rejects({ BRIDGE_WA_URL: 'not a url' }, 'BRIDGE_WA_URL', /ws:\/\/ or wss:\/\//);
    rejects({ BRIDGE_WA_CONNECT_TIMEOUT_S: '0' }, 'BRIDGE_WA_CONNECT_TIMEOUT_S', /seconds/);
    rejects({ BRIDGE_WA_CONNECT_TIMEOUT_S: 'soon' }, 'BRIDGE_WA_CONNECT_TIMEOUT_S', /seconds/);
    rejects({ BRIDGE_LOG_LEVEL: 'loud' }, 'BRIDGE_LOG_LEVEL', /one of fatal, error/);
    rejects({ BRIDGE_WA_LOG_LEVEL: 'loud' }, 'BRIDGE_WA_LOG_LEVEL', /one of fatal, error/);
  });

  test('the store key is required and never echoed when malformed', () => {
    assert.throws(() => loadConfig({}, '/'), (err) => err.variable === 'BRIDGE_STORE_KEY' && /is required/.test(err.message));
    const secretish = 'correct horse battery staple';
    assert.throws(
      () => load({ BRIDGE_STORE_KEY: secretish }),
      (err) => err.variable === 'BRIDGE_STORE_KEY' && /32 bytes/.test(err.message) && !err.message.includes('horse'),
    );
    rejects({ BRIDGE_STORE_KEY: 'ab'.repeat(31) }, 'BRIDGE_STORE_KEY', /32 bytes/);
    rejects({ BRIDGE_STORE_KEY: Buffer.alloc(16).toString('base64') }, 'BRIDGE_STORE_KEY', /32 bytes/);
  });
});

describe('the process with bad settings', () => {
  test('a bad BRIDGE_PORT exits 2 with one line naming it', async () => {
    const { code, stdout, stderr } = await runBridge({ BRIDGE_PORT: 'eighty', BRIDGE_STORE_KEY: newStoreKey() });
    assert.equal(code, 2);
    assert.equal(stderr, 'BRIDGE_PORT: must be an integer 0-65535 (0 picks a free port), got "eighty"\n');
    assert.equal(stdout, '');
  });

  test('a missing BRIDGE_STORE_KEY exits 2 with one line naming it', async () => {
    const { code, stderr } = await runBridge({ BRIDGE_PORT: '0' });
    assert.equal(code, 2);
    assert.match(stderr, /^BRIDGE_STORE_KEY: is required: 32 random bytes as 64 hex digits or base64.*\n$/);
  });

  test('a store key that does not open the existing store exits 2 and leaves the store as it was', async () => {
    const dir = tempDir();
    const store = `sqlite:${path.join(dir, 'b.sqlite3')}`;
    const bridge = await startBridge({ BRIDGE_STORE: store });
    assert.equal(await bridge.stop(), 0);
    const { code, stderr } = await runBridge({ BRIDGE_PORT: '0', BRIDGE_STORE: store, BRIDGE_STORE_KEY: newStoreKey() });
    assert.equal(code, 2);
    assert.match(stderr, /^BRIDGE_STORE_KEY: does not open the store at .*b\.sqlite3 \(it was written with another key\)\n$/);
    const again = await startBridge({ BRIDGE_STORE: store, BRIDGE_STORE_KEY: bridge.env.BRIDGE_STORE_KEY });
    assert.equal(await again.stop(), 0);
  });

  test('BRIDGE_PORT=0 listens on a free port and says which', async () => {
    const bridge = await startBridge({ BRIDGE_PORT: '0' });
    try {
      assert.ok(bridge.port > 0);
      assert.deepEqual(await bridge.health(), { status: 'ok', sessions: 0, malformed_received: 0 });
    } finally {
      assert.equal(await bridge.stop(), 0);
    }
  });
});
