package redishealth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/health"
	"github.com/switchboard-dev/switchboard/health/redishealth"
	"github.com/switchboard-dev/switchboard/internal/redistest"
)

func TestCheckPingsRedis(t *testing.T) {
	c := redistest.Client(t) // skips without a server, naming ./scripts/test
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	check := redishealth.Check(c)
	if r := check(ctx); r.Status != health.Healthy || !strings.Contains(r.Message, "redis PING") {
		t.Errorf("live Redis: %s %q, want healthy with the ping time", r.Status, r.Message)
	}
}

func TestCheckFailsOnAnUnreachableServer(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if r := redishealth.Check(c)(ctx); r.Status != health.Unhealthy || !strings.Contains(r.Message, "redis PING failed") {
		t.Errorf("unreachable server: %s %q, want unhealthy", r.Status, r.Message)
	}
}
