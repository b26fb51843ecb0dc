// Package pgoutbox is a transactional outbox in a PostgreSQL table, written
// in the service's own pgx transaction and relayed by outbox.Relay.
//
// Relays claim records with SELECT … FOR UPDATE SKIP LOCKED in a
// transaction they hold while they publish, and mark them sent in that
// transaction: two relays never hold one record, and a relay that dies
// (its connection closes, the transaction rolls back) leaves its records
// unsent for the next relay. Sent records stay for the relay's Retention,
// then are deleted.
//
// The package sits beside outbox in the cross-cutting layer and imports
// pgx (github.com/jackc/pgx/v5).
package pgoutbox

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/outbox"
)

// DefaultTable is the outbox table's default name.
const DefaultTable = "switchboard_outbox"

// Options configure a Store.
type Options struct {
	// Source is the CloudEvents source of events enqueued without one,
	// e.g. "/switchboard/trips", as the SDK sets for a service "trips".
	// Required unless every message sets its own.
	Source string
	// Table is the table's name, optionally schema-qualified; default
	// DefaultTable. New creates it if missing.
	Table string
}

// Tx is what Enqueue writes with: a pgx.Tx (the point of an outbox), or a
// *pgxpool.Pool or *pgx.Conn to enqueue outside a transaction.
type Tx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Store is an outbox in a PostgreSQL table. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	opts   Options
	insert string
	claim  string
	wait   string
	sent   string
	fail   string
	prune  string
}

var _ outbox.Store = (*Store)(nil)

// New returns the outbox in opts.Table, creating the table if it does not
// exist. Relays claim through pool; Enqueue uses the transaction it is
// given.
func New(ctx context.Context, pool *pgxpool.Pool, opts Options) (*Store, error) {
	if opts.Table == "" {
		opts.Table = DefaultTable
	}
	parts := strings.Split(opts.Table, ".")
	t := pgx.Identifier(parts).Sanitize()
	base := parts[len(parts)-1]
	idx := func(suffix string) string { return pgx.Identifier{base + "_" + suffix}.Sanitize() }
	ddl := `CREATE TABLE IF NOT EXISTS ` + t + ` (
	seq bigserial PRIMARY KEY,
	topic text NOT NULL,
	key text NOT NULL,
	event_id text NOT NULL,
	headers jsonb NOT NULL,
	body bytea NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	sent_at timestamptz,
	attempts integer NOT NULL DEFAULT 0,
	last_error text
);
CREATE INDEX IF NOT EXISTS ` + idx("unsent") + ` ON ` + t + ` (seq) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS ` + idx("unsent_key") + ` ON ` + t + ` (key, seq) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS ` + idx("sent") + ` ON ` + t + ` (sent_at) WHERE sent_at IS NOT NULL`
	if _, err := pool.Exec(ctx, ddl); err != nil {
		return nil, fmt.Errorf("pgoutbox: create table %s: %w", opts.Table, err)
	}
	return &Store{
		pool:   pool,
		opts:   opts,
		insert: `INSERT INTO ` + t + ` (topic, key, event_id, headers, body) VALUES ($1, $2, $3, $4, $5)`,
		claim: `SELECT seq, topic, key, event_id, headers, body, attempts FROM ` + t + `
WHERE sent_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED`,
		// The oldest unsent record of each key that this batch does not
		// hold: records of the key after it must wait.
		wait: `SELECT key, min(seq) FROM ` + t + `
WHERE sent_at IS NULL AND key = ANY($1) AND NOT (seq = ANY($2)) GROUP BY key`,
		sent:  `UPDATE ` + t + ` SET sent_at = now() WHERE seq = ANY($1)`,
		fail:  `UPDATE ` + t + ` SET attempts = attempts + 1, last_error = $2 WHERE seq = $1`,
		prune: `DELETE FROM ` + t + ` WHERE sent_at < $1`,
	}, nil
}

// Enqueue writes msgs into the outbox within tx: they are published if and
// only if tx commits. Each message is validated and completed first (see
// outbox.Prepare); an invalid one is an InvalidArgument error and nothing
// more is written.
func (s *Store) Enqueue(ctx context.Context, tx Tx, msgs ...outbox.Message) error {
	for _, m := range msgs {
		r, err := outbox.Prepare(m, s.opts.Source)
		if err != nil {
			return err
		}
		h, err := json.Marshal(r.Header)
		if err != nil {
			return fmt.Errorf("pgoutbox: enqueue %s: headers: %w", r.ID, err)
		}
		if r.Body == nil {
			r.Body = []byte{}
		}
		if _, err := tx.Exec(ctx, s.insert, r.Topic, r.Key, r.ID, h, r.Body); err != nil {
			return fmt.Errorf("pgoutbox: enqueue %s: %w", r.ID, err)
		}
	}
	return nil
}

// Claim implements outbox.Store.
func (s *Store) Claim(ctx context.Context, max int) (outbox.Batch, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgoutbox: begin: %w", err)
	}
	b := &batch{s: s, tx: tx}
	if err := b.load(ctx, max); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, err
	}
	return b, nil
}

// Prune implements outbox.Store.
func (s *Store) Prune(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, s.prune, before)
	if err != nil {
		return 0, fmt.Errorf("pgoutbox: prune: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Pending returns how many records are not yet marked sent.
func (s *Store) Pending(ctx context.Context) (int, error) {
	var n int
	t := pgx.Identifier(strings.Split(s.opts.Table, ".")).Sanitize()
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+t+` WHERE sent_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("pgoutbox: pending: %w", err)
	}
	return n, nil
}

type batch struct {
	s    *Store
	tx   pgx.Tx
	recs []outbox.Record
}

func (b *batch) load(ctx context.Context, max int) error {
	rows, err := b.tx.Query(ctx, b.s.claim, max)
	if err != nil {
		return fmt.Errorf("pgoutbox: claim: %w", err)
	}
	var recs []outbox.Record
	for rows.Next() {
		var r outbox.Record
		var h []byte
		if err := rows.Scan(&r.Seq, &r.Topic, &r.Key, &r.ID, &h, &r.Body, &r.Attempts); err != nil {
			rows.Close()
			return fmt.Errorf("pgoutbox: claim: %w", err)
		}
		if err := json.Unmarshal(h, &r.Header); err != nil {
			rows.Close()
			return fmt.Errorf("pgoutbox: record %d: headers: %w", r.Seq, err)
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("pgoutbox: claim: %w", err)
	}
	keys, seqs := []string{}, []int64{}
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
		if r.Key != "" && !slices.Contains(keys, r.Key) {
			keys = append(keys, r.Key)
		}
	}
	if len(keys) > 0 {
		wait, err := waiting(ctx, b.tx, b.s.wait, keys, seqs)
		if err != nil {
			return err
		}
		recs = slices.DeleteFunc(recs, func(r outbox.Record) bool {
			w, ok := wait[r.Key]
			return ok && r.Key != "" && r.Seq > w
		})
	}
	b.recs = recs
	return nil
}

func waiting(ctx context.Context, tx pgx.Tx, q string, keys []string, seqs []int64) (map[string]int64, error) {
	rows, err := tx.Query(ctx, q, keys, seqs)
	if err != nil {
		return nil, fmt.Errorf("pgoutbox: claim: key order: %w", err)
	}
	defer rows.Close()
	wait := map[string]int64{}
	for rows.Next() {
		var k string
		var seq int64
		if err := rows.Scan(&k, &seq); err != nil {
			return nil, fmt.Errorf("pgoutbox: claim: key order: %w", err)
		}
		wait[k] = seq
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgoutbox: claim: key order: %w", err)
	}
	return wait, nil
}

func (b *batch) Records() []outbox.Record { return b.recs }

func (b *batch) Expires() time.Time { return time.Time{} } // a row lock lasts until commit

func (b *batch) Finish(ctx context.Context, sent []int64, failed map[int64]string) error {
	if len(sent) == 0 && len(failed) == 0 {
		return b.tx.Rollback(ctx)
	}
	if len(sent) > 0 {
		if _, err := b.tx.Exec(ctx, b.s.sent, sent); err != nil {
			_ = b.tx.Rollback(ctx)
			return fmt.Errorf("pgoutbox: mark sent: %w", err)
		}
	}
	for seq, reason := range failed {
		if _, err := b.tx.Exec(ctx, b.s.fail, seq, reason); err != nil {
			_ = b.tx.Rollback(ctx)
			return fmt.Errorf("pgoutbox: record failure: %w", err)
		}
	}
	if err := b.tx.Commit(ctx); err != nil {
		return bus.Errorf(bus.Unavailable, "pgoutbox: commit: %w", err)
	}
	return nil
}
