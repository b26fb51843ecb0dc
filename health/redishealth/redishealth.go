// Package redishealth is a health check for a Redis client
// (github.com/redis/go-redis/v9), ready to attach to a service:
//
//	health.For(svc).Add("redis", redishealth.Check(client))
//
// It lives apart from package health so that services without Redis do not
// link go-redis.
package redishealth

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/health"
)

// SlowPing is how long a PING may take before the check is Degraded.
const SlowPing = 250 * time.Millisecond

// Check returns a check that sends PING through client (a *redis.Client,
// *redis.ClusterClient or any UniversalClient): Unhealthy if it fails,
// Degraded if it is slow or the pool timed out handing out connections since
// the last check, Healthy otherwise.
func Check(client redis.UniversalClient) health.CheckFunc {
	var lastTimeouts atomic.Uint32 // a check may be shared by checkers
	return func(ctx context.Context) health.Result {
		start := time.Now()
		err := client.Ping(ctx).Err()
		took := time.Since(start)
		if err != nil {
			return health.Unhealthyf("redis PING failed after %s: %v", took.Round(time.Millisecond), err)
		}
		st := client.PoolStats()
		timeouts := st.Timeouts - lastTimeouts.Swap(st.Timeouts)
		switch {
		case took > SlowPing:
			return health.Degradedf("redis PING took %s (slow: over %s)", took.Round(time.Millisecond), SlowPing)
		case timeouts > 0:
			return health.Degradedf("redis pool: %d timeouts waiting for a connection since the last check (%d total, %d idle)", timeouts, st.TotalConns, st.IdleConns)
		}
		return health.OK("redis PING %s; %d connections (%d idle)", took.Round(10*time.Microsecond), st.TotalConns, st.IdleConns)
	}
}
