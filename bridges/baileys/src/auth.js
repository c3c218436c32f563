/**
 * Baileys' `AuthenticationState` for one instance, backed by the store.
 *
 * Like Baileys' `useMultiFileAuthState`, values are serialised with
 * `BufferJSON` and app-state sync keys are revived as protobuf objects, but
 * they live in the encrypted store instead of one file per key.
 *
 * `credentialsCorrupt` is true when the stored credentials (or a Signal key)
 * exist but do not decrypt or parse: only then may a Baileys 500 be read as a
 * bad session (codes.js). A pairing that never completed is not resumed:
 * credentials without an account (a QR never scanned, a pairing code never
 * entered) are discarded and the session starts from fresh ones, because
 * Baileys would otherwise try to log in with the half-set `me` of an
 * unfinished pairing-code request.
 */
import { BufferJSON, initAuthCreds, proto } from 'baileys';
import { e164FromJid } from './protocol.js';

/** Whether `creds` hold a completed pairing. */
export function isPaired(creds) {
  return Boolean(creds?.me?.id && creds?.account);
}

/** The E.164 number of the paired account of `creds`, or null. */
export function accountOf(creds) {
  return e164FromJid(creds?.me?.id);
}

function serialise(value) {
  return JSON.stringify(value, BufferJSON.replacer);
}

function revive(json) {
  return JSON.parse(json, BufferJSON.reviver);
}

export class InstanceAuth {
  constructor(store, instance, creds, { corrupt, log }) {
    this.store = store;
    this.instance = instance;
    this.log = log;
    this.corrupt = corrupt;
    this.deleted = false;
    this.writes = Promise.resolve();
    this.state = { creds, keys: this.keyStore() };
  }

  /** True once stored credentials or keys were found unreadable. */
  get credentialsCorrupt() {
    return this.corrupt;
  }

  /** Whether the credentials in use hold a completed pairing. */
  get paired() {
    return isPaired(this.state.creds);
  }

  keyStore() {
    return {
      get: async (type, ids) => {
        const { values, unreadable } = await this.store.getKeys(this.instance, type, ids);
        if (unreadable.length) {
          this.corrupt = true;
          this.log.error({ instance: this.instance, type, count: unreadable.length }, 'KEYS-UNREADABLE');
        }
        const found = {};
        for (const [id, json] of values) {
          const value = revive(json);
          found[id] = type === 'app-state-sync-key' ? proto.Message.AppStateSyncKeyData.fromObject(value) : value;
        }
        return found;
      },
      set: async (data) => {
        const entries = [];
        for (const type of Object.keys(data)) {
          for (const [id, value] of Object.entries(data[type])) {
            entries.push({ type, id, value: value ? serialise(value) : null });
          }
        }
        await this.queue(() => this.store.setKeys(this.instance, entries));
      },
    };
  }

  /** Runs store writes one after another, and none after the credentials were deleted. */
  queue(write) {
    const next = this.writes.then(() => (this.deleted ? undefined : write()));
    this.writes = next.catch(() => {});
    return next;
  }

  /** Persists the current credentials (Baileys' `creds.update`). */
  saveCreds() {
    const json = serialise(this.state.creds);
    return this.queue(() => this.store.setCreds(this.instance, json));
  }

  /** Deletes the stored pairing; later writes of this session are dropped. */
  async deleteCredentials() {
    this.deleted = true;
    await this.writes;
    await this.store.deleteCredentials(this.instance);
  }
}

/** The auth state of `instance`: stored credentials, or fresh ones. */
export async function loadAuth(store, instance, log) {
  let creds = null;
  let corrupt = false;
  try {
    const json = await store.getCreds(instance);
    creds = json === null ? null : revive(json);
    if (creds !== null && (typeof creds !== 'object' || !creds.noiseKey || !creds.signedIdentityKey)) {
      throw new Error('credentials lack their keys');
    }
  } catch (err) {
    corrupt = true;
    creds = null;
    log.error({ instance, reason: err.message }, 'CREDS-UNREADABLE');
  }
  if (creds !== null && !isPaired(creds)) {
    log.info({ instance }, 'UNFINISHED-PAIRING discarded');
    await store.deleteCredentials(instance);
    creds = null;
  }
  return new InstanceAuth(store, instance, creds ?? initAuthCreds(), { corrupt, log });
}
