// Package redisdedupe is a dedupe.Store in Redis, shared by every instance
// of a consumer group that uses the same server and prefix.
//
// One key per event key: its value is the holder's token while claimed and
// "done" once handled, and its expiry, in Redis's clock, is the lease's end
// or the window's end. Each operation is one Lua script, so it is atomic.
//
// Redis must keep these keys until they expire: with a maxmemory policy
// that evicts keys with a TTL (volatile-*, allkeys-*), an evicted claim can
// let a second instance run a handler that is still running, and an evicted
// done key lets a duplicate through. Use noeviction, or a server of its own.
//
// The package sits beside dedupe in the cross-cutting layer and imports
// go-redis (github.com/redis/go-redis/v9).
package redisdedupe

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/dedupe"
)

// Defaults of Options.
const (
	DefaultPrefix = "switchboard:dedupe:"
	DefaultWindow = 24 * time.Hour
)

// Options configure a Store. The zero value is the defaults.
type Options struct {
	// Prefix is put before every key (default DefaultPrefix).
	Prefix string
	// Window is how long a handled key is remembered (default
	// DefaultWindow, 24 hours): one Redis key per event is kept that long.
	Window time.Duration
}

// Store is a dedupe.Store in Redis. It is safe for concurrent use.
type Store struct {
	rdb  redis.Scripter
	opts Options
}

var _ dedupe.Store = (*Store)(nil)

// New returns a store on rdb: a *redis.Client, *redis.ClusterClient or any
// client that runs scripts.
func New(rdb redis.Scripter, opts Options) *Store {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	return &Store{rdb: rdb, opts: opts}
}

// Replies of claimScript: {status, ttl in ms}, status as dedupe.Status.
var claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
	redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
	return {1, tonumber(ARGV[2])}
end
local ttl = redis.call('PTTL', KEYS[1])
if v == 'done' then return {2, ttl} end
return {3, ttl}`)

var extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)

var completeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= 'done' then
	redis.call('SET', KEYS[1], 'done', 'PX', ARGV[1])
end
return 1`)

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0`)

func ms(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

// Claim implements dedupe.Store.
func (s *Store) Claim(ctx context.Context, key string, lease time.Duration) (dedupe.Claim, error) {
	token := uuid.NewString()
	r, err := claimScript.Run(ctx, s.rdb, []string{s.opts.Prefix + key}, token, ms(lease)).Int64Slice()
	if err != nil {
		return dedupe.Claim{}, fmt.Errorf("redisdedupe: claim %q: %w", key, err)
	}
	if len(r) != 2 {
		return dedupe.Claim{}, fmt.Errorf("redisdedupe: claim %q: unexpected reply %v", key, r)
	}
	c := dedupe.Claim{Key: key, Status: dedupe.Status(r[0]), TTL: time.Duration(r[1]) * time.Millisecond}
	if c.Status == dedupe.Claimed {
		c.Token = token
	}
	return c, nil
}

// Extend implements dedupe.Store.
func (s *Store) Extend(ctx context.Context, c dedupe.Claim, lease time.Duration) error {
	n, err := extendScript.Run(ctx, s.rdb, []string{s.opts.Prefix + c.Key}, c.Token, ms(lease)).Int64()
	if err != nil {
		return fmt.Errorf("redisdedupe: extend %q: %w", c.Key, err)
	}
	if n == 0 {
		return dedupe.ErrLeaseLost
	}
	return nil
}

// Complete implements dedupe.Store.
func (s *Store) Complete(ctx context.Context, c dedupe.Claim) error {
	if err := completeScript.Run(ctx, s.rdb, []string{s.opts.Prefix + c.Key}, ms(s.opts.Window)).Err(); err != nil {
		return fmt.Errorf("redisdedupe: complete %q: %w", c.Key, err)
	}
	return nil
}

// Release implements dedupe.Store.
func (s *Store) Release(ctx context.Context, c dedupe.Claim) error {
	if err := releaseScript.Run(ctx, s.rdb, []string{s.opts.Prefix + c.Key}, c.Token).Err(); err != nil {
		return fmt.Errorf("redisdedupe: release %q: %w", c.Key, err)
	}
	return nil
}
