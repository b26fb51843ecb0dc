// Package redistest gives tests a key prefix of their own on the machine's
// Redis (SWITCHBOARD_TEST_REDIS_URL, or 127.0.0.1:6379), whose keys are
// deleted when the test ends. Without a server the test is skipped, or fails
// when CI=true.
package redistest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultURL is the server used when SWITCHBOARD_TEST_REDIS_URL is not set.
const DefaultURL = "redis://127.0.0.1:6379/0"

// Client returns a new client, closed when the test ends.
func Client(t testing.TB) *redis.Client {
	t.Helper()
	u := os.Getenv("SWITCHBOARD_TEST_REDIS_URL")
	if u == "" {
		u = DefaultURL
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("SWITCHBOARD_TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		msg := fmt.Sprintf("no Redis at %s (%v): run ./scripts/test, which installs and starts one, or set SWITCHBOARD_TEST_REDIS_URL", opts.Addr, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Prefix returns a key prefix no other test uses; its keys are deleted
// when the test ends.
func Prefix(t testing.TB) string {
	t.Helper()
	c := Client(t)
	p := fmt.Sprintf("sbtest:%016x:", rand.Uint64())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, p+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("clean up %s*: %v", p, err)
			return
		}
		if len(keys) > 0 {
			if err := c.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("clean up %s*: %v", p, err)
			}
		}
	})
	return p
}
