// Package pgdedupe is a dedupe.Store in PostgreSQL, shared by every
// instance of a consumer group that uses the same table.
//
// One row per key: its current token, whether it is done, and when the row
// expires (the lease's end for a claim, the window's end for a done key), all
// in the database's clock. Claiming is one INSERT … ON CONFLICT DO UPDATE
// that takes the key only if the row is absent or expired, so two instances
// claiming at once are serialised by the row lock and exactly one wins.
// Expired rows are deleted in small batches as claims go by.
//
// The package sits beside dedupe in the cross-cutting layer and imports
// pgx (github.com/jackc/pgx/v5).
package pgdedupe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchboard-dev/switchboard/dedupe"
)

// DB is what the store needs of a database handle: a *pgxpool.Pool (the
// usual choice), or a *pgx.Conn used by one goroutine at a time.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Defaults of Options.
const (
	DefaultTable  = "switchboard_dedupe"
	DefaultWindow = 24 * time.Hour
)

// Options configure a Store. The zero value is the defaults.
type Options struct {
	// Table is the table's name, optionally schema-qualified
	// ("billing.dedupe"); default DefaultTable. New creates it if missing.
	Table string
	// Window is how long a handled key is remembered (default
	// DefaultWindow, 24 hours). Rows are kept that long, one per event.
	Window time.Duration
	// PruneEvery is how often expired rows are deleted, by a claim that
	// finds the last pruning that old (default 1 minute).
	PruneEvery time.Duration
}

// Store is a dedupe.Store in a PostgreSQL table. It is safe for concurrent
// use when its DB is.
type Store struct {
	db     DB
	opts   Options
	claim  string
	extend string
	done   string
	doneTx string
	rel    string
	prune  string
	last   atomic.Int64 // unix nanos of the last prune
}

var _ dedupe.Store = (*Store)(nil)

// New returns a store on db, creating its table if it does not exist.
func New(ctx context.Context, db DB, opts Options) (*Store, error) {
	if opts.Table == "" {
		opts.Table = DefaultTable
	}
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.PruneEvery <= 0 {
		opts.PruneEvery = time.Minute
	}
	t := pgx.Identifier(strings.Split(opts.Table, ".")).Sanitize()
	idx := pgx.Identifier{strings.ReplaceAll(opts.Table, ".", "_") + "_expires"}.Sanitize()
	ddl := `CREATE TABLE IF NOT EXISTS ` + t + ` (
	key text PRIMARY KEY,
	token text NOT NULL,
	done boolean NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ` + idx + ` ON ` + t + ` (expires_at)`
	if _, err := db.Exec(ctx, ddl); err != nil {
		return nil, fmt.Errorf("pgdedupe: create table %s: %w", opts.Table, err)
	}
	s := &Store{db: db, opts: opts}
	// The claim: take the key if absent or expired; otherwise report the
	// live row. The second branch reads the statement's snapshot, which may
	// predate a conflicting row committed meanwhile: then no row comes back
	// and Claim asks again.
	s.claim = `WITH c AS (
	INSERT INTO ` + t + ` AS d (key, token, done, expires_at)
	VALUES ($1, $2, false, now() + $3 * interval '1 microsecond')
	ON CONFLICT (key) DO UPDATE SET token = excluded.token, done = false, expires_at = excluded.expires_at
	WHERE d.expires_at <= now()
	RETURNING d.expires_at
)
SELECT 1, extract(epoch FROM c.expires_at - now())::float8 FROM c
UNION ALL
SELECT CASE WHEN d.done THEN 2 ELSE 3 END, extract(epoch FROM d.expires_at - now())::float8
FROM ` + t + ` d WHERE d.key = $1 AND d.expires_at > now() AND NOT EXISTS (SELECT 1 FROM c)`
	// A row its holder completed in its own transaction (CompleteTx) keeps
	// the holder's token: renewing it is a no-op, not a lost lease.
	s.extend = `UPDATE ` + t + ` SET expires_at = CASE WHEN done THEN expires_at ELSE now() + $3 * interval '1 microsecond' END
WHERE key = $1 AND token = $2 AND (done OR expires_at > now())`
	s.doneTx = `UPDATE ` + t + ` SET done = true, expires_at = now() + $3 * interval '1 microsecond'
WHERE key = $1 AND token = $2 AND NOT done`
	s.done = `INSERT INTO ` + t + ` AS d (key, token, done, expires_at) VALUES ($1, '', true, now() + $2 * interval '1 microsecond')
ON CONFLICT (key) DO UPDATE SET token = '', done = true, expires_at = excluded.expires_at
WHERE NOT d.done OR d.expires_at <= now()`
	s.rel = `DELETE FROM ` + t + ` WHERE key = $1 AND token = $2 AND NOT done`
	s.prune = `DELETE FROM ` + t + ` WHERE key IN (SELECT key FROM ` + t + ` WHERE expires_at <= now() LIMIT 1000)`
	s.last.Store(time.Now().UnixNano())
	return s, nil
}

func micros(d time.Duration) int64 { return d.Microseconds() }

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// Claim implements dedupe.Store.
func (s *Store) Claim(ctx context.Context, key string, lease time.Duration) (dedupe.Claim, error) {
	s.maybePrune(ctx)
	token := uuid.NewString()
	for range 5 {
		var status int
		var ttl float64
		err := s.db.QueryRow(ctx, s.claim, key, token, micros(lease)).Scan(&status, &ttl)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // raced with a commit or an expiry: ask again
		}
		if err != nil {
			return dedupe.Claim{}, fmt.Errorf("pgdedupe: claim %q: %w", key, err)
		}
		c := dedupe.Claim{Key: key, Status: dedupe.Status(status), TTL: seconds(ttl)}
		if c.Status == dedupe.Claimed {
			c.Token = token
		}
		return c, nil
	}
	return dedupe.Claim{}, fmt.Errorf("pgdedupe: claim %q: the row kept changing under five attempts", key)
}

// Extend implements dedupe.Store.
func (s *Store) Extend(ctx context.Context, c dedupe.Claim, lease time.Duration) error {
	tag, err := s.db.Exec(ctx, s.extend, c.Key, c.Token, micros(lease))
	if err != nil {
		return fmt.Errorf("pgdedupe: extend %q: %w", c.Key, err)
	}
	if tag.RowsAffected() == 0 {
		return dedupe.ErrLeaseLost
	}
	return nil
}

// Complete implements dedupe.Store.
func (s *Store) Complete(ctx context.Context, c dedupe.Claim) error {
	if _, err := s.db.Exec(ctx, s.done, c.Key, micros(s.opts.Window)); err != nil {
		return fmt.Errorf("pgdedupe: complete %q: %w", c.Key, err)
	}
	return nil
}

// CompleteTx marks done, inside tx, the claim under which the handler
// called with ctx runs (dedupe.ClaimFrom), so that the effects the handler
// writes in tx and the mark commit together or not at all. tx is a
// transaction on the database that holds the store's table. A process killed
// before the commit leaves neither, and the redelivery runs the handler
// again; once tx has committed, every later delivery of the event is a
// duplicate. This is exactly-once processing for effects kept in PostgreSQL.
//
// It returns an error wrapping dedupe.ErrLeaseLost if the claim no longer
// holds the key (its lease expired and another consumer took it over, or the
// key is done): the caller must then roll tx back. It returns an error if
// ctx carries no claim (the handler does not run under dedupe.Middleware or
// dedupe.Handler). Until tx ends, a consumer claiming the same key waits for
// it.
func (s *Store) CompleteTx(ctx context.Context, tx DB) error {
	c, ok := dedupe.ClaimFrom(ctx)
	if !ok {
		return errors.New("pgdedupe: complete in transaction: no dedupe claim in the context; run the handler under dedupe.Middleware or dedupe.Handler")
	}
	tag, err := tx.Exec(ctx, s.doneTx, c.Key, c.Token, micros(s.opts.Window))
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, dedupe.ErrLeaseLost) {
			// The middleware canceled the handler on finding the lease lost.
			return fmt.Errorf("pgdedupe: complete %q in transaction: %w", c.Key, cause)
		}
		return fmt.Errorf("pgdedupe: complete %q in transaction: %w", c.Key, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("pgdedupe: complete %q in transaction: %w", c.Key, dedupe.ErrLeaseLost)
	}
	return nil
}

// Release implements dedupe.Store.
func (s *Store) Release(ctx context.Context, c dedupe.Claim) error {
	if _, err := s.db.Exec(ctx, s.rel, c.Key, c.Token); err != nil {
		return fmt.Errorf("pgdedupe: release %q: %w", c.Key, err)
	}
	return nil
}

// Prune deletes up to 1000 expired rows and returns how many it deleted.
// Claims call it every PruneEvery; call it yourself to prune on a schedule.
func (s *Store) Prune(ctx context.Context) (int64, error) {
	tag, err := s.db.Exec(ctx, s.prune)
	if err != nil {
		return 0, fmt.Errorf("pgdedupe: prune: %w", err)
	}
	return tag.RowsAffected(), nil
}

func (s *Store) maybePrune(ctx context.Context) {
	last := s.last.Load()
	now := time.Now().UnixNano()
	if now-last < int64(s.opts.PruneEvery) || !s.last.CompareAndSwap(last, now) {
		return
	}
	_, _ = s.Prune(ctx) // best effort: an expired row is as good as none
}
