package sqliteoutbox_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/outbox"
	"github.com/switchboard-dev/switchboard/outbox/outboxtest"
	"github.com/switchboard-dev/switchboard/outbox/sqliteoutbox"
)

const envPath = "SWITCHBOARD_SQLITEOUTBOX_TEST_PATH"

func TestMain(m *testing.M) {
	outboxtest.Main(m, func(ctx context.Context) (outbox.Store, error) {
		db, err := sqliteoutbox.Open(os.Getenv(envPath))
		if err != nil {
			return nil, err
		}
		// A killed relay's records (and the later ones of their keys) wait
		// for its lease to expire: keep it short here.
		return sqliteoutbox.New(ctx, db, sqliteoutbox.Options{Lease: time.Second})
	})
}

func open(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sqliteoutbox.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	outboxtest.Run(t, outboxtest.Harness{New: func(t *testing.T) outboxtest.Setup {
		ctx := context.Background()
		path := filepath.Join(t.TempDir(), "service.db")
		db := open(t, path)
		store, err := sqliteoutbox.New(ctx, db, sqliteoutbox.Options{Source: "/switchboard/outboxtest", Lease: 15 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `CREATE TABLE rows (n INTEGER PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		return outboxtest.Setup{
			Open: func(t *testing.T) outbox.Store {
				s, err := sqliteoutbox.New(ctx, open(t, path), sqliteoutbox.Options{Lease: 15 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			Commit: func(ctx context.Context, n int, rollback bool, msgs ...outbox.Message) error {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				defer tx.Rollback()
				if _, err := tx.ExecContext(ctx, `INSERT INTO rows (n) VALUES (?)`, n); err != nil {
					return err
				}
				if err := store.Enqueue(ctx, tx, msgs...); err != nil {
					return err
				}
				if rollback {
					return tx.Rollback()
				}
				return tx.Commit()
			},
			Rows: func(ctx context.Context) ([]int, error) {
				rows, err := db.QueryContext(ctx, `SELECT n FROM rows ORDER BY n`)
				if err != nil {
					return nil, err
				}
				defer rows.Close()
				var ns []int
				for rows.Next() {
					var n int
					if err := rows.Scan(&n); err != nil {
						return nil, err
					}
					ns = append(ns, n)
				}
				return ns, rows.Err()
			},
			Pending:  store.Pending,
			ChildEnv: []string{envPath + "=" + path},
		}
	}})
}
