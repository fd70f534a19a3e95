// The embedded storage backend: SQLite in WAL mode with synchronous=FULL, so a write is on disk before its
// promise resolves (a `kill -9` right after an acknowledged reply loses nothing). One global revision counter
// orders every write; an `events` table keeps recent history so watches can resume from a revision, and live
// watchers are fed in-process right after each commit.

import Database from 'better-sqlite3';
import type { KubeObject } from '../../api/meta.js';
import { StoreError } from '../errors.js';
import type { Backend, BackendEntry, BackendEvent } from '../types.js';
import { EventQueue } from './event-queue.js';

export interface SqliteBackendOptions {
  /** Database file, or ':memory:' (tests). */
  path: string;
  /** Revisions of history kept for watch resume (older ones answer 410 Gone). */
  historyRevisions?: number;
  /** Max events buffered for one live watcher before it is ended (the client re-watches from its last version). */
  watcherBuffer?: number;
}

interface Row {
  key: string;
  rev: number;
  value: string;
}

interface EventRow extends Row {
  type: 'put' | 'delete';
  created: number;
}

interface Watcher {
  prefix: string;
  queue: EventQueue<BackendEvent>;
}

const PAGE = 1000;

/** Upper bound for a key range scan: every key starting with `prefix` is < prefix + U+FFFF. */
const rangeEnd = (prefix: string): string => `${prefix}\uffff`;

export class SqliteBackend implements Backend {
  readonly #db: Database.Database;
  readonly #history: number;
  readonly #watcherBuffer: number;
  readonly #watchers = new Set<Watcher>();
  readonly #stmt: ReturnType<SqliteBackend['prepare']>;
  #rev: number;
  #compacted: number;
  #writesSinceCompaction = 0;
  #closed = false;

  constructor(opts: SqliteBackendOptions) {
    this.#history = opts.historyRevisions ?? 100_000;
    this.#watcherBuffer = opts.watcherBuffer ?? 50_000;
    this.#db = new Database(opts.path);
    this.#db.pragma('journal_mode = WAL');
    // FULL: the WAL is fsynced at every commit. NORMAL would survive kill -9 but not power loss.
    this.#db.pragma('synchronous = FULL');
    this.#db.pragma('busy_timeout = 5000');
    this.#db.exec(`
      CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, rev INTEGER NOT NULL, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS events (
        rev INTEGER PRIMARY KEY, key TEXT NOT NULL, type TEXT NOT NULL, created INTEGER NOT NULL,
        value TEXT NOT NULL);
      INSERT OR IGNORE INTO meta (k, v) VALUES ('rev', 0), ('compacted', 0);
    `);
    this.#stmt = this.prepare();
    this.#rev = (this.#stmt.getMeta.get('rev') as { v: number }).v;
    this.#compacted = (this.#stmt.getMeta.get('compacted') as { v: number }).v;
  }

  private prepare() {
    const db = this.#db;
    return {
      getMeta: db.prepare('SELECT v FROM meta WHERE k = ?'),
      setMeta: db.prepare('UPDATE meta SET v = ? WHERE k = ?'),
      get: db.prepare('SELECT key, rev, value FROM objects WHERE key = ?'),
      list: db.prepare('SELECT key, rev, value FROM objects WHERE key >= ? AND key < ? ORDER BY key'),
      insert: db.prepare('INSERT INTO objects (key, rev, value) VALUES (?, ?, ?)'),
      replace: db.prepare('UPDATE objects SET rev = ?, value = ? WHERE key = ?'),
      remove: db.prepare('DELETE FROM objects WHERE key = ?'),
      event: db.prepare('INSERT INTO events (rev, key, type, created, value) VALUES (?, ?, ?, ?, ?)'),
      history: db.prepare(
        'SELECT rev, key, type, created, value FROM events WHERE rev > ? AND key >= ? AND key < ? ORDER BY rev LIMIT ?',
      ),
      compact: db.prepare('DELETE FROM events WHERE rev <= ?'),
    };
  }

  async get(key: string): Promise<BackendEntry | undefined> {
    this.#assertOpen();
    const row = this.#stmt.get.get(key) as Row | undefined;
    return row && toEntry(row);
  }

  async list(prefix: string): Promise<{ entries: BackendEntry[]; rev: number }> {
    this.#assertOpen();
    const rows = this.#stmt.list.all(prefix, rangeEnd(prefix)) as Row[];
    return { entries: rows.map(toEntry), rev: this.#rev };
  }

  async create(key: string, build: (rev: number) => KubeObject): Promise<BackendEntry> {
    return this.#write(key, (existing) => {
      if (existing) throw new StoreError('AlreadyExists', `${key} already exists`);
      return { type: 'put', created: true, value: build(this.#rev + 1) };
    });
  }

  async update(key: string, expectedRev: number, build: (rev: number) => KubeObject): Promise<BackendEntry> {
    return this.#write(key, (existing) => {
      if (!existing) throw new StoreError('NotFound', `${key} not found`);
      if (existing.rev !== expectedRev) throw conflict(key, existing.rev, expectedRev);
      return { type: 'put', created: false, value: build(this.#rev + 1) };
    });
  }

  async delete(key: string, expectedRev: number, build: (rev: number) => KubeObject): Promise<BackendEntry> {
    return this.#write(key, (existing) => {
      if (!existing) throw new StoreError('NotFound', `${key} not found`);
      if (existing.rev !== expectedRev) throw conflict(key, existing.rev, expectedRev);
      return { type: 'delete', created: false, value: build(this.#rev + 1) };
    });
  }

  /** One transaction: read the current row, decide, bump the revision, write object and history row. */
  #write(
    key: string,
    decide: (existing: Row | undefined) => { type: 'put' | 'delete'; created: boolean; value: KubeObject },
  ): Promise<BackendEntry> {
    this.#assertOpen();
    let event!: BackendEvent;
    this.#db.transaction(() => {
      const existing = this.#stmt.get.get(key) as Row | undefined;
      const change = decide(existing);
      const rev = this.#rev + 1;
      const json = JSON.stringify(change.value);
      if (change.type === 'delete') this.#stmt.remove.run(key);
      else if (existing) this.#stmt.replace.run(rev, json, key);
      else this.#stmt.insert.run(key, rev, json);
      this.#stmt.event.run(rev, key, change.type, change.created ? 1 : 0, json);
      this.#stmt.setMeta.run(rev, 'rev');
      event = { type: change.type, created: change.created, key, rev, value: change.value };
    })();
    // Only after the commit returned (and was fsynced) does anyone see the new revision.
    this.#rev = event.rev;
    this.#publish(event);
    this.#maybeCompact();
    return Promise.resolve({ key, rev: event.rev, value: event.value });
  }

  #publish(event: BackendEvent): void {
    for (const w of this.#watchers) {
      if (!event.key.startsWith(w.prefix)) continue;
      if (!w.queue.push(event)) {
        // A watcher that cannot keep up is ended rather than allowed to grow without bound.
        w.queue.fail(new StoreError('Gone', 'watch ended: the client is too slow to keep up; re-watch'));
        this.#watchers.delete(w);
      }
    }
  }

  #maybeCompact(): void {
    if (++this.#writesSinceCompaction < 1000) return;
    this.#writesSinceCompaction = 0;
    const upTo = this.#rev - this.#history;
    if (upTo <= this.#compacted) return;
    this.#db.transaction(() => {
      this.#stmt.compact.run(upTo);
      this.#stmt.setMeta.run(upTo, 'compacted');
    })();
    this.#compacted = upTo;
  }

  async *watch(prefix: string, afterRev: number, signal: AbortSignal): AsyncIterable<BackendEvent> {
    this.#assertOpen();
    if (afterRev < this.#compacted) {
      throw new StoreError(
        'Gone',
        `too old resource version: ${afterRev} (history starts after ${this.#compacted})`,
      );
    }
    const watcher: Watcher = { prefix, queue: new EventQueue(this.#watcherBuffer) };
    const onAbort = () => watcher.queue.end();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      let after = afterRev;
      // Replay history in pages. The last page is read and the live watcher registered in the same synchronous
      // step, so no commit can fall between them.
      for (;;) {
        const rows = this.#stmt.history.all(after, prefix, rangeEnd(prefix), PAGE) as EventRow[];
        if (rows.length < PAGE) this.#watchers.add(watcher);
        for (const row of rows) {
          if (signal.aborted) return;
          yield toEvent(row);
          after = row.rev;
        }
        if (rows.length < PAGE) break;
      }
      for await (const ev of watcher.queue) {
        if (ev.rev > after) yield ev;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.#watchers.delete(watcher);
    }
  }

  async currentRev(): Promise<number> {
    return this.#rev;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of this.#watchers) w.queue.end();
    this.#watchers.clear();
    this.#db.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreError('Internal', 'store is closed');
  }
}

function toEntry(row: Row): BackendEntry {
  return { key: row.key, rev: row.rev, value: JSON.parse(row.value) as KubeObject };
}

function toEvent(row: EventRow): BackendEvent {
  return {
    type: row.type,
    created: row.created === 1,
    key: row.key,
    rev: row.rev,
    value: JSON.parse(row.value) as KubeObject,
  };
}

function conflict(key: string, actual: number, expected: number): StoreError {
  return new StoreError(
    'Conflict',
    `Operation cannot be fulfilled on ${key}: the object has been modified (resourceVersion ${expected} is stale, ` +
      `current is ${actual}); please apply your changes to the latest version and try again`,
  );
}
