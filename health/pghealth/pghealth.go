// Package pghealth is a health check for a PostgreSQL connection pool
// (github.com/jackc/pgx/v5/pgxpool), ready to attach to a service:
//
//	health.For(svc).Add("postgres", pghealth.Check(pool))
//
// It lives apart from package health so that services without PostgreSQL
// do not link pgx.
package pghealth

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-dev/switchboard/health"
)

// SlowPing is how long a ping may take before the check is Degraded.
const SlowPing = 500 * time.Millisecond

// Check returns a check that pings the database through pool: Unhealthy if
// the ping fails, Degraded if it is slow or every connection is in use while
// callers wait for one, Healthy otherwise. The message gives the ping time
// and the pool's use.
func Check(pool *pgxpool.Pool) health.CheckFunc {
	var lastWaits atomic.Int64 // a check may be shared by checkers
	return func(ctx context.Context) health.Result {
		start := time.Now()
		err := pool.Ping(ctx)
		took := time.Since(start)
		st := pool.Stat()
		if err != nil {
			return health.Unhealthyf("postgres ping failed after %s: %v", took.Round(time.Millisecond), err)
		}
		waits := st.EmptyAcquireCount()
		waited := waits - lastWaits.Swap(waits)
		switch {
		case took > SlowPing:
			return health.Degradedf("postgres ping took %s (slow: over %s); %d/%d connections in use", took.Round(time.Millisecond), SlowPing, st.AcquiredConns(), st.MaxConns())
		case st.AcquiredConns() >= st.MaxConns() && waited > 0:
			return health.Degradedf("postgres pool exhausted: %d/%d connections in use, %d acquires waited since the last check", st.AcquiredConns(), st.MaxConns(), waited)
		}
		return health.OK("postgres ping %s; %d/%d connections in use", took.Round(10*time.Microsecond), st.AcquiredConns(), st.MaxConns())
	}
}
