package natsbus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

func TestBacklogCountsPendingAndUnacked(t *testing.T) {
	srv := testServer(t, ServerOptions{})
	c := testOpen(t, srv.ClientURL())
	ctx := ctxWait(t)
	if !c.CanReportBacklog() {
		t.Fatal("the NATS driver does not report backlogs")
	}
	held := make(chan struct{})
	started := make(chan struct{}, 10)
	sub, err := c.Subscribe(ctx, "orders.placed", "shipping", func(ctx context.Context, d *bus.Delivery) error {
		started <- struct{}{}
		select {
		case <-held:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, bus.SubscribeOptions{Concurrency: 1, Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { close(held); _ = sub.Stop(context.Background()) }()
	const n = 10
	for i := range n {
		if err := c.Publish(ctx, &bus.Message{Subject: "orders.placed", Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	<-started // one is being handled; the member holds at most Prefetch+Concurrency
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, err := c.Backlog(ctx, "orders.placed", "shipping")
		if err != nil {
			t.Fatal(err)
		}
		if b.Pending+b.Unacked == n && b.Unacked >= 1 && b.Pending >= n-2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog %+v, want %d in all, at least one unacked and at most two delivered", b, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.Backlog(ctx, "orders.placed", "nosuchgroup"); bus.ErrorCode(err) != bus.NotFound {
		t.Fatalf("backlog of a group that does not exist: got %v, want NotFound", err)
	}
}
