package redisdedupe_test

import (
	"github.com/redis/go-redis/v9"

	switchboard "github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/dedupe"
	"github.com/switchboard-dev/switchboard/dedupe/redisdedupe"
)

// Every instance of the billing service shares one Redis, so an event runs
// its handler once in the whole consumer group.
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	store := redisdedupe.New(rdb, redisdedupe.Options{Prefix: "billing:dedupe:"})
	svc := switchboard.NewService("billing", "1.0.0",
		switchboard.WithConsumerMiddleware(dedupe.Middleware(store)))
	_ = svc // subscribe, then svc.Start(ctx, conn)
}
