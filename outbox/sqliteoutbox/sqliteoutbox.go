// Package sqliteoutbox is a transactional outbox in an SQLite table, the
// embedded default: written in the service's own database/sql transaction
// and relayed by outbox.Relay. It uses the pure-Go SQLite of
// modernc.org/sqlite (driver name "sqlite").
//
// SQLite has no row locks to skip, so relays claim records with a lease: one
// UPDATE … RETURNING sets a lease owner and expiry on up to a batch of
// unsent, unleased records. The relay publishes only while its lease has
// more than a publish timeout left, then marks what it published sent and
// clears its lease. A relay that dies leaves leases that expire after
// Options.Lease; the records are then claimed again. Relays may run in
// several processes on one database file (WAL mode; see Open).
//
// The package sits beside outbox in the cross-cutting layer.
package sqliteoutbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/switchboard-dev/switchboard/outbox"
)

// Defaults of Options.
const (
	DefaultTable = "switchboard_outbox"
	DefaultLease = 30 * time.Second
)

// Options configure a Store.
type Options struct {
	// Source is the CloudEvents source of events enqueued without one,
	// e.g. "/switchboard/trips". Required unless every message sets its own.
	Source string
	// Table is the table's name (default DefaultTable). New creates it if
	// missing.
	Table string
	// Lease is how long a relay holds a claimed batch (default 30s). It
	// must exceed the relay's PublishTimeout, or the relay publishes
	// nothing; it bounds how long a dead relay's records wait.
	Lease time.Duration
}

// Open opens the SQLite database at path the way an outbox needs it: WAL
// journal (readers and the relay do not block writers), a busy timeout
// instead of immediate "database is locked" errors, write transactions
// that take the write lock when they begin, and foreign keys on. Use the
// returned *sql.DB for the service's own tables too, so that business rows
// and events share transactions.
func Open(path string) (*sql.DB, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqliteoutbox: open %s: %w", path, err)
	}
	return db, nil
}

// Execer is what Enqueue writes with: a *sql.Tx (the point of an outbox),
// or a *sql.DB to enqueue outside a transaction.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Store is an outbox in an SQLite table. It is safe for concurrent use.
type Store struct {
	db                                    *sql.DB
	opts                                  Options
	insert, claim, wait, sent, fail, free string
	prune, pending                        string
}

var _ outbox.Store = (*Store)(nil)

// New returns the outbox in opts.Table of db, creating the table if it
// does not exist. Open db with Open, or with the same settings.
func New(ctx context.Context, db *sql.DB, opts Options) (*Store, error) {
	if opts.Table == "" {
		opts.Table = DefaultTable
	}
	if opts.Lease <= 0 {
		opts.Lease = DefaultLease
	}
	t := `"` + opts.Table + `"`
	idx := func(s string) string { return `"` + opts.Table + "_" + s + `"` }
	ddl := `CREATE TABLE IF NOT EXISTS ` + t + ` (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	topic TEXT NOT NULL,
	key TEXT NOT NULL,
	event_id TEXT NOT NULL,
	headers TEXT NOT NULL,
	body BLOB NOT NULL,
	created_at INTEGER NOT NULL,
	sent_at INTEGER,
	lease_owner TEXT,
	lease_until INTEGER,
	attempts INTEGER NOT NULL DEFAULT 0,
	last_error TEXT
);
CREATE INDEX IF NOT EXISTS ` + idx("unsent") + ` ON ` + t + ` (seq) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS ` + idx("unsent_key") + ` ON ` + t + ` (key, seq) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS ` + idx("sent") + ` ON ` + t + ` (sent_at) WHERE sent_at IS NOT NULL;`
	if _, err := db.ExecContext(ctx, ddl); err != nil {
		return nil, fmt.Errorf("sqliteoutbox: create table %s: %w", opts.Table, err)
	}
	return &Store{
		db:     db,
		opts:   opts,
		insert: `INSERT INTO ` + t + ` (topic, key, event_id, headers, body, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		claim: `UPDATE ` + t + ` SET lease_owner = ?1, lease_until = ?2
WHERE seq IN (SELECT seq FROM ` + t + ` WHERE sent_at IS NULL AND (lease_until IS NULL OR lease_until <= ?3) ORDER BY seq LIMIT ?4)
RETURNING seq, topic, key, event_id, headers, body, attempts`,
		// The oldest unsent record of each key that this batch does not
		// hold: records of the key after it must wait.
		wait: `SELECT key, min(seq) FROM ` + t + `
WHERE sent_at IS NULL AND key IN (SELECT value FROM json_each(?1)) AND (lease_owner IS NULL OR lease_owner <> ?2) GROUP BY key`,
		sent:    `UPDATE ` + t + ` SET sent_at = ?2 WHERE seq IN (SELECT value FROM json_each(?1)) AND sent_at IS NULL`,
		fail:    `UPDATE ` + t + ` SET attempts = attempts + 1, last_error = ?2 WHERE seq = ?1`,
		free:    `UPDATE ` + t + ` SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?1`,
		prune:   `DELETE FROM ` + t + ` WHERE sent_at < ?1`,
		pending: `SELECT count(*) FROM ` + t + ` WHERE sent_at IS NULL`,
	}, nil
}

// Enqueue writes msgs into the outbox within tx: they are published if and
// only if tx commits. Each message is validated and completed first (see
// outbox.Prepare); an invalid one is an InvalidArgument error and nothing
// more is written.
func (s *Store) Enqueue(ctx context.Context, tx Execer, msgs ...outbox.Message) error {
	for _, m := range msgs {
		r, err := outbox.Prepare(m, s.opts.Source)
		if err != nil {
			return err
		}
		h, err := json.Marshal(r.Header)
		if err != nil {
			return fmt.Errorf("sqliteoutbox: enqueue %s: headers: %w", r.ID, err)
		}
		if r.Body == nil {
			r.Body = []byte{}
		}
		if _, err := tx.ExecContext(ctx, s.insert, r.Topic, r.Key, r.ID, string(h), r.Body, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("sqliteoutbox: enqueue %s: %w", r.ID, err)
		}
	}
	return nil
}

// Claim implements outbox.Store.
func (s *Store) Claim(ctx context.Context, max int) (outbox.Batch, error) {
	owner := uuid.NewString()
	now := time.Now()
	until := now.Add(s.opts.Lease)
	rows, err := s.db.QueryContext(ctx, s.claim, owner, until.UnixNano(), now.UnixNano(), max)
	if err != nil {
		return nil, fmt.Errorf("sqliteoutbox: claim: %w", err)
	}
	var recs []outbox.Record
	for rows.Next() {
		var r outbox.Record
		var h string
		if err := rows.Scan(&r.Seq, &r.Topic, &r.Key, &r.ID, &h, &r.Body, &r.Attempts); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqliteoutbox: claim: %w", err)
		}
		if err := json.Unmarshal([]byte(h), &r.Header); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqliteoutbox: record %d: headers: %w", r.Seq, err)
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqliteoutbox: claim: %w", err)
	}
	rows.Close()
	b := &batch{s: s, owner: owner, until: until}
	slices.SortFunc(recs, func(a, b outbox.Record) int { return int(a.Seq - b.Seq) })
	var keys []string
	for _, r := range recs {
		if r.Key != "" && !slices.Contains(keys, r.Key) {
			keys = append(keys, r.Key)
		}
	}
	if len(keys) > 0 {
		wait, err := s.waiting(ctx, keys, owner)
		if err != nil {
			_ = b.Finish(context.WithoutCancel(ctx), nil, nil)
			return nil, err
		}
		recs = slices.DeleteFunc(recs, func(r outbox.Record) bool {
			w, ok := wait[r.Key]
			return ok && r.Key != "" && r.Seq > w
		})
	}
	b.recs = recs
	return b, nil
}

func (s *Store) waiting(ctx context.Context, keys []string, owner string) (map[string]int64, error) {
	kj, _ := json.Marshal(keys)
	rows, err := s.db.QueryContext(ctx, s.wait, string(kj), owner)
	if err != nil {
		return nil, fmt.Errorf("sqliteoutbox: claim: key order: %w", err)
	}
	defer rows.Close()
	wait := map[string]int64{}
	for rows.Next() {
		var k string
		var seq int64
		if err := rows.Scan(&k, &seq); err != nil {
			return nil, fmt.Errorf("sqliteoutbox: claim: key order: %w", err)
		}
		wait[k] = seq
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqliteoutbox: claim: key order: %w", err)
	}
	return wait, nil
}

// Prune implements outbox.Store.
func (s *Store) Prune(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.prune, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("sqliteoutbox: prune: %w", err)
	}
	return res.RowsAffected()
}

// Pending returns how many records are not yet marked sent.
func (s *Store) Pending(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, s.pending).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqliteoutbox: pending: %w", err)
	}
	return n, nil
}

type batch struct {
	s     *Store
	owner string
	until time.Time
	recs  []outbox.Record
}

func (b *batch) Records() []outbox.Record { return b.recs }

func (b *batch) Expires() time.Time { return b.until }

func (b *batch) Finish(ctx context.Context, sent []int64, failed map[int64]string) error {
	tx, err := b.s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqliteoutbox: finish: %w", err)
	}
	defer tx.Rollback()
	if len(sent) > 0 {
		sj, _ := json.Marshal(sent)
		// Marked sent even if the lease expired meanwhile: the broker has it.
		if _, err := tx.ExecContext(ctx, b.s.sent, string(sj), time.Now().UnixNano()); err != nil {
			return fmt.Errorf("sqliteoutbox: mark sent: %w", err)
		}
	}
	for seq, reason := range failed {
		if _, err := tx.ExecContext(ctx, b.s.fail, seq, reason); err != nil {
			return fmt.Errorf("sqliteoutbox: record failure: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, b.s.free, b.owner); err != nil {
		return fmt.Errorf("sqliteoutbox: release lease: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqliteoutbox: finish: %w", err)
	}
	return nil
}
