package amqpbus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

func TestBacklogCountsWhatWaitsInTheGroupQueue(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	ctx := ctxWait(t)
	if !c.CanReportBacklog() {
		t.Fatal("the AMQP driver does not report backlogs")
	}
	held, started := make(chan struct{}), make(chan struct{}, 10)
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
	<-started // one is being handled; the member holds at most two
	deadline := time.Now().Add(wait)
	for {
		b, err := c.Backlog(ctx, "orders.placed", "shipping")
		if err != nil {
			t.Fatal(err)
		}
		if !b.UnackedUnknown || b.Unacked != 0 {
			t.Fatalf("backlog %+v: AMQP cannot tell the unacknowledged, and must say so", b)
		}
		if b.Pending >= n-2 && b.Pending < n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog %+v, want %d to %d pending with one or two delivered", b, n-2, n-1)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.Backlog(ctx, "orders.placed", "nosuchgroup"); bus.ErrorCode(err) != bus.NotFound {
		t.Fatalf("backlog of a group that does not exist: got %v, want NotFound", err)
	}
}
