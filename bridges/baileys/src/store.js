/**
 * The bridge's persistent state, encrypted at rest.
 *
 * Per instance it keeps: Baileys' credentials, the Signal keys (typed ids, as
 * Baileys' `SignalKeyStore` asks for them), the dedupe map from the
 * platform's client message id to WhatsApp's message id and its ack state
 * (with the reverse index that turns a receipt back into a client id), and
 * the hash of the instance token (bound on first sight).
 *
 * Every value is sealed with AES-256-GCM under a key derived from
 * BRIDGE_STORE_KEY, with a random 96-bit nonce per write and the row's
 * address as associated data (so a value cannot be moved to another row).
 * Row ids (phone numbers in Signal session ids, message ids) are replaced by
 * an HMAC, so the file holds no phone number either; the empty id of the
 * one-per-instance rows (credentials, token) stays empty, which is what lets
 * a wrong key show up as unreadable credentials instead of missing ones.
 *
 * The backend (`store/sqlite.js`, `store/postgres.js` or `store/redis.js`)
 * only stores opaque rows; `openStore` picks it from the configured URL and checks the key
 * against a sealed marker, so a wrong BRIDGE_STORE_KEY stops the bridge at
 * start instead of reading as "every pairing is corrupt".
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { PostgresBackend } from './store/postgres.js';
import { RedisBackend } from './store/redis.js';
import { SqliteBackend } from './store/sqlite.js';

const FORMAT = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const CHECK_TEXT = 'blast-bridge store key check';

/** Row kinds. `key` holds every Signal key type (the type is part of the hashed id). */
const KIND = { check: 'check', creds: 'creds', key: 'key', sent: 'sent', wa: 'wa', token: 'token' };
/** What a logout deletes: the pairing, not the dedupe map or the token. */
const CREDENTIAL_KINDS = [KIND.creds, KIND.key];

/** A stored value that does not decrypt (wrong key, tampering, corruption). */
export class UnreadableValue extends Error {}
/** BRIDGE_STORE_KEY does not open the store it is configured with. */
export class StoreKeyMismatch extends Error {}

function subkey(master, purpose) {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), `blast-bridge/${purpose}`, 32));
}

export class Store {
  /** The typed, encrypted store over `backend` with the 32-byte `masterKey`. */
  constructor(backend, masterKey) {
    if (!Buffer.isBuffer(masterKey) || masterKey.length !== 32) throw new TypeError('store key must be 32 bytes');
    this.backend = backend;
    this.valueKey = subkey(masterKey, 'value');
    this.idKey = subkey(masterKey, 'id');
  }

  // sealing

  rowId(kind, id) {
    return id === '' ? '' : createHmac('sha256', this.idKey).update(`${kind}\0${id}`).digest('base64url');
  }

  seal(instance, kind, rowId, text) {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.valueKey, nonce);
    cipher.setAAD(Buffer.from(`${instance}\0${kind}\0${rowId}`));
    const body = Buffer.concat([cipher.update(text, 'utf8'), cipher.final()]);
    return Buffer.concat([Buffer.from([FORMAT]), nonce, cipher.getAuthTag(), body]);
  }

  unseal(instance, kind, rowId, blob) {
    try {
      if (blob[0] !== FORMAT) throw new Error(`unknown format ${blob[0]}`);
      const nonce = blob.subarray(1, 1 + NONCE_BYTES);
      const tag = blob.subarray(1 + NONCE_BYTES, 1 + NONCE_BYTES + TAG_BYTES);
      const decipher = createDecipheriv('aes-256-gcm', this.valueKey, nonce);
      decipher.setAAD(Buffer.from(`${instance}\0${kind}\0${rowId}`));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(blob.subarray(1 + NONCE_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch (err) {
      throw new UnreadableValue(`${kind} value does not decrypt: ${err.message}`);
    }
  }

  async read(instance, kind, id) {
    const rowId = this.rowId(kind, id);
    const found = await this.backend.getMany(instance, kind, [rowId]);
    return found.has(rowId) ? this.unseal(instance, kind, rowId, found.get(rowId)) : null;
  }

  op(instance, kind, id, text) {
    const rowId = this.rowId(kind, id);
    return { kind, id: rowId, value: text === null ? null : this.seal(instance, kind, rowId, text) };
  }

  // the key check

  /** Throws `StoreKeyMismatch` unless the store was written with this key (marks a new store). */
  async checkKey() {
    const op = this.op('', KIND.check, '', CHECK_TEXT);
    if (await this.backend.insertIfAbsent('', KIND.check, '', op.value)) return;
    let text;
    try {
      text = await this.read('', KIND.check, '');
    } catch {
      text = null;
    }
    if (text !== CHECK_TEXT) throw new StoreKeyMismatch('BRIDGE_STORE_KEY does not open this store (it was written with another key)');
  }

  // credentials and keys

  /** The serialised credentials, or null; throws `UnreadableValue`. */
  async getCreds(instance) {
    return this.read(instance, KIND.creds, '');
  }

  async setCreds(instance, json) {
    await this.backend.apply(instance, [this.op(instance, KIND.creds, '', json)]);
  }

  /**
   * The serialised Signal keys of `type` among `ids`: `{ values: Map(id -> json),
   * unreadable: [id] }`. A key that does not decrypt is reported, not thrown.
   */
  async getKeys(instance, type, ids) {
    const rowIds = new Map(ids.map((id) => [this.rowId(KIND.key, `${type}\0${id}`), id]));
    const found = await this.backend.getMany(instance, KIND.key, [...rowIds.keys()]);
    const values = new Map();
    const unreadable = [];
    for (const [rowId, blob] of found) {
      const id = rowIds.get(rowId);
      try {
        values.set(id, this.unseal(instance, KIND.key, rowId, blob));
      } catch {
        unreadable.push(id);
      }
    }
    return { values, unreadable };
  }

  /** Writes `[{type, id, value: json | null}]` in one transaction (null deletes). */
  async setKeys(instance, entries) {
    const ops = entries.map(({ type, id, value }) => this.op(instance, KIND.key, `${type}\0${id}`, value));
    if (ops.length) await this.backend.apply(instance, ops);
  }

  /** Deletes the credentials and every Signal key of `instance` (logout, 401, corrupt). */
  async deleteCredentials(instance) {
    await this.backend.deleteAll(instance, CREDENTIAL_KINDS);
  }

  // the dedupe map

  /** The record `{wa_id, state, ...}` of client message `clientId`, or null. */
  async getSent(instance, clientId) {
    const text = await this.read(instance, KIND.sent, clientId);
    return text === null ? null : JSON.parse(text);
  }

  /** Stores `record` for `clientId` and the reverse index from its `wa_id`, atomically. */
  async putSent(instance, clientId, record) {
    await this.backend.apply(instance, [
      this.op(instance, KIND.sent, clientId, JSON.stringify(record)),
      this.op(instance, KIND.wa, record.wa_id, clientId),
    ]);
  }

  /** Forgets client message `clientId` (a send that never left), so its id may be sent again. */
  async deleteSent(instance, clientId, waId) {
    await this.backend.apply(instance, [this.op(instance, KIND.sent, clientId, null), this.op(instance, KIND.wa, waId, null)]);
  }

  /** The client id that WhatsApp message `waId` was sent for, or null. */
  async clientIdFor(instance, waId) {
    return this.read(instance, KIND.wa, waId);
  }

  // the instance token

  /**
   * Binds `token` to `instance` on first sight: 'bound' (first sight), 'match'
   * or 'mismatch'. Only its SHA-256 is kept, compared in constant time.
   */
  async bindToken(instance, token) {
    const digest = createHash('sha256').update(token, 'utf8').digest();
    const op = this.op(instance, KIND.token, '', digest.toString('hex'));
    if (await this.backend.insertIfAbsent(instance, KIND.token, '', op.value)) return 'bound';
    const stored = Buffer.from((await this.read(instance, KIND.token, '')) ?? '', 'hex');
    return stored.length === digest.length && timingSafeEqual(stored, digest) ? 'match' : 'mismatch';
  }

  async close() {
    await this.backend.close();
  }
}

/** How each kind of store spec is opened; an opener may return a promise. */
const BACKENDS = {
  sqlite: (spec) => new SqliteBackend(spec.path),
  postgres: (spec) => PostgresBackend.open(spec.url),
  redis: (spec) => RedisBackend.open(spec.url),
};

/** The store of `spec` (from config: `{kind, ...}`) opened with `masterKey`, key checked. */
export async function openStore(spec, masterKey) {
  const open = BACKENDS[spec.kind];
  if (!open) throw new Error(`no store backend for ${spec.kind}`);
  const store = new Store(await open(spec), masterKey);
  try {
    await store.checkKey();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}
