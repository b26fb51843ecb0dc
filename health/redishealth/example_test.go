package redishealth_test

import (
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/health"
	"github.com/switchboard-dev/switchboard/health/redishealth"
)

// Attach the check to a service before it runs; `switchboard health`,
// /readyz and the health reports on the bus then include "redis".
func ExampleCheck() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	svc := switchboard.NewService("sessions", "1.0.0")
	health.For(svc).Add("redis", redishealth.Check(client))
	// app.Run(svc) starts the checks with the service.
}
