package switchboard_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
)

type orderPlaced struct {
	N      int    `json:"n"`
	Poison bool   `json:"poison,omitempty"`
	Note   string `json:"note,omitempty"`
}

func TestEvents(t *testing.T) {
	conn := newBus(t)
	ctx := ctxT(t)
	topic := switchboard.Topic[*orderPlaced]("orders.placed." + strconv.FormatInt(time.Now().UnixNano(), 36))

	var mu sync.Mutex
	got := map[int]*switchboard.EventInfo{}
	done := make(chan struct{})
	const n = 20
	svc := switchboard.NewService("shipping", "1.0.0")
	topic.Subscribe(svc, "shipping", func(ctx context.Context, ev *orderPlaced) error {
		if ev.Poison {
			return errors.New("cannot ship to the moon")
		}
		info, _ := switchboard.EventFrom(ctx)
		mu.Lock()
		defer mu.Unlock()
		got[ev.N] = info
		if len(got) == n {
			close(done)
		}
		return nil
	}, switchboard.MaxAttempts(3), switchboard.Backoff(func(int) time.Duration { return 10 * time.Millisecond }))
	if err := svc.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Shutdown(context.Background()) })
	pub := switchboard.NewClient(conn, switchboard.WithCaller("shop"))
	// An inspector group on the dead-letter topic, made before anything can
	// land there (a new group sees what is published after it exists).
	dead := make(chan *bus.Delivery, 1)
	sub, err := conn.Subscribe(ctx, bus.DeadLetterTopic("shipping", topic.Name()), "inspector", func(ctx context.Context, d *bus.Delivery) error {
		dead <- d
		return nil
	}, bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop(context.Background())

	// The poison event goes first: the ones behind it must still flow.
	if err := topic.Publish(ctx, pub, &orderPlaced{Poison: true, Note: "moon"}, switchboard.WithEventID("poison-1")); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := topic.Publish(ctx, pub, &orderPlaced{N: i}, switchboard.WithSubject(fmt.Sprint("order-", i))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("consumed %d of %d events", len(got), n)
	}
	mu.Lock()
	info := got[3]
	mu.Unlock()
	if info.Type != topic.Name() || info.Source != "/switchboard/shop" || info.Subject != "order-3" || info.ID == "" || info.Attempt != 1 || info.Group != "shipping" {
		t.Fatalf("event attributes: %+v", info)
	}

	// The poison event ends in the dead-letter topic with its reason.
	select {
	case d := <-dead:
		if d.Header.Get(bus.HeaderDeadReason) != "cannot ship to the moon" || d.Header.Get(bus.HeaderDeadAttempts) != "3" || d.Header.Get("ce-id") != "poison-1" {
			t.Fatalf("dead letter headers: %v", d.Header)
		}
	case <-ctx.Done():
		t.Fatal("the poison event was not dead-lettered")
	}
}

func TestPublishBeforeStartIsAClearError(t *testing.T) {
	svc := switchboard.NewService("idle", "1.0.0")
	topic := switchboard.Topic[*orderPlaced]("orders.placed")
	err := topic.Publish(context.Background(), svc, &orderPlaced{})
	if switchboard.ErrorCode(err) != switchboard.FailedPrecondition {
		t.Fatalf("got %v", err)
	}
}

func TestConsumerMiddlewareSeesEveryEventAndCanSkipDuplicates(t *testing.T) {
	conn := newBus(t)
	ctx := ctxT(t)
	topic := switchboard.Topic[*orderPlaced]("orders.deduped." + strconv.FormatInt(time.Now().UnixNano(), 36))
	var mu sync.Mutex
	seenIDs := map[string]bool{}
	var skipped []string
	dedupe := func(next switchboard.EventHandler) switchboard.EventHandler {
		return func(ctx context.Context, ev *switchboard.EventCall) error {
			mu.Lock()
			dup := seenIDs[ev.Info.ID]
			seenIDs[ev.Info.ID] = true
			if dup {
				skipped = append(skipped, ev.Topic+" "+ev.Info.ID)
			}
			mu.Unlock()
			if dup {
				return nil // acknowledged, not handled again
			}
			return next(ctx, ev)
		}
	}
	handled := make(chan int, 10)
	svc := switchboard.NewService("billing", "1.0.0", switchboard.WithConsumerMiddleware(dedupe))
	topic.Subscribe(svc, "billing", func(ctx context.Context, ev *orderPlaced) error {
		handled <- ev.N
		return nil
	})
	if err := svc.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Shutdown(context.Background()) })
	// The same event twice (same ce-id; a different bus message id so the
	// broker's own de-duplication does not hide it), then another.
	for i, m := range []struct {
		id  string
		n   int
		msg string
	}{{"ev-1", 1, "m-1"}, {"ev-1", 1, "m-2"}, {"ev-2", 2, "m-3"}} {
		h := bus.Header{"ce-specversion": "1.0", "ce-id": m.id, "ce-source": "/test", "ce-type": topic.Name()}
		if err := conn.Publish(ctx, &bus.Message{Subject: topic.Name(), Header: h, ID: m.msg, Body: []byte(fmt.Sprintf(`{"n":%d}`, m.n))}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	for _, want := range []int{1, 2} {
		select {
		case got := <-handled:
			if got != want {
				t.Fatalf("handled %d, want %d", got, want)
			}
		case <-ctx.Done():
			t.Fatal("events not handled")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(skipped) != 1 || skipped[0] != topic.Name()+" ev-1" {
		t.Fatalf("skipped %v, want the duplicate of ev-1", skipped)
	}
}
