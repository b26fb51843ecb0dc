package app_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/admin"
	"github.com/switchboard-dev/switchboard/app"
	"github.com/switchboard-dev/switchboard/health"
)

var echoEP = switchboard.Endpoint[*ping, *ping]("echoer", "echo")

// TestRunGivesEveryServiceHealthAndMetrics runs a service the way a program
// does, with an admin address: its built-in checks run, /readyz is ready,
// /metrics counts its calls, and the checks stop before the service does.
func TestRunGivesEveryServiceHealthAndMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc := switchboard.NewService("echoer", "1.0.0")
	echoEP.Handle(svc, func(ctx context.Context, p *ping) (*ping, error) { return p, nil })
	runCtx, stop := context.WithCancel(ctx)
	ready := make(chan *admin.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.RunOptions(runCtx, app.Options{BusURL: "embedded://" + t.TempDir(), AdminAddr: "127.0.0.1:0",
			Ready: func(a *admin.Server) { ready <- a }}, svc)
	}()
	var adm *admin.Server
	select {
	case adm = <-ready:
	case err := <-done:
		t.Fatalf("RunOptions returned early: %v", err)
	}
	if r := health.For(svc).Report(); r.Status != health.Healthy || len(r.Checks) != 5 {
		t.Errorf("report %+v: want the four built-in checks and app's config check, healthy", r)
	}
	if _, err := echoEP.Call(ctx, svc, &ping{}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/readyz":  `"ready": true`,
		"/metrics": `switchboard_rpc_server_requests_total{caller="echoer",code="OK",endpoint="echo",service="echoer"} 1`,
	} {
		res, err := http.Get(adm.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d, want 200 with %s:\n%s", path, res.StatusCode, want, b)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if health.For(svc).Running() {
		t.Error("the checker still runs after Run returned")
	}
}

func TestRunRefusesATakenAdminAddress(t *testing.T) {
	taken := admin.New()
	if err := taken.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer taken.Shutdown(context.Background())
	svc := switchboard.NewService("echoer", "1.0.0")
	err := app.RunOptions(context.Background(), app.Options{BusURL: "embedded://" + t.TempDir(), AdminAddr: taken.Addr()}, svc)
	if err == nil || !strings.Contains(err.Error(), "admin: listen on "+taken.Addr()) {
		t.Errorf("RunOptions on a taken admin address: %v", err)
	}
}
