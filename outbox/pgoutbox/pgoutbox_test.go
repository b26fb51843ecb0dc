package pgoutbox_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-dev/switchboard/internal/pgtest"
	"github.com/switchboard-dev/switchboard/outbox"
	"github.com/switchboard-dev/switchboard/outbox/outboxtest"
	"github.com/switchboard-dev/switchboard/outbox/pgoutbox"
)

const envURL = "SWITCHBOARD_PGOUTBOX_TEST_URL"

func TestMain(m *testing.M) {
	outboxtest.Main(m, func(ctx context.Context) (outbox.Store, error) {
		pool, err := pgxpool.New(ctx, os.Getenv(envURL))
		if err != nil {
			return nil, err
		}
		return pgoutbox.New(ctx, pool, pgoutbox.Options{})
	})
}

func TestConformance(t *testing.T) {
	outboxtest.Run(t, outboxtest.Harness{New: func(t *testing.T) outboxtest.Setup {
		ctx := context.Background()
		url := pgtest.Schema(t)
		pool := pgtest.Pool(t, url)
		store, err := pgoutbox.New(ctx, pool, pgoutbox.Options{Source: "/switchboard/outboxtest"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `CREATE TABLE rows (n integer PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		return outboxtest.Setup{
			Open: func(t *testing.T) outbox.Store {
				s, err := pgoutbox.New(ctx, pgtest.Pool(t, url), pgoutbox.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			Commit: func(ctx context.Context, n int, rollback bool, msgs ...outbox.Message) error {
				tx, err := pool.Begin(ctx)
				if err != nil {
					return err
				}
				defer tx.Rollback(ctx)
				if _, err := tx.Exec(ctx, `INSERT INTO rows (n) VALUES ($1)`, n); err != nil {
					return err
				}
				if err := store.Enqueue(ctx, tx, msgs...); err != nil {
					return err
				}
				if rollback {
					return tx.Rollback(ctx)
				}
				return tx.Commit(ctx)
			},
			Rows: func(ctx context.Context) ([]int, error) {
				rows, _ := pool.Query(ctx, `SELECT n FROM rows ORDER BY n`)
				return pgx.CollectRows(rows, pgx.RowTo[int])
			},
			Pending:  store.Pending,
			ChildEnv: []string{envURL + "=" + url},
		}
	}})
}
