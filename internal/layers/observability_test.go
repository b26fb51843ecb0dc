package layers

import (
	"strings"
	"testing"
)

// TestObservabilityStaysOutOfTheCore keeps health checks and metrics where
// they belong: the SDK and the layers below it link no Prometheus, pgx or
// go-redis; package health links no database client (pghealth and
// redishealth do, for those who attach them); health, metrics and admin
// link no broker driver and nothing above them.
func TestObservabilityStaysOutOfTheCore(t *testing.T) {
	observability := []string{"github.com/prometheus/", "github.com/jackc/pgx/", "github.com/redis/go-redis/"}
	rules := map[string][]string{
		mod + "/bus":                observability,
		mod + "/wire":               observability,
		mod:                         append(observability, mod+"/health", mod+"/metrics", mod+"/admin"),
		mod + "/health":             {"github.com/prometheus/", "github.com/jackc/pgx/", "github.com/redis/go-redis/", mod + "/metrics", mod + "/admin", mod + "/app", mod + "/cli", mod + "/examples/", mod + "/bus/natsbus", mod + "/bus/amqpbus"},
		mod + "/metrics":            {"github.com/jackc/pgx/", "github.com/redis/go-redis/", mod + "/health", mod + "/admin", mod + "/app", mod + "/cli", mod + "/examples/", mod + "/bus/natsbus", mod + "/bus/amqpbus"},
		mod + "/admin":              {"github.com/jackc/pgx/", "github.com/redis/go-redis/", mod + "/app", mod + "/cli", mod + "/examples/", mod + "/bus/natsbus", mod + "/bus/amqpbus"},
		mod + "/health/pghealth":    {mod + "/app", mod + "/cli", mod + "/admin", "github.com/redis/go-redis/", "github.com/prometheus/"},
		mod + "/health/redishealth": {mod + "/app", mod + "/cli", mod + "/admin", "github.com/jackc/pgx/", "github.com/prometheus/"},
	}
	var pkgs []string
	for p := range rules {
		pkgs = append(pkgs, p)
	}
	for _, p := range listDeps(t, pkgs...) {
		for _, d := range p.Deps {
			for _, bad := range rules[p.ImportPath] {
				if d == bad || strings.HasPrefix(d, bad) && strings.HasSuffix(bad, "/") {
					t.Errorf("%s depends on %s", p.ImportPath, d)
				}
			}
		}
	}
}
