import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { BufferJSON, initAuthCreds } from 'baileys';
import pino from 'pino';
import { loadAuth } from '../src/auth.js';
import { Store, StoreKeyMismatch, openStore } from '../src/store.js';
import { SqliteBackend } from '../src/store/sqlite.js';
import { newInstanceKey, newStoreKey, tempDir } from './support/bridge.js';

const log = pino({ level: 'silent' });
const PHONE = '6281234567890';

function keyOf(hex) {
  return Buffer.from(hex, 'hex');
}

function spec(dir) {
  return { kind: 'sqlite', path: path.join(dir, 'bridge.sqlite3') };
}

/** Every byte the database keeps on disk: the file and its WAL. */
function rawBytes(dir) {
  return Buffer.concat(fs.readdirSync(dir).map((name) => fs.readFileSync(path.join(dir, name))));
}

function pairedCreds() {
  const creds = initAuthCreds();
  creds.me = { id: `${PHONE}:7@s.whatsapp.net`, name: 'Toko Sinar' };
  creds.account = { details: Buffer.from('account-details'), accountSignatureKey: Buffer.alloc(32, 1) };
  return creds;
}

describe('the store, encrypted at rest', () => {
  test('the raw database holds none of the plaintext: credentials, key ids, message ids, tokens', async () => {
    const dir = tempDir();
    const instance = newInstanceKey();
    const store = await openStore(spec(dir), keyOf(newStoreKey()));
    const marker = 'PLAINTEXT-MARKER-7f3a';
    await store.setCreds(instance, JSON.stringify({ marker, me: { id: `${PHONE}@s.whatsapp.net` } }));
    await store.setKeys(instance, [{ type: 'session', id: `${PHONE}.0`, value: JSON.stringify({ marker }) }]);
    await store.putSent(instance, 'campaign-42-msg-0001', { wa_id: '3EB0AAAABBBBCCCCDDDDEE', state: 'acked', to: `+${PHONE}` });
    const token = 'tok-SECRET-do-not-store';
    assert.equal(await store.bindToken(instance, token), 'bound');
    assert.match(await store.getCreds(instance), new RegExp(marker), 'it was written, and reads back with the key');
    await store.close();
    const raw = rawBytes(dir);
    for (const plain of [marker, PHONE, 'campaign-42-msg-0001', '3EB0AAAABBBBCCCCDDDDEE', token, 'session']) {
      assert.equal(raw.includes(plain), false, `the database contains ${plain}`);
    }
  });

  test('the database file and its WAL are readable by their owner only, whatever the umask', async () => {
    const dir = tempDir();
    const before = process.umask(0o022);
    try {
      const store = await openStore(spec(dir), keyOf(newStoreKey()));
      await store.setCreds(newInstanceKey(), '{"a":1}');
      for (const name of fs.readdirSync(dir)) {
        assert.equal(fs.statSync(path.join(dir, name)).mode & 0o777, 0o600, name);
      }
      await store.close();
    } finally {
      process.umask(before);
    }
  });

  test('values read back with the key, across a reopen', async () => {
    const dir = tempDir();
    const key = keyOf(newStoreKey());
    const instance = newInstanceKey();
    let store = await openStore(spec(dir), key);
    await store.setCreds(instance, '{"a":1}');
    await store.setKeys(instance, [
      { type: 'pre-key', id: '1', value: '"one"' },
      { type: 'pre-key', id: '2', value: '"two"' },
      { type: 'session', id: '1', value: '"not a pre-key"' },
    ]);
    await store.close();
    store = await openStore(spec(dir), key);
    assert.equal(await store.getCreds(instance), '{"a":1}');
    const { values, unreadable } = await store.getKeys(instance, 'pre-key', ['1', '2', '3']);
    assert.deepEqual(Object.fromEntries(values), { 1: '"one"', 2: '"two"' });
    assert.deepEqual(unreadable, []);
    await store.setKeys(instance, [{ type: 'pre-key', id: '1', value: null }]);
    assert.deepEqual([...(await store.getKeys(instance, 'pre-key', ['1', '2'])).values.keys()], ['2']);
    assert.equal(await store.getCreds(newInstanceKey()), null, 'instances do not share rows');
    await store.close();
  });

  test('a value moved to another row does not decrypt', async () => {
    const dir = tempDir();
    const store = await openStore(spec(dir), keyOf(newStoreKey()));
    const [a, b] = [newInstanceKey(), newInstanceKey()];
    await store.setCreds(a, '{"who":"a"}');
    const db = store.backend.db;
    const row = db.prepare("SELECT value FROM entries WHERE instance = ? AND kind = 'creds'").get(a);
    db.prepare("INSERT INTO entries (instance, kind, id, value) VALUES (?, 'creds', '', ?)").run(b, row.value);
    await assert.rejects(store.getCreds(b), /does not decrypt/);
    await store.close();
  });

  test('opening with another key is refused, and the store is left as it was', async () => {
    const dir = tempDir();
    const key = keyOf(newStoreKey());
    const instance = newInstanceKey();
    const store = await openStore(spec(dir), key);
    await store.setCreds(instance, '{"kept":true}');
    await store.close();
    await assert.rejects(openStore(spec(dir), keyOf(newStoreKey())), StoreKeyMismatch);
    const again = await openStore(spec(dir), key);
    assert.equal(await again.getCreds(instance), '{"kept":true}');
    await again.close();
  });

  test('the instance token is bound on first sight, kept hashed, and another token is refused', async () => {
    const dir = tempDir();
    const store = await openStore(spec(dir), keyOf(newStoreKey()));
    const instance = newInstanceKey();
    assert.equal(await store.bindToken(instance, 'first-token'), 'bound');
    assert.equal(await store.bindToken(instance, 'first-token'), 'match');
    assert.equal(await store.bindToken(instance, 'other-token'), 'mismatch');
    assert.equal(await store.bindToken(instance, 'first-tokeN'), 'mismatch');
    assert.equal(await store.bindToken(newInstanceKey(), 'other-token'), 'bound', 'each instance binds its own');
    await store.close();
  });

  test('deleting the credentials keeps the dedupe map and the token', async () => {
    const dir = tempDir();
    const store = await openStore(spec(dir), keyOf(newStoreKey()));
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
    assert.equal(await store.bindToken(instance, 'tok'), 'match');
    await store.close();
  });
});

describe('the Baileys auth state over the store', () => {
  test('paired credentials round-trip with their Buffers, and keys are typed', async () => {
    const dir = tempDir();
    const store = await openStore(spec(dir), keyOf(newStoreKey()));
    const instance = newInstanceKey();
    const creds = pairedCreds();
    await store.setCreds(instance, JSON.stringify(creds, BufferJSON.replacer));
    const auth = await loadAuth(store, instance, log);
    assert.equal(auth.paired, true);
    assert.equal(auth.credentialsCorrupt, false);
    assert.ok(Buffer.isBuffer(auth.state.creds.noiseKey.private));
    assert.deepEqual(auth.state.creds.noiseKey.private, Buffer.from(creds.noiseKey.private));
    await auth.state.keys.set({ 'pre-key': { 5: { public: Buffer.alloc(32, 5), private: Buffer.alloc(32, 6) } } });
    await auth.state.keys.set({ 'app-state-sync-key': { AAA: { keyData: Buffer.alloc(4, 1), timestamp: 1 } } });
    const preKeys = await auth.state.keys.get('pre-key', ['5', '6']);
    assert.deepEqual(Object.keys(preKeys), ['5']);
    assert.deepEqual(preKeys['5'].private, Buffer.alloc(32, 6));
    const syncKey = (await auth.state.keys.get('app-state-sync-key', ['AAA'])).AAA;
    assert.equal(syncKey.constructor.name, 'AppStateSyncKeyData');
    await store.close();
  });

  test('no stored credentials: fresh, unpaired ones, not corrupt', async () => {
    const store = await openStore(spec(tempDir()), keyOf(newStoreKey()));
    const auth = await loadAuth(store, newInstanceKey(), log);
    assert.equal(auth.paired, false);
    assert.equal(auth.credentialsCorrupt, false);
    assert.ok(auth.state.creds.noiseKey);
    await store.close();
  });

  test('an unfinished pairing is discarded, not resumed', async () => {
    const store = await openStore(spec(tempDir()), keyOf(newStoreKey()));
    const instance = newInstanceKey();
    const half = initAuthCreds();
    half.me = { id: `${PHONE}@s.whatsapp.net`, name: '~' }; // what requestPairingCode leaves
    await store.setCreds(instance, JSON.stringify(half, BufferJSON.replacer));
    await store.setKeys(instance, [{ type: 'session', id: 'x', value: '1' }]);
    const auth = await loadAuth(store, instance, log);
    assert.equal(auth.paired, false);
    assert.equal(auth.state.creds.me, undefined);
    assert.equal(await store.getCreds(instance), null);
    assert.equal((await store.getKeys(instance, 'session', ['x'])).values.size, 0);
    await store.close();
  });

  test('credentials written under another key read as corrupt', async () => {
    const dir = tempDir();
    const instance = newInstanceKey();
    const backend = new SqliteBackend(spec(dir).path);
    const written = new Store(backend, keyOf(newStoreKey()));
    await written.setCreds(instance, JSON.stringify(pairedCreds(), BufferJSON.replacer));
    const other = new Store(backend, keyOf(newStoreKey()));
    const auth = await loadAuth(other, instance, log);
    assert.equal(auth.credentialsCorrupt, true);
    assert.equal(auth.paired, false);
    await backend.close();
  });

  test('credentials that decrypt but do not parse read as corrupt', async () => {
    const store = await openStore(spec(tempDir()), keyOf(newStoreKey()));
    const instance = newInstanceKey();
    await store.setCreds(instance, '{"truncated": ');
    assert.equal((await loadAuth(store, instance, log)).credentialsCorrupt, true);
    await store.setCreds(instance, '{"me": {"id": "1@s.whatsapp.net"}}');
    assert.equal((await loadAuth(store, instance, log)).credentialsCorrupt, true, 'credentials without their keys');
    await store.close();
  });

  test('a Signal key that does not decrypt marks the credentials corrupt and reads as missing', async () => {
    const dir = tempDir();
    const instance = newInstanceKey();
    const backend = new SqliteBackend(spec(dir).path);
    const key = keyOf(newStoreKey());
    const store = new Store(backend, key);
    await store.setCreds(instance, JSON.stringify(pairedCreds(), BufferJSON.replacer));
    await new Store(backend, keyOf(newStoreKey())).setKeys(instance, [{ type: 'session', id: 'x', value: '1' }]);
    // The row ids differ by key, so plant the foreign value under this key's id.
    const foreign = backend.db.prepare("SELECT value FROM entries WHERE instance = ? AND kind = 'key'").get(instance).value;
    backend.db.prepare("INSERT INTO entries VALUES (?, 'key', ?, ?)").run(instance, store.rowId('key', 'session\0x'), foreign);
    const auth = await loadAuth(store, instance, log);
    assert.equal(auth.credentialsCorrupt, false);
    assert.deepEqual(await auth.state.keys.get('session', ['x']), {});
    assert.equal(auth.credentialsCorrupt, true);
    await backend.close();
  });

  test('after deleting the credentials, late writes of the session are dropped', async () => {
    const store = await openStore(spec(tempDir()), keyOf(newStoreKey()));
    const instance = newInstanceKey();
    await store.setCreds(instance, JSON.stringify(pairedCreds(), BufferJSON.replacer));
    const auth = await loadAuth(store, instance, log);
    await auth.deleteCredentials();
    await auth.saveCreds();
    await auth.state.keys.set({ session: { y: { a: 1 } } });
    assert.equal(await store.getCreds(instance), null);
    assert.equal((await store.getKeys(instance, 'session', ['y'])).values.size, 0);
    await store.close();
  });
});
