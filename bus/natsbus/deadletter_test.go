package natsbus_test

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
)

// poisonGroup is a consumer group that rejects messages whose body starts
// with "poison-" until it is fixed, and records what it consumed.
type poisonGroup struct {
	fixed    atomic.Bool
	mu       sync.Mutex
	consumed map[string]int
	dead     int
	changed  chan struct{}
}

func newPoisonGroup() *poisonGroup {
	return &poisonGroup{consumed: map[string]int{}, changed: make(chan struct{})}
}

func (p *poisonGroup) handle(_ context.Context, d *bus.Delivery) error {
	p.mu.Lock()
	defer func() { close(p.changed); p.changed = make(chan struct{}); p.mu.Unlock() }()
	if strings.HasPrefix(string(d.Body), "poison-") && !p.fixed.Load() {
		p.dead++ // MaxAttempts is 1: every failure is a dead letter
		return errors.New("rejected " + string(d.Body))
	}
	p.consumed[string(d.Body)]++
	return nil
}

// waitFor waits until ok holds under the lock.
func (p *poisonGroup) waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		p.mu.Lock()
		done, changed := ok(), p.changed
		p.mu.Unlock()
		if done {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// setupPoison dead-letters n poison messages of group on topic and returns
// the group, its subscription stopped (so the dead letters are stored).
func setupPoison(t *testing.T, c *bus.Conn, topic, group string, n int) *poisonGroup {
	t.Helper()
	p := newPoisonGroup()
	sub, err := c.Subscribe(dlCtx(t), topic, group, p.handle, bus.SubscribeOptions{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := c.Publish(dlCtx(t), &bus.Message{Subject: topic, Body: []byte(fmt.Sprintf("poison-%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	p.waitFor(t, "the poison messages to fail", func() bool { return p.dead == n })
	if err := sub.Stop(dlCtx(t)); err != nil {
		t.Fatal(err)
	}
	return p
}

func jetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestReplayFailingHalfWayLosesNothing makes the stream refuse the second
// replay (a per-subject limit with discard new) and checks that what was
// not replayed is still a dead letter, then replays the rest.
func TestReplayFailingHalfWayLosesNothing(t *testing.T) {
	srv := startServer(t, natsbus.ServerOptions{})
	c := open(t, srv.ClientURL())
	const topic, group = "orders", "billing"
	p := setupPoison(t, c, topic, group, 3)

	js := jetStream(t, srv.ClientURL())
	stream, err := js.Stream(dlCtx(t), natsbus.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	limited := cfg
	// The topic holds the 3 originals: room for one replay.
	limited.MaxMsgsPerSubject, limited.Discard, limited.DiscardNewPerSubject = 4, jetstream.DiscardNew, true
	if _, err := js.UpdateStream(dlCtx(t), limited); err != nil {
		t.Fatal(err)
	}

	p.fixed.Store(true)
	if _, err := c.Subscribe(dlCtx(t), topic, group, p.handle, bus.SubscribeOptions{MaxAttempts: 1}); err != nil {
		t.Fatal(err)
	}
	res, err := c.ReplayDeadLetters(dlCtx(t), group, topic, bus.DeadLetterFilter{})
	if err == nil {
		t.Fatal("ReplayDeadLetters succeeded although the stream refused the second replay: the fault did not fire")
	}
	t.Logf("replay stopped as expected: %v", err)
	if len(res.Replayed) != 1 || len(res.Pending) != 2 || len(res.NotRemoved) != 0 {
		t.Fatalf("replayed %d, pending %d, not removed %d; want 1, 2, 0", len(res.Replayed), len(res.Pending), len(res.NotRemoved))
	}
	left, err := c.DeadLetters(dlCtx(t), group, topic, bus.DeadLetterFilter{})
	if err != nil || len(left) != 2 {
		t.Fatalf("after the failed replay %d dead letters are left (%v), want 2", len(left), err)
	}
	p.waitFor(t, "the replayed message", func() bool { return len(p.consumed) == 1 })
	p.mu.Lock()
	lost := 3 - len(p.consumed) - len(left)
	t.Logf("ledger after the failed replay: published=3 dead-lettered=%d replayed=%d consumed=%d still-dead=%d lost=%d",
		p.dead, len(res.Replayed), len(p.consumed), len(left), lost)
	p.mu.Unlock()
	if lost != 0 {
		t.Errorf("%d messages lost", lost)
	}

	if _, err := js.UpdateStream(dlCtx(t), cfg); err != nil {
		t.Fatal(err)
	}
	res, err = c.ReplayDeadLetters(dlCtx(t), group, topic, bus.DeadLetterFilter{})
	if err != nil || len(res.Replayed) != 2 {
		t.Fatalf("second replay: %v, %v; want the 2 left", res, err)
	}
	p.waitFor(t, "every message consumed", func() bool { return len(p.consumed) == 3 })
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Logf("ledger: published=3 dead-lettered=%d replayed=3 consumed=%d lost=%d", p.dead, len(p.consumed), 3-len(p.consumed))
	for k, n := range p.consumed {
		if n != 1 {
			t.Errorf("%s consumed %d times", k, n)
		}
	}
}

// TestReplayToAGroupThatIsGoneKeepsTheDeadLetters deletes the group's
// consumer: the replay is refused with NotFound and nothing is removed.
func TestReplayToAGroupThatIsGoneKeepsTheDeadLetters(t *testing.T) {
	srv := startServer(t, natsbus.ServerOptions{})
	c := open(t, srv.ClientURL())
	const topic, group = "orders", "billing"
	setupPoison(t, c, topic, group, 2)
	js := jetStream(t, srv.ClientURL())
	if err := js.DeleteConsumer(dlCtx(t), natsbus.DefaultStream, natsbus.ConsumerName(group, topic)); err != nil {
		t.Fatal(err)
	}
	_, err := c.ReplayDeadLetters(dlCtx(t), group, topic, bus.DeadLetterFilter{})
	if bus.ErrorCode(err) != bus.NotFound || !strings.Contains(err.Error(), "does not consume topic orders") {
		t.Errorf("ReplayDeadLetters to a deleted group: %v, want NotFound saying the group does not consume the topic", err)
	}
	if left, err := c.DeadLetters(dlCtx(t), group, topic, bus.DeadLetterFilter{}); err != nil || len(left) != 2 {
		t.Errorf("after the refused replay %d dead letters are left (%v), want 2", len(left), err)
	}
}

func dlCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}
