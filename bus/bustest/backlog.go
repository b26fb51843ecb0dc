package bustest

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

// testBacklog holds one delivery in a handler of a group with Prefetch 1
// and checks what Backlog reports for the rest.
func testBacklog(t *testing.T, e *env) {
	c := e.open()
	if !c.CanReportBacklog() {
		t.Skip("the driver does not implement driver.Backlogs")
	}
	topic, group := e.subject("backlog"), e.group("shipping")
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	e.subscribe(c, topic, group, bus.SubscribeOptions{Concurrency: 1, Prefetch: 1, Backoff: fastBackoff}, func(ctx context.Context, d *bus.Delivery) error {
		started <- struct{}{}
		if !e.block(release) {
			return ctx.Err()
		}
		return nil
	})
	defer close(release)
	const n = 10
	e.publishN(c, topic, "b", n)
	select {
	case <-started: // one is being handled; the member holds at most two
	case <-time.After(waitTimeout):
		t.Fatalf("timed out after %v waiting for the first delivery", waitTimeout)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		b, err := c.Backlog(e.ctx, topic, group)
		if err != nil {
			t.Fatal(err)
		}
		if b.UnackedUnknown && b.Unacked != 0 {
			t.Fatalf("backlog %+v: Unacked must be 0 when it is unknown", b)
		}
		held := b.Unacked >= 1 || b.UnackedUnknown
		if held && b.Pending >= n-2 && b.Pending < n && (b.UnackedUnknown || b.Pending+b.Unacked == n) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog %+v: want %d in all, %d to %d of them pending, and the delivered ones unacked (or unknown)", b, n, n-2, n-1)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.Backlog(e.ctx, topic, e.group("nosuchgroup")); bus.ErrorCode(err) != bus.NotFound {
		t.Fatalf("backlog of a group that does not exist: got %v, want NotFound", err)
	}
}
