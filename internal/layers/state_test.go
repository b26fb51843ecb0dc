package layers

import (
	"strings"
	"testing"
)

// The idempotency and outbox packages: the portable ones (dedupe, outbox)
// and their conformance suites import no database or broker client; each
// store imports only its own database's client; nothing below them (bus,
// wire, the SDK, resilience) imports them or a database client.
func TestStatePackagesKeepTheirLayers(t *testing.T) {
	pgx, redis, sqlite := "github.com/jackc/pgx/", "github.com/redis/go-redis/", "modernc.org/sqlite"
	brokers := []string{"github.com/nats-io/", "github.com/rabbitmq/"}
	dbs := []string{pgx, redis, sqlite}
	above := []string{mod + "/app", mod + "/cli", mod + "/examples/", mod + "/cmd/"}
	rules := map[string]struct {
		allowed   string   // the one database client it may use
		forbidden []string // project packages it must not depend on
	}{
		mod + "/dedupe":              {forbidden: []string{mod + "/outbox"}},
		mod + "/dedupe/pgdedupe":     {allowed: pgx, forbidden: []string{mod + "/outbox"}},
		mod + "/dedupe/redisdedupe":  {allowed: redis, forbidden: []string{mod + "/outbox"}},
		mod + "/outbox":              {forbidden: []string{mod + "/dedupe"}},
		mod + "/outbox/pgoutbox":     {allowed: pgx, forbidden: []string{mod + "/dedupe"}},
		mod + "/outbox/sqliteoutbox": {allowed: sqlite, forbidden: []string{mod + "/dedupe"}},
		mod + "/dedupe/dedupetest":   {},
		mod + "/outbox/outboxtest":   {},
		mod + "/bus":                 {forbidden: []string{mod + "/dedupe", mod + "/outbox"}},
		mod + "/wire":                {forbidden: []string{mod + "/dedupe", mod + "/outbox"}},
		mod:                          {forbidden: []string{mod + "/dedupe", mod + "/outbox"}},
		mod + "/resilience":          {forbidden: []string{mod + "/dedupe", mod + "/outbox"}},
	}
	var patterns []string
	for p := range rules {
		patterns = append(patterns, p)
	}
	seen := 0
	for _, p := range listDeps(t, patterns...) {
		r, ok := rules[p.ImportPath]
		if !ok {
			continue
		}
		seen++
		for _, d := range p.Deps {
			for _, db := range dbs {
				if strings.HasPrefix(d, db) && db != r.allowed {
					t.Errorf("%s depends on database client %s: only its own store package may", p.ImportPath, d)
				}
			}
			for _, b := range brokers {
				// outboxtest runs an embedded NATS server for its tests.
				if strings.HasPrefix(d, b) && p.ImportPath != mod+"/outbox/outboxtest" {
					t.Errorf("%s depends on broker client %s: it must stay broker-neutral", p.ImportPath, d)
				}
			}
			for _, bad := range append(r.forbidden, above...) {
				if d == bad || strings.HasPrefix(d, bad+"/") || strings.HasSuffix(bad, "/") && strings.HasPrefix(d, bad) {
					t.Errorf("%s depends on %s, a layer above or beside it", p.ImportPath, d)
				}
			}
		}
	}
	if seen != len(rules) {
		t.Fatalf("go list reported %d of the %d packages", seen, len(rules))
	}
}
