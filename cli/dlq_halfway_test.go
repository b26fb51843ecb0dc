package cli_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/natsbus"
	"github.com/switchboard-dev/switchboard/cli"
)

// TestDLQReplayFailingHalfWay makes the stream refuse the second of three
// replays (a per-subject limit with discard new): dlq replay says how many
// it replayed, exits 1, and the rest are still dead letters, replayed by
// the next run.
func TestDLQReplayFailingHalfWay(t *testing.T) {
	ns := startNATS(t)
	url := ns.ClientURL()
	ctx := context.Background()
	conn, err := bus.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const topic, group = "order.placed", "billing"
	var fixed atomic.Bool
	var mu sync.Mutex
	consumed := map[string]bool{}
	failed, got := make(chan struct{}, 3), make(chan struct{}, 3)
	h := func(_ context.Context, d *bus.Delivery) error {
		if !fixed.Load() {
			failed <- struct{}{}
			return errors.New("amount missing")
		}
		mu.Lock()
		consumed[string(d.Body)] = true
		mu.Unlock()
		got <- struct{}{}
		return nil
	}
	sub, err := conn.Subscribe(ctx, topic, group, h, bus.SubscribeOptions{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := conn.Publish(ctx, &bus.Message{Subject: topic, Body: []byte(fmt.Sprintf(`{"order":"o-%d"}`, i))}); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(ch <-chan struct{}, n int, what string) {
		t.Helper()
		for range n {
			select {
			case <-ch:
			case <-time.After(15 * time.Second):
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	wait(failed, 3, "the orders to fail")
	if err := sub.Stop(ctx); err != nil { // waits for the dead letters to be stored
		t.Fatal(err)
	}

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(ctx, natsbus.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	limited := cfg
	limited.MaxMsgsPerSubject, limited.Discard, limited.DiscardNewPerSubject = 4, jetstream.DiscardNew, true
	if _, err := js.UpdateStream(ctx, limited); err != nil {
		t.Fatal(err)
	}
	fixed.Store(true)
	if _, err := conn.Subscribe(ctx, topic, group, h, bus.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := run("--bus", url, "dlq", "replay", "--group", group, "--topic", topic, "--all")
	if code != cli.ExitFailed || stdout != "" ||
		!strings.Contains(stderr, "replayed 1 of 3 dead letters of group billing on topic order.placed, then:") ||
		!strings.Contains(stderr, "nothing was lost: the other 2 are still dead letters") ||
		!strings.Contains(stderr, "hint: fix the cause, then run the same command again") {
		t.Fatalf("dlq replay with the stream refusing the second replay: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	t.Logf("the fault fired: %s", strings.TrimSpace(stderr))
	wait(got, 1, "the one replay")
	if code, stdout, _ := run("--bus", url, "dlq", "list", "--group", group, "--topic", topic, "-o", "json"); code != 0 || !strings.Contains(stdout, `"count": 2`) {
		t.Fatalf("after the half-way replay: exit %d\n%s", code, stdout)
	}

	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := run("--bus", url, "dlq", "replay", "--group", group, "--topic", topic, "--all", "-o", "json"); code != 0 || !strings.Contains(stdout, `"count": 2`) {
		t.Fatalf("second replay: exit %d\n%s%s", code, stdout, stderr)
	}
	wait(got, 2, "the other replays")
	mu.Lock()
	defer mu.Unlock()
	t.Logf("ledger: published=3 dead-lettered=3 replayed=3 consumed=%d lost=%d", len(consumed), 3-len(consumed))
	if len(consumed) != 3 {
		t.Errorf("%d orders lost", 3-len(consumed))
	}
}
