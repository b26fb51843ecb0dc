package dedupe_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	switchboard "github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/natsbus"
	"github.com/switchboard-dev/switchboard/dedupe"
)

type charge struct {
	Trip string `json:"trip"`
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// publishCopy publishes an event with the given ce-id under a fresh bus
// message id, so that the broker's own de-duplication cannot hide it: a
// duplicate from a producer that retried after the broker's window.
func publishCopy(ctx context.Context, t *testing.T, conn *bus.Conn, topic, id, trip string, copyN int) {
	t.Helper()
	h := bus.Header{"ce-specversion": "1.0", "ce-id": id, "ce-source": "/switchboard/trips", "ce-type": topic, "Content-Type": "application/json"}
	msg := &bus.Message{Subject: topic, Header: h, ID: fmt.Sprintf("%s#%d", id, copyN), Body: []byte(`{"trip":"` + trip + `"}`)}
	if err := conn.Publish(ctx, msg); err != nil {
		t.Fatal(err)
	}
}

// Two instances of one consumer group, duplicates of an event and a handler
// that fails once: over a real (embedded) broker, each event's handler
// succeeds exactly once.
func TestTwoInstancesOverTheBusHandleEachEventOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := bus.Open(ctx, "embedded://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	topic := switchboard.Topic[*charge]("trip.charged." + strconv.FormatInt(time.Now().UnixNano(), 36))
	store := &dedupe.Memory{} // one process here; across processes use pgdedupe or redisdedupe

	var mu sync.Mutex
	succeeded := map[string]int{}
	attempts := map[string]int{}
	outcomes := map[dedupe.Outcome]int{}
	allDone := make(chan struct{})
	var once sync.Once
	check := func() { // under mu
		if succeeded["t-1"] == 1 && succeeded["t-2"] == 1 && outcomes[dedupe.Duplicate] >= 3 {
			once.Do(func() { close(allDone) })
		}
	}
	observe := dedupe.WithObserver(func(_ string, o dedupe.Outcome, _ error) {
		mu.Lock()
		outcomes[o]++
		check()
		mu.Unlock()
	})
	handle := func(_ context.Context, c *charge) error {
		mu.Lock()
		defer mu.Unlock()
		attempts[c.Trip]++
		if c.Trip == "t-2" && attempts[c.Trip] == 1 {
			return errors.New("card processor timed out")
		}
		succeeded[c.Trip]++
		return nil
	}
	for i := range 2 {
		svc := switchboard.NewService("billing", "1.0.0", switchboard.WithLogger(quiet()))
		topic.Subscribe(svc, "billing", dedupe.Handler(store, handle, observe),
			switchboard.Concurrency(4), switchboard.Backoff(func(int) time.Duration { return 10 * time.Millisecond }))
		if err := svc.Start(ctx, conn); err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		defer svc.Shutdown(context.Background())
	}
	for n := range 3 {
		publishCopy(ctx, t, conn, topic.Name(), "ev-1", "t-1", n)
	}
	publishCopy(ctx, t, conn, topic.Name(), "ev-2", "t-2", 0)
	publishCopy(ctx, t, conn, topic.Name(), "ev-2", "t-2", 1)
	select {
	case <-allDone:
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("ledger: published=5 (2 events) handler attempts=%v succeeded=%v outcomes=%v", attempts, succeeded, outcomes)
	if succeeded["t-1"] != 1 || succeeded["t-2"] != 1 || attempts["t-1"] != 1 || attempts["t-2"] != 2 {
		t.Fatalf("want t-1 handled once, t-2 failed once then handled once")
	}
}
