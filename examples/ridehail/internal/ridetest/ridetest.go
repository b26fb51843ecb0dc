// Package ridetest runs the ride-hailing services for tests: on a real
// embedded NATS server with JetStream (package natsbus), one per test, torn
// down when the test ends.
package ridetest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/natsbus" // embedded://
)

// Timeout is the generous deadline for anything a test waits for: long
// enough never to fire on a slow CI machine, short enough to report a hang.
const Timeout = 20 * time.Second

// Bus starts an embedded NATS server for t, its data in a temporary
// directory, and returns a connection to it, closed when t ends.
func Bus(t testing.TB) *bus.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	conn, err := bus.Open(ctx, "embedded://"+t.TempDir())
	if err != nil {
		t.Fatalf("start embedded bus: %v", err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("close bus: %v", err)
		}
	})
	return conn
}

// Logger returns a logger that writes warnings and errors to t's output.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// Start starts svcs on conn in order and shuts them down in reverse order
// when t ends (before conn closes, as Bus registered its clean-up first).
func Start(t testing.TB, conn *bus.Conn, svcs ...*switchboard.Service) {
	t.Helper()
	for _, s := range svcs {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		err := s.Start(ctx, conn)
		cancel()
		if err != nil {
			t.Fatalf("start %s: %v", s.Name(), err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), Timeout)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Errorf("shut down %s: %v", s.Name(), err)
			}
		})
	}
}

// Client returns a client on conn, closed when t ends.
func Client(t testing.TB, conn *bus.Conn) *switchboard.Client {
	c := switchboard.NewClient(conn, switchboard.WithCaller("test"), switchboard.WithDefaultTimeout(Timeout))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Context returns a context that ends after Timeout or when t ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), Timeout)
	t.Cleanup(cancel)
	return ctx
}

// Await calls f every few milliseconds until it returns nil, and fails t
// with f's last error if that does not happen within Timeout. It is for
// effects that happen asynchronously, such as an event being consumed.
func Await(t testing.TB, what string, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f(ctx)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %v: %v", what, Timeout, err)
		case <-tick.C:
		}
	}
}
