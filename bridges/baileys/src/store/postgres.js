/**
 * The PostgreSQL backend of the store: one table of opaque rows, the same as
 * the SQLite backend's.
 *
 * A row is `(instance, kind, id) -> value`, where `value` is already sealed
 * by `store.js` and `id` already hashed; this module knows nothing of what
 * the rows mean. The table is called `bridge_entries` because a PostgreSQL
 * database is often shared with other applications.
 *
 * Each method is one statement (atomic on its own) except `apply`, which runs
 * its writes in one transaction on one pooled connection. A row is written
 * with the server's default durability: committed means on disk.
 */
import pg from 'pg';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS bridge_entries (
  instance TEXT NOT NULL,
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  value BYTEA NOT NULL,
  PRIMARY KEY (instance, kind, id)
)`;
const UPSERT =
  'INSERT INTO bridge_entries (instance, kind, id, value) VALUES ($1, $2, $3, $4) ' +
  'ON CONFLICT (instance, kind, id) DO UPDATE SET value = excluded.value';
const DELETE_ONE = 'DELETE FROM bridge_entries WHERE instance = $1 AND kind = $2 AND id = $3';
/** An unreachable server fails the start within this, instead of at the TCP timeout. */
const CONNECT_TIMEOUT_MS = 10000;

export class PostgresBackend {
  /** Connects to the database at `url` and creates the table if it is missing. */
  static async open(url) {
    const backend = new PostgresBackend(url);
    try {
      await backend.pool.query(SCHEMA);
    } catch (err) {
      await backend.close();
      throw err;
    }
    return backend;
  }

  constructor(url) {
    this.pool = new pg.Pool({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
    // An idle connection that the server drops is discarded by the pool; the
    // next query opens a new one, and reports the failure to its caller if
    // the server is still away. Unhandled, the event would end the process.
    this.pool.on('error', () => {});
  }

  /** `Map(id -> Buffer)` of the rows of `kind` among `ids` that exist. */
  async getMany(instance, kind, ids) {
    const { rows } = await this.pool.query(
      'SELECT id, value FROM bridge_entries WHERE instance = $1 AND kind = $2 AND id = ANY($3::text[])',
      [instance, kind, ids],
    );
    return new Map(rows.map((row) => [row.id, row.value]));
  }

  /** Writes `ops` (`{kind, id, value}`; a null value deletes) in one transaction. */
  async apply(instance, ops) {
    const client = await this.pool.connect();
    let broken;
    try {
      await client.query('BEGIN');
      for (const { kind, id, value } of ops) {
        if (value === null) await client.query(DELETE_ONE, [instance, kind, id]);
        else await client.query(UPSERT, [instance, kind, id, value]);
      }
      await client.query('COMMIT');
    } catch (err) {
      broken = await client.query('ROLLBACK').then(() => undefined, (rollbackErr) => rollbackErr);
      throw err;
    } finally {
      // A connection whose rollback failed is in an unknown state: not reused.
      client.release(broken);
    }
  }

  /** Inserts the row unless it exists; true if it was inserted. */
  async insertIfAbsent(instance, kind, id, value) {
    const { rowCount } = await this.pool.query(
      'INSERT INTO bridge_entries (instance, kind, id, value) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
      [instance, kind, id, value],
    );
    return rowCount === 1;
  }

  /** Deletes every row of the given kinds for `instance`, in one statement. */
  async deleteAll(instance, kinds) {
    await this.pool.query('DELETE FROM bridge_entries WHERE instance = $1 AND kind = ANY($2::text[])', [instance, kinds]);
  }

  async close() {
    if (!this.pool.ending) await this.pool.end();
  }
}
