/**
 * A bridge store holding a pairing made in the test process against the fake
 * WhatsApp, as a bridge that paired earlier would have left it.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import makeWASocket, { BufferJSON } from 'baileys';
import pino from 'pino';
import { openStore } from '../../src/store.js';
import { createMemoryAuthState } from '../fakewa/index.js';
import { newStoreKey, tempDir } from './bridge.js';

/**
 * Pairs a device with `wa` by QR (the test process must trust the fake's
 * root) and stores its credentials for `instance` in a fresh SQLite store.
 * `accountSyncCounter` 1 says the first history sync is behind it, so
 * Baileys does not hold events back for 20 s waiting for a history
 * notification the fake never sends. Resolves with the store's `spec` and
 * the bridge `env` that opens it.
 */
export async function pairedStore(wa, instance) {
  const auth = createMemoryAuthState();
  const sock = makeWASocket({ auth, waWebSocketUrl: wa.url, logger: pino({ level: 'silent' }) });
  let scanned = null;
  const closed = new Promise((resolve) => {
    sock.ev.on('connection.update', (update) => {
      if (update.qr && !scanned) scanned = wa.scanQr(update.qr);
      if (update.connection === 'close') resolve(update.lastDisconnect?.error?.output?.statusCode);
    });
  });
  assert.equal(await closed, 515);
  await scanned;
  auth.creds.accountSyncCounter = 1;
  const dir = tempDir();
  const storeKey = newStoreKey();
  const spec = { kind: 'sqlite', path: path.join(dir, 'bridge.sqlite3') };
  const store = await openStore(spec, Buffer.from(storeKey, 'hex'));
  await store.setCreds(instance, JSON.stringify(auth.creds, BufferJSON.replacer));
  await store.close();
  return { spec, env: { BRIDGE_STORE: `sqlite:${spec.path}`, BRIDGE_STORE_KEY: storeKey } };
}
