/**
 * The SQLite backend of the store: one table of opaque rows.
 *
 * A row is `(instance, kind, id) -> value`, where `value` is already sealed
 * by `store.js` and `id` already hashed; this module knows nothing of what
 * the rows mean. better-sqlite3 is synchronous, which makes each method one
 * atomic step; the methods are still async so that every backend (this one
 * and store/postgres.js) offers the same interface.
 *
 * WAL with `synchronous = NORMAL`: a committed row survives a crash of the
 * bridge process (what exactly-once needs across restarts); a power loss may
 * lose the last commits.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS entries (
  instance TEXT NOT NULL,
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  value BLOB NOT NULL,
  PRIMARY KEY (instance, kind, id)
) WITHOUT ROWID`;

export class SqliteBackend {
  /** Opens (creating it and its directory if needed) the database file at `file`. */
  constructor(file) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    // Encrypted or not, the store is nobody else's to read (nor its WAL).
    for (const own of [file, `${file}-wal`, `${file}-shm`]) {
      if (fs.existsSync(own)) fs.chmodSync(own, 0o600);
    }
    this.selectOne = this.db.prepare('SELECT value FROM entries WHERE instance = ? AND kind = ? AND id = ?');
    this.upsert = this.db.prepare(
      'INSERT INTO entries (instance, kind, id, value) VALUES (?, ?, ?, ?) ' +
        'ON CONFLICT (instance, kind, id) DO UPDATE SET value = excluded.value',
    );
    this.insertNew = this.db.prepare(
      'INSERT INTO entries (instance, kind, id, value) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING',
    );
    this.deleteOne = this.db.prepare('DELETE FROM entries WHERE instance = ? AND kind = ? AND id = ?');
    this.deleteKind = this.db.prepare('DELETE FROM entries WHERE instance = ? AND kind = ?');
    this.applyAll = this.db.transaction((instance, ops) => {
      for (const { kind, id, value } of ops) {
        if (value === null) this.deleteOne.run(instance, kind, id);
        else this.upsert.run(instance, kind, id, value);
      }
    });
    this.deleteKinds = this.db.transaction((instance, kinds) => {
      for (const kind of kinds) this.deleteKind.run(instance, kind);
    });
  }

  /** `Map(id -> Buffer)` of the rows of `kind` among `ids` that exist. */
  async getMany(instance, kind, ids) {
    const found = new Map();
    for (const id of ids) {
      const row = this.selectOne.get(instance, kind, id);
      if (row) found.set(id, row.value);
    }
    return found;
  }

  /** Writes `ops` (`{kind, id, value}`; a null value deletes) in one transaction. */
  async apply(instance, ops) {
    this.applyAll(instance, ops);
  }

  /** Inserts the row unless it exists; true if it was inserted. */
  async insertIfAbsent(instance, kind, id, value) {
    return this.insertNew.run(instance, kind, id, value).changes === 1;
  }

  /** Deletes every row of the given kinds for `instance`, in one transaction. */
  async deleteAll(instance, kinds) {
    this.deleteKinds(instance, kinds);
  }

  async close() {
    if (this.db.open) this.db.close();
  }
}
