/**
 * The Redis backend of the store: the same opaque rows as the SQLite and
 * PostgreSQL backends, one hash per (instance, kind).
 *
 * A row is `(instance, kind, id) -> value`, where `value` is already sealed
 * by `store.js` and `id` already hashed; this module knows nothing of what
 * the rows mean. The hash `blast-bridge:<instance>:<kind>` holds the rows of
 * one instance and kind, field = id, because that makes every method one
 * round trip: `getMany` is one HMGET, `insertIfAbsent` one HSETNX,
 * `deleteAll` one DEL of a few hashes, and `apply` one MULTI/EXEC. The
 * prefix keeps the bridge's keys apart in a Redis that others share; kinds
 * never contain `:`, so a key names one (instance, kind) pair only.
 *
 * Durability is the server's: Redis must be configured to persist (AOF,
 * `appendonly yes`) for pairings to survive a Redis restart. Without it a
 * restarted Redis comes back empty, and every instance must pair again.
 */
import { commandOptions, createClient } from 'redis';

const PREFIX = 'blast-bridge:';
/** An unreachable server fails the start within this, instead of at the TCP timeout. */
const CONNECT_TIMEOUT_MS = 10000;
/** Once connected, a dropped connection is retried at most this far apart. */
const MAX_RECONNECT_DELAY_MS = 2000;
/** Values come back as the Buffers they were written as, not as strings. */
const AS_BUFFERS = commandOptions({ returnBuffers: true });

function keyOf(instance, kind) {
  return `${PREFIX}${instance}:${kind}`;
}

export class RedisBackend {
  /** Connects to the server at `url` (redis:// or rediss://, db in the path). */
  static async open(url) {
    const backend = new RedisBackend(url);
    await backend.client.connect();
    backend.connected = true;
    return backend;
  }

  constructor(url) {
    this.connected = false;
    this.client = createClient({
      url,
      // A command while the server is away fails at once (its caller reports
      // it) instead of waiting in a queue that a crash would lose.
      disableOfflineQueue: true,
      socket: {
        connectTimeout: CONNECT_TIMEOUT_MS,
        // The first connection fails the start; a later drop is retried.
        reconnectStrategy: (retries, cause) => (this.connected ? Math.min(100 * (retries + 1), MAX_RECONNECT_DELAY_MS) : cause),
      },
    });
    // Connection errors also reach the caller of the command that meets them;
    // unhandled, the event would end the process.
    this.client.on('error', () => {});
  }

  /** `Map(id -> Buffer)` of the rows of `kind` among `ids` that exist. */
  async getMany(instance, kind, ids) {
    if (!ids.length) return new Map();
    const values = await this.client.hmGet(AS_BUFFERS, keyOf(instance, kind), ids);
    return new Map(ids.flatMap((id, i) => (values[i] === null ? [] : [[id, values[i]]])));
  }

  /** Writes `ops` (`{kind, id, value}`; a null value deletes) in one MULTI. */
  async apply(instance, ops) {
    const multi = this.client.multi();
    for (const { kind, id, value } of ops) {
      if (value === null) multi.hDel(keyOf(instance, kind), id);
      else multi.hSet(keyOf(instance, kind), id, value);
    }
    await multi.exec();
  }

  /** Inserts the row unless it exists; true if it was inserted. */
  async insertIfAbsent(instance, kind, id, value) {
    return this.client.hSetNX(keyOf(instance, kind), id, value);
  }

  /** Deletes every row of the given kinds for `instance`, in one command. */
  async deleteAll(instance, kinds) {
    await this.client.del(kinds.map((kind) => keyOf(instance, kind)));
  }

  async close() {
    this.connected = false;
    if (this.client.isOpen) await this.client.quit();
  }
}
