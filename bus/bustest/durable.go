package bustest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

// testDurable creates the group by subscribing once: what a group receives
// is defined from that moment on, and every test makes its groups before it
// publishes. (Whether a brand-new group also gets messages published before
// it existed differs between brokers and is not part of the contract.)
func testDurable(t *testing.T, e *env) {
	pub, sub := e.open(), e.open()
	topic, group := e.subject("orders"), e.group("billing")
	e.stop(e.subscribe(sub, topic, group, e.opts(), func(context.Context, *bus.Delivery) error { return nil }))

	const n = 5
	var sent []*bus.Message
	for i := range n {
		h := testHeader()
		h.Set("N", fmt.Sprint(i))
		m := &bus.Message{Subject: topic, Header: h, Body: []byte(fmt.Sprintf("order-%d\x00\xff", i)), ID: fmt.Sprintf("%s-order-%d", e.id, i)}
		e.publish(pub, m)
		sent = append(sent, m)
	}

	rec := newRecord[got]()
	e.subscribe(sub, topic, group, e.opts(), recordTo(rec, 0))
	ds := rec.waitN(t, "messages published while the group was stopped", n)
	if len(ds) > n {
		t.Errorf("got %d deliveries, want %d", len(ds), n)
	}
	for i, d := range ds[:n] {
		want := sent[i]
		if d.Key != string(want.Body) {
			t.Errorf("delivery %d is %q, want %q (one member with Concurrency 1 gets messages in order)", i, d.Key, want.Body)
			continue
		}
		if d.Msg.Subject != topic {
			t.Errorf("delivery %d: Subject %q, want %q", i, d.Msg.Subject, topic)
		}
		if d.Msg.ID != want.ID {
			t.Errorf("delivery %d: ID %q, want %q", i, d.Msg.ID, want.ID)
		}
		if diff := headerDiff(want.Header, d.Msg.Header); diff != "" {
			t.Errorf("delivery %d: headers did not round-trip: %s", i, diff)
		}
		if d.Attempt != 1 {
			t.Errorf("delivery %d: Attempt %d, want 1", i, d.Attempt)
		}
		if d.Group != group {
			t.Errorf("delivery %d: Group %q, want %q", i, d.Group, group)
		}
	}
}

func testPublishDedup(t *testing.T, e *env) {
	if !e.h.Features().PublishDedup {
		t.Skip("the driver does not de-duplicate publishes by Message.ID (Features.PublishDedup is false)")
	}
	c := e.open()
	topic := e.subject("dedup")
	rec := newRecord[got]()
	e.subscribe(c, topic, e.group("g"), e.opts(), recordTo(rec, 0))
	id := e.id + "-once"
	e.publish(c, &bus.Message{Subject: topic, ID: id, Body: []byte("once")})
	e.publish(c, &bus.Message{Subject: topic, ID: id, Body: []byte("once")})
	e.publish(c, &bus.Message{Subject: topic, ID: e.id + "-last", Body: []byte("last")})
	ds := rec.waitFor(t, "the message published after the duplicate", func(ds []got) bool {
		return slices.ContainsFunc(ds, func(d got) bool { return d.Key == "last" })
	})
	if l := tally([]string{"once", "last"}, ds); l.Duplicates != 0 || l.Lost != 0 {
		t.Errorf("publishing one ID twice: %v, want each delivered once", l)
	}
}

func testCompetingConsumers(t *testing.T, e *env) {
	const members = 3
	pub := e.open()
	topic, group := e.subject("jobs"), e.group("workers")
	rec := newRecord[got]()
	failures := newRecord[string]()

	// Each member (Concurrency 1) holds its first delivery until every
	// member has one: all members must be able to work at once, so the
	// broker may not cap the group as a whole at one member's prefetch. This
	// proves they share the work without relying on timing.
	var arrived [members]chan struct{}
	var once [members]sync.Once
	for m := range members {
		arrived[m] = make(chan struct{})
	}
	for m := range members {
		e.subscribe(e.open(), topic, group, e.opts(), func(_ context.Context, d *bus.Delivery) error {
			firstCall := false
			once[m].Do(func() { firstCall = true; close(arrived[m]) })
			if firstCall {
				for o := range members {
					if !e.block(arrived[o]) {
						failures.add(fmt.Sprintf("member %d held a delivery while member %d got none: all members of a group must be able to work at once", m, o))
						break
					}
				}
			}
			rec.add(gotFrom(d, m))
			return nil
		})
	}
	keys := e.publishN(pub, topic, "job", 100)
	for m := range members {
		e.await(arrived[m], fmt.Sprintf("member %d of %d to get a delivery while the others held theirs unacknowledged: "+
			"each member's prefetch must be its own, not a cap on the whole group", m, members))
	}
	l := waitKeys(t, rec, keys)
	for _, f := range failures.all() {
		t.Error(f)
	}

	var perMember [members]int
	firstDeliveries := map[string]int{}
	for _, d := range rec.all() {
		perMember[d.Member]++
		if d.Attempt == 1 {
			firstDeliveries[d.Key]++
		}
	}
	t.Logf("deliveries per member: %v", perMember)
	for k, c := range firstDeliveries {
		if c > 1 {
			t.Errorf("%s was delivered %d times with Attempt 1: only a redelivery may repeat a message", k, c)
		}
	}
	if l.Unexpected != 0 {
		t.Errorf("unexpected deliveries: %v", l)
	}
}

func testGroupsFanOut(t *testing.T, e *env) {
	pub := e.open()
	topic := e.subject("events")
	groups := []string{e.group("audit"), e.group("mail"), e.group("search")}
	recs := make([]*record[got], len(groups))
	for i, g := range groups {
		recs[i] = newRecord[got]()
		e.subscribe(e.open(), topic, g, e.opts(), recordTo(recs[i], i))
	}
	keys := e.publishN(pub, topic, "event", 20)
	for i, g := range groups {
		t.Logf("group %s:", g)
		l := waitKeys(t, recs[i], keys)
		if l.Duplicates != 0 || l.Unexpected != 0 {
			t.Errorf("group %s: %v, want each message exactly once", g, l)
		}
		for _, d := range recs[i].all() {
			if d.Group != g {
				t.Errorf("delivery to group %s says Group %q", g, d.Group)
				break
			}
		}
	}
}

func testRedelivery(t *testing.T, e *env) {
	c := e.open()
	topic := e.subject("flaky")
	attempts := newRecord[int]()
	opts := e.opts()
	opts.MaxAttempts = 5
	e.subscribe(c, topic, e.group("g"), opts, func(_ context.Context, d *bus.Delivery) error {
		attempts.add(d.Attempt)
		if d.Attempt < 3 {
			return fmt.Errorf("transient failure on attempt %d", d.Attempt)
		}
		return nil
	})
	e.publish(c, &bus.Message{Subject: topic, Body: []byte("flaky"), ID: e.id + "-flaky"})
	got := attempts.waitFor(t, "the third attempt", func(a []int) bool { return slices.Contains(a, 3) })
	if !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("handler saw attempts %v, want [1 2 3]", got)
	}
}

func testDeadLetter(t *testing.T, e *env) {
	c := e.open()
	topic, group := e.subject("payments"), e.group("ledger")
	dlq := bus.DeadLetterTopic(group, topic)
	dead := newRecord[got]()
	e.subscribe(e.open(), dlq, e.group("inspector"), e.opts(), recordTo(dead, 0))

	reason := "poison pill " + e.id + " rejected"
	poisonAttempts := newRecord[int]()
	rec := newRecord[got]()
	opts := e.opts()
	opts.MaxAttempts = 3
	e.subscribe(c, topic, group, opts, func(_ context.Context, d *bus.Delivery) error {
		if string(d.Body) == "poison" {
			poisonAttempts.add(d.Attempt)
			return errors.New(reason)
		}
		rec.add(gotFrom(d, 0))
		return nil
	})

	poison := &bus.Message{Subject: topic, Header: bus.Header{"Kind": "poison", "x-Trace": "t1"}, Body: []byte("poison"), ID: e.id + "-poison"}
	e.publish(c, poison)
	keys := e.publishN(c, topic, "ok", 5)
	t.Log("messages published after the poison one:")
	waitKeys(t, rec, keys)

	ds := dead.waitN(t, "message on the dead-letter topic", 1)
	d := ds[0]
	if d.Msg.Subject != dlq {
		t.Errorf("dead letter Subject %q, want %q", d.Msg.Subject, dlq)
	}
	if d.Key != "poison" {
		t.Errorf("dead letter body %q, want %q", d.Key, "poison")
	}
	h := d.Msg.Header
	if !strings.Contains(h.Get(bus.HeaderDeadReason), reason) {
		t.Errorf("%s = %q, want it to contain the handler's error %q", bus.HeaderDeadReason, h.Get(bus.HeaderDeadReason), reason)
	}
	for k, want := range map[string]string{
		bus.HeaderDeadAttempts: "3",
		bus.HeaderDeadTopic:    topic,
		bus.HeaderDeadGroup:    group,
		bus.HeaderDeadID:       poison.ID,
		"Kind":                 "poison",
		"x-Trace":              "t1",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("dead letter header %s = %q, want %q", k, got, want)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, h.Get(bus.HeaderDeadTime)); err != nil {
		t.Errorf("dead letter header %s = %q: %v", bus.HeaderDeadTime, h.Get(bus.HeaderDeadTime), err)
	}
	if got := poisonAttempts.all(); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("poison message attempts %v, want [1 2 3]", got)
	}
}

func testHandlerPanic(t *testing.T, e *env) {
	c := e.open()
	topic := e.subject("panicky")
	attempts := newRecord[int]()
	e.subscribe(c, topic, e.group("g"), e.opts(), func(_ context.Context, d *bus.Delivery) error {
		attempts.add(d.Attempt)
		if d.Attempt == 1 {
			panic("bustest: deliberate panic in handler")
		}
		return nil
	})
	e.publish(c, &bus.Message{Subject: topic, Body: []byte("boom")})
	got := attempts.waitFor(t, "the redelivery after the panic", func(a []int) bool { return slices.Contains(a, 2) })
	if !slices.Equal(got, []int{1, 2}) {
		t.Errorf("handler saw attempts %v, want [1 2]", got)
	}
}

func testConcurrency(t *testing.T, e *env) {
	const n = 4
	c := e.open()
	topic, group := e.subject("parallel"), e.group("g")
	// Messages wait in the group before it starts, so more than n are
	// available at once and an instance that runs too many handlers shows it.
	e.stop(e.subscribe(c, topic, group, e.opts(), func(context.Context, *bus.Delivery) error { return nil }))
	keys := e.publishN(c, topic, "task", 3*n)

	var running, peak atomic.Int64
	full, held := make(chan struct{}), make(chan struct{})
	var fullOnce sync.Once
	rec := newRecord[got]()
	opts := e.opts()
	opts.Concurrency = n
	e.subscribe(c, topic, group, opts, func(_ context.Context, d *bus.Delivery) error {
		cur := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); cur > p && !peak.CompareAndSwap(p, cur); p = peak.Load() {
		}
		if cur == n {
			// n run at once: hold them a moment longer so that one too
			// many would be seen, then let every handler through.
			fullOnce.Do(func() { close(full); time.AfterFunc(grace, func() { close(held) }) })
		}
		if e.block(full) {
			e.block(held)
		}
		rec.add(gotFrom(d, 0))
		return nil
	})
	e.await(full, fmt.Sprintf("%d handlers to run at once with Concurrency=%d (peak so far %d)", n, n, peak.Load()))
	waitKeys(t, rec, keys)
	if p := peak.Load(); p != n {
		t.Errorf("at most %d handlers ran at once, want exactly Concurrency=%d", p, n)
	}
}

func testRestart(t *testing.T, e *env) {
	pub := e.open()
	topic, group := e.subject("stream"), e.group("indexer")
	rec := newRecord[got]()
	sub := e.subscribe(e.open(), topic, group, e.opts(), recordTo(rec, 1))
	keys := e.publishN(pub, topic, "before", 20)
	rec.waitN(t, "deliveries before the restart", 5)
	e.stop(sub)
	t.Logf("%d delivered before the restart", len(rec.all()))
	keys = append(keys, e.publishN(pub, topic, "during", 20)...)
	e.subscribe(e.open(), topic, group, e.opts(), recordTo(rec, 2))
	keys = append(keys, e.publishN(pub, topic, "after", 20)...)
	waitKeys(t, rec, keys)
}

func testStopWhileBusy(t *testing.T, e *env) {
	// With a small prefetch, deliveries wait in the driver and the broker;
	// with a large one, they wait in package bus and nothing holds Stop up
	// but the running handler.
	for _, prefetch := range []int{1, 50} {
		t.Run(fmt.Sprintf("prefetch %d", prefetch), func(t *testing.T) {
			stopWhileBusy(t, newEnv(t, e.h), prefetch)
		})
	}
}

func stopWhileBusy(t *testing.T, e *env, prefetch int) {
	pub := e.open()
	topic, group := e.subject("busy"), e.group("g")
	rec := newRecord[got]()
	started, release := make(chan struct{}), make(chan struct{})
	var firstOnce sync.Once
	var completed atomic.Bool
	opts := e.opts()
	opts.Prefetch = prefetch
	sub := e.subscribe(e.open(), topic, group, opts, func(ctx context.Context, d *bus.Delivery) error {
		blocking := false
		firstOnce.Do(func() { blocking = true })
		if blocking {
			close(started)
			if !e.block(release) {
				return errors.New("bustest: never released")
			}
			completed.Store(ctx.Err() == nil)
		}
		rec.add(gotFrom(d, 1))
		return nil
	})
	keys := e.publishN(pub, topic, "busy", 10)
	e.await(started, "the first handler to start")

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		stopped <- sub.Stop(ctx)
	}()
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (err=%v) while a handler was still running", err)
	case <-time.After(grace):
	}
	close(release)
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Stop: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Stop did not return within %v of its running handler finishing", waitTimeout)
	}
	if !completed.Load() {
		t.Errorf("the running handler's context was canceled: Stop must let it complete within its deadline")
	}
	t.Logf("%d handled by the stopped subscriber", len(rec.all()))

	e.subscribe(e.open(), topic, group, e.opts(), recordTo(rec, 2))
	waitKeys(t, rec, keys)
}

func testConcurrentPublishers(t *testing.T, e *env) {
	const publishers, each = 4, 100
	topic := e.subject("firehose")
	rec := newRecord[got]()
	opts := e.opts()
	opts.Concurrency = 8
	e.subscribe(e.open(), topic, e.group("g"), opts, recordTo(rec, 0))

	conns := []*bus.Conn{e.open(), e.open()}
	failures := newRecord[string]()
	var keys []string
	var wg sync.WaitGroup
	for p := range publishers {
		c := conns[p%len(conns)]
		for i := range each {
			keys = append(keys, fmt.Sprintf("p%d-%d", p, i))
		}
		wg.Go(func() {
			for i := range each {
				k := fmt.Sprintf("p%d-%d", p, i)
				if err := c.Publish(e.ctx, &bus.Message{Subject: topic, Body: []byte(k), ID: topic + "/" + k}); err != nil {
					failures.add(fmt.Sprintf("%s: %v", k, err))
				}
			}
		})
	}
	wg.Wait()
	if f := failures.all(); len(f) > 0 {
		t.Fatalf("%d of %d publishes failed, first: %v", len(f), len(keys), first(f, 5))
	}
	waitKeys(t, rec, keys)
}

func testTail(t *testing.T, e *env) {
	pub, watcher := e.open(), e.open()
	a, b := e.subject("tail.a"), e.subject("tail.b")
	group := newRecord[got]()
	e.subscribe(e.open(), a, e.group("g"), e.opts(), recordTo(group, 0))
	e.publish(pub, &bus.Message{Subject: a, Body: []byte("before")})

	tail := newRecord[*bus.Message]()
	tsub, err := watcher.Tail(e.ctx, e.subject("tail.*"), func(m *bus.Message) { tail.add(m) })
	if err != nil {
		t.Fatalf("Tail: %v", err)
	}
	e.publish(pub, &bus.Message{Subject: a, Header: bus.Header{"X-Seen-By": "tail"}, Body: []byte("after-a")})
	e.publish(pub, &bus.Message{Subject: b, Body: []byte("after-b")})

	msgs := tail.waitFor(t, "both live messages at the tail", func(ms []*bus.Message) bool {
		return slices.ContainsFunc(ms, func(m *bus.Message) bool { return string(m.Body) == "after-a" }) &&
			slices.ContainsFunc(ms, func(m *bus.Message) bool { return string(m.Body) == "after-b" })
	})
	for _, m := range msgs {
		switch string(m.Body) {
		case "before":
			t.Errorf("Tail delivered a message published before it started")
		case "after-a":
			if m.Subject != a || m.Header.Get("X-Seen-By") != "tail" {
				t.Errorf("Tail got subject %q header %v, want %q with X-Seen-By", m.Subject, m.Header, a)
			}
		case "after-b":
			if m.Subject != b {
				t.Errorf("Tail got subject %q, want %q", m.Subject, b)
			}
		}
	}
	e.stop(tsub)

	// The group is unaffected: it gets its messages once, first time.
	e.publish(pub, &bus.Message{Subject: a, Body: []byte("last")})
	ds := group.waitFor(t, "the group's messages", func(ds []got) bool {
		return slices.ContainsFunc(ds, func(d got) bool { return d.Key == "last" })
	})
	if l := tally([]string{"before", "after-a", "last"}, ds); l.Lost != 0 || l.Duplicates != 0 || l.Unexpected != 0 {
		t.Errorf("group alongside a tail: %v, want each message once", l)
	}
	for _, d := range ds {
		if d.Attempt != 1 {
			t.Errorf("group got %q at attempt %d: the tail must not take deliveries", d.Key, d.Attempt)
		}
	}
}
