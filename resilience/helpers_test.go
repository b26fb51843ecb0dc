package resilience_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/natsbus"
)

// quiet is a logger for services and breakers in tests.
var quiet = slog.New(slog.DiscardHandler)

// newBus starts an embedded NATS server for the test and connects to it.
func newBus(t testing.TB) *bus.Conn {
	t.Helper()
	conn, err := bus.Open(context.Background(), "embedded://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// start starts svc on conn and stops it when the test ends.
func start(t testing.TB, conn *bus.Conn, svc *switchboard.Service) {
	t.Helper()
	if err := svc.Start(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Shutdown(context.Background()) })
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type req struct {
	N int `json:"n"`
}

type rsp struct {
	N int `json:"n"`
}

// call is what client middleware sees for a call to service.endpoint.
func call(service, endpoint string) *switchboard.Call {
	return &switchboard.Call{Service: service, Endpoint: endpoint, Header: bus.Header{}}
}

// detail returns err's detail key ("" if none).
func detail(err error, key string) string {
	var e *bus.Error
	if !errors.As(err, &e) || e.Details == nil {
		return ""
	}
	return e.Details[key]
}

// wantReason fails unless err has code and every detail key=value given,
// and its message contains text.
func wantReason(t *testing.T, err error, code bus.Code, text string, kv ...string) {
	t.Helper()
	if got := bus.ErrorCode(err); got != code {
		t.Fatalf("code %v, want %v: %v", got, code, err)
	}
	if !strings.Contains(err.Error(), text) {
		t.Fatalf("error %q does not say %q", err, text)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if got := detail(err, kv[i]); kv[i+1] == "*" && got == "" || kv[i+1] != "*" && got != kv[i+1] {
			t.Fatalf("detail %s=%q, want %q: %v", kv[i], got, kv[i+1], err)
		}
	}
}

// ledger prints a fault test's counts as an aligned table.
type ledger struct {
	mu   sync.Mutex
	rows [][2]string
}

func (l *ledger) add(name string, v any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rows = append(l.rows, [2]string{name, fmt.Sprint(v)})
}

func (l *ledger) print(t *testing.T, title string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "ledger: %s\n", title)
	for _, r := range l.rows {
		fmt.Fprintf(&b, "  %-32s %s\n", r[0], r[1])
	}
	t.Log(b.String())
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}
