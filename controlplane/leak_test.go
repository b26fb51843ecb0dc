package controlplane_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard-dev/switchboard/bus/natsbus"
	"github.com/switchboard-dev/switchboard/controlplane"
)

// TestShutdownLeavesNoGoroutines: after Shutdown, everything the control
// plane started (its service, health checks, listeners, poll loop, HTTP
// server) has ended.
func TestShutdownLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv, err := natsbus.StartServer(natsbus.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := srv.Open(ctx, natsbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := controlplane.Start(ctx, conn, controlplane.Options{Poll: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	rsp, err := (&http.Client{Transport: tr}).Get(cp.URL() + "api/graph")
	if err != nil {
		t.Fatal(err)
	}
	rsp.Body.Close()
	tr.CloseIdleConnections()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := cp.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if err := cp.Shutdown(sctx); err != nil { // twice is harmless
		t.Fatal(err)
	}
	conn.Close()
	srv.Shutdown()
}
