package traffic_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus/natsbus"
	"github.com/switchboard-dev/switchboard/traffic"
)

func TestCounterCountsByCallerWithinItsBound(t *testing.T) {
	c := traffic.NewCounter()
	c.Observe("quote", "trips", false, 300*time.Microsecond)
	c.Observe("quote", "trips", true, 3*time.Millisecond)
	c.Observe("quote", "", false, 20*time.Second)
	for i := range traffic.MaxCallers + 10 {
		c.Observe("quote", fmt.Sprint("c", i), false, time.Millisecond)
	}
	e := c.Report().Endpoints["quote"]
	if got := e.Callers["trips"]; got.Requests != 2 || got.Errors != 1 {
		t.Errorf("trips: %+v", got)
	}
	if got := e.Callers[traffic.UnknownCaller]; got.Requests != 1 {
		t.Errorf("no caller: %+v", got)
	}
	if len(e.Callers) > traffic.MaxCallers+1 || e.Callers[traffic.OtherCaller].Requests == 0 {
		t.Errorf("%d callers kept, other %+v: want at most %d, the rest as %s", len(e.Callers), e.Callers[traffic.OtherCaller], traffic.MaxCallers+1, traffic.OtherCaller)
	}
	want := map[int]int64{4: 1, 7: 1, 18: 1, 5: traffic.MaxCallers + 10} // 0.2-0.5 ms, 2-5 ms, > 10 s, 0.5-1 ms
	for i, n := range e.Latency {
		if n != want[i] {
			t.Errorf("latency bucket %d (≤ %v ms): %d, want %d", i, bound(i), n, want[i])
		}
	}
}

func bound(i int) any {
	if i < len(traffic.BucketBounds) {
		return traffic.BucketBounds[i]
	}
	return "inf"
}

type req struct{}
type rsp struct{}

// TestInstalledCountersAreAnnounced runs a service with traffic installed
// on a real bus and reads its counts from its discovery announcement.
func TestInstalledCountersAreAnnounced(t *testing.T) {
	srv, err := natsbus.StartServer(natsbus.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	ctx := context.Background()
	conn, err := srv.Open(ctx, natsbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	svc := switchboard.NewService("echo", "1.0.0")
	ep := switchboard.Endpoint[*req, *rsp]("echo", "ping")
	ep.Handle(svc, func(context.Context, *req) (*rsp, error) { return &rsp{}, nil })
	if err := traffic.Install(svc); err != nil {
		t.Fatal(err)
	}
	if err := traffic.Install(svc); err != nil { // twice: installs once
		t.Fatal(err)
	}
	if err := svc.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(ctx)
	cl := switchboard.NewClient(conn, switchboard.WithCaller("tester"))
	defer cl.Close()
	for range 3 {
		if _, err := ep.Call(ctx, cl, &req{}); err != nil {
			t.Fatal(err)
		}
	}
	var rep traffic.Report
	if err := json.Unmarshal(svc.Info().Status[traffic.StatusName], &rep); err != nil {
		t.Fatal(err)
	}
	if got := rep.Endpoints["ping"].Callers["tester"].Requests; got != 3 {
		t.Errorf("announced %d requests from tester, want 3 (counted once): %+v", got, rep)
	}
}
