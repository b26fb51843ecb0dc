package health_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/health"
)

// A service gets the built-in checks from For; a custom check is one line.
// Package app does the For, Start and Stop for every service it runs.
func ExampleFor() {
	ctx := context.Background()
	conn, err := bus.Open(ctx, "embedded://"+tempDir())
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	svc := switchboard.NewService("pricing", "1.0.0")
	quote := switchboard.Endpoint[*req, *rsp]("pricing", "quote")
	quote.Handle(svc, func(ctx context.Context, r *req) (*rsp, error) { return &rsp{}, nil },
		switchboard.ExpectLatency(50*time.Millisecond))

	checker := health.For(svc).Add("tariffs", health.ErrorCheck(func(ctx context.Context) error {
		return errors.New("tariff table is empty")
	}))
	_ = svc.Start(ctx, conn)
	defer svc.Shutdown(ctx)
	_ = checker.Start(ctx)
	defer checker.Stop(ctx)

	r := checker.Report()
	fmt.Println(r.Status)
	for _, c := range r.Checks {
		fmt.Println(c.Name, c.Status)
	}
	// Output:
	// unhealthy
	// bus healthy
	// capacity healthy
	// latency healthy
	// events healthy
	// tariffs unhealthy
}
