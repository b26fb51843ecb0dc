package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/admin"
	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/natsbus"
	"github.com/switchboard-dev/switchboard/health"
)

type req struct {
	Name string `json:"name"`
}
type rsp struct {
	Greeting string `json:"greeting"`
}

var (
	greet      = switchboard.Endpoint[*req, *rsp]("greeter", "greet")
	greetPlain = switchboard.Endpoint[*req, *rsp]("plain", "greet")
)

func newBus(t testing.TB) *bus.Conn {
	t.Helper()
	conn, err := bus.Open(context.Background(), "embedded://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// newBusOn opens a second connection to the embedded server behind conn,
// as a separate client process would have.
func newBusOn(t testing.TB, conn *bus.Conn) *bus.Conn {
	t.Helper()
	c, err := bus.Open(context.Background(), conn.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func handle(ctx context.Context, r *req) (*rsp, error) { return &rsp{Greeting: "hello " + r.Name}, nil }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

func TestReadinessFollowsTheChecksAndMetricsCountCalls(t *testing.T) {
	conn := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := admin.New()
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	base := srv.URL()

	// Nothing attached yet: alive, but not ready.
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with no services: %d %s, want 503", code, body)
	}
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q, want 200 ok", code, body)
	}

	svc := switchboard.NewService("greeter", "1.0.0")
	greet.Handle(svc, handle)
	chk := srv.Attach(svc).Every(time.Hour) // the test refreshes
	var sick atomic.Bool
	chk.Add("custom", func(ctx context.Context) health.Result {
		if sick.Load() {
			return health.Unhealthyf("the custom dependency is down")
		}
		return health.OK("fine")
	})
	if err := svc.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before the checks started: %d, want 503", code)
	}
	if err := chk.Start(ctx); err != nil {
		t.Fatal(err)
	}
	code, body := get(t, base+"/readyz")
	if code != http.StatusOK {
		t.Fatalf("/readyz: %d %s, want 200", code, body)
	}
	var rd admin.Readiness
	if err := json.Unmarshal([]byte(body), &rd); err != nil || !rd.Ready || len(rd.Services) != 1 || rd.Services[0].Service != "greeter" {
		t.Errorf("/readyz body %s (%v)", body, err)
	}

	sick.Store(true)
	if _, err := chk.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	code, body = get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "the custom dependency is down") {
		t.Errorf("/readyz with an unhealthy check: %d %s, want 503 naming it", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d, want 200: a failing dependency is not a reason to restart", code)
	}

	cl := switchboard.NewClient(conn, switchboard.WithCaller("web"))
	defer cl.Close()
	for range 4 {
		if _, err := greet.Call(ctx, cl, &req{Name: "Ada"}); err != nil {
			t.Fatal(err)
		}
	}
	_, metricsText := get(t, base+"/metrics")
	want := `# HELP switchboard_rpc_server_requests_total Requests served, by endpoint, caller and result code (OK or the error code returned).
# TYPE switchboard_rpc_server_requests_total counter
switchboard_rpc_server_requests_total{caller="web",code="OK",endpoint="greet",service="greeter"} 4
`
	if err := testutil.CollectAndCompare(srv.Registry(), strings.NewReader(want), "switchboard_rpc_server_requests_total"); err != nil {
		t.Error(err)
	}
	for _, line := range []string{
		`switchboard_health_check_status{check="custom",instance="` + svc.ID() + `",service="greeter",status="unhealthy"} 1`,
		`switchboard_health_check_status{check="bus",instance="` + svc.ID() + `",service="greeter",status="healthy"} 1`,
		`switchboard_bus_connected{instance="` + svc.ID() + `",service="greeter"} 1`,
		`switchboard_rpc_server_in_flight{endpoint="greet",service="greeter"} 0`,
		`go_goroutines `,
	} {
		if !strings.Contains(metricsText, line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}

	sick.Store(false)
	if _, err := chk.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after recovery: %d, want 200", code)
	}
	if err := chk.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz after Stop: %d %s, want 503 saying it shuts down", code, body)
	}
}

func TestListenReportsATakenAddress(t *testing.T) {
	a := admin.New()
	if err := a.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	b := admin.New()
	err := b.Listen(a.Addr())
	if err == nil || !strings.Contains(err.Error(), "admin: listen on "+a.Addr()) {
		t.Errorf("second Listen on %s: %v, want an error naming the address", a.Addr(), err)
	}
	if err := a.Listen("127.0.0.1:0"); err == nil {
		t.Error("Listen twice on one server succeeded")
	}
	if code, _ := get(t, a.URL()+"/nope"); code != http.StatusNotFound {
		t.Errorf("/nope: %d, want 404", code)
	}
	res, err := http.Post(a.URL()+"/readyz", "text/plain", bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %d, want 405", res.StatusCode)
	}
}

func tempDir() string {
	d, err := os.MkdirTemp("", "admin-example")
	if err != nil {
		panic(err)
	}
	return d
}
