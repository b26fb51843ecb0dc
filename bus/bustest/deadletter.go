package bustest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

// Dead letters in place: browsing, replaying and purging a group's dead
// letters through Conn.DeadLetters and friends. Drivers say what they
// support with Conn.DeadLetterSupport; what they do not is skipped with
// their reason.

// needDeadLetters skips the subtest when the driver cannot browse, delete
// and replay dead letters.
func needDeadLetters(t *testing.T, c *bus.Conn) bus.DeadLetterFeatures {
	t.Helper()
	f := c.DeadLetterSupport()
	if !f.Browse || !f.Delete || !f.Replay {
		t.Skipf("the driver cannot manage dead letters in place: %s", f.Why)
	}
	return f
}

// poisonBody is what the handlers of these subtests reject.
func isPoison(d *bus.Delivery) bool { return strings.HasPrefix(string(d.Body), "poison-") }

// deadLetterPlace fills group's dead-letter place on topic: it publishes
// poisons poison messages among as many good ones, runs a member whose
// handler rejects the poison ones (MaxAttempts 2) until every good one was
// consumed and every poison one failed its last attempt, then stops it,
// which waits until the dead letters are stored. It returns the poison
// messages and the good ones' keys.
func (e *env) deadLetterPlace(c *bus.Conn, topic, group string, poisons int) ([]*bus.Message, []string) {
	e.t.Helper()
	rec := newRecord[got]()
	lastFail := newRecord[string]()
	opts := e.opts()
	opts.MaxAttempts = 2
	sub := e.subscribe(c, topic, group, opts, func(_ context.Context, d *bus.Delivery) error {
		if isPoison(d) {
			if d.Attempt >= opts.MaxAttempts {
				lastFail.add(string(d.Body))
			}
			return fmt.Errorf("rejected %s", d.Body)
		}
		rec.add(gotFrom(d, 0))
		return nil
	})
	var msgs []*bus.Message
	var keys []string
	for i := range poisons {
		m := &bus.Message{Subject: topic, Header: bus.Header{"Kind": "poison", "Content-Type": "application/json"},
			Body: []byte(fmt.Sprintf("poison-%d", i)), ID: e.id + fmt.Sprintf("-poison-%d", i)}
		e.publish(c, m)
		msgs = append(msgs, m)
		keys = append(keys, e.publishN(c, topic, fmt.Sprintf("ok%d", i), 1)...)
	}
	waitKeys(e.t, rec, keys)
	lastFail.waitN(e.t, "poison messages failing their last attempt", poisons)
	e.stop(sub) // waits for the handlers, and so for the dead letters' publishes
	return msgs, keys
}

func testDeadLetterBrowse(t *testing.T, e *env) {
	c := e.open()
	f := needDeadLetters(t, c)
	topic, group := e.subject("orders"), e.group("billing")
	clean := e.group("clean")
	e.subscribe(c, topic, clean, e.opts(), func(context.Context, *bus.Delivery) error { return nil })
	poisons, _ := e.deadLetterPlace(c, topic, group, 3)

	ds, err := c.DeadLetters(e.ctx, group, topic, bus.DeadLetterFilter{})
	if err != nil {
		t.Fatalf("DeadLetters: %v", err)
	}
	if len(ds) != len(poisons) {
		t.Fatalf("DeadLetters found %d, want %d", len(ds), len(poisons))
	}
	bodies := map[string]*bus.Message{}
	for _, m := range poisons {
		bodies[string(m.Body)] = m
	}
	for i, d := range ds {
		orig := bodies[string(d.Message.Body)]
		switch {
		case orig == nil:
			t.Errorf("dead letter %s has body %q, which was never published", d.ID, d.Message.Body)
			continue
		case d.ID == "":
			t.Errorf("dead letter of %q has no ID", d.Message.Body)
		case d.Group != group || d.Topic != topic:
			t.Errorf("dead letter %s is of group %q on topic %q, want %q on %q", d.ID, d.Group, d.Topic, group, topic)
		case d.Reason != "rejected "+string(orig.Body):
			t.Errorf("dead letter %s reason %q, want %q", d.ID, d.Reason, "rejected "+string(orig.Body))
		case d.Attempts != 2:
			t.Errorf("dead letter %s attempts %d, want 2", d.ID, d.Attempts)
		case d.Time.IsZero():
			t.Errorf("dead letter %s has no time", d.ID)
		case d.OriginalID != orig.ID:
			t.Errorf("dead letter %s original ID %q, want %q", d.ID, d.OriginalID, orig.ID)
		case d.Message.Subject != bus.DeadLetterTopic(group, topic):
			t.Errorf("dead letter %s subject %q, want %q", d.ID, d.Message.Subject, bus.DeadLetterTopic(group, topic))
		case d.Message.Header.Get("Kind") != "poison" || d.Message.Header.Get("Content-Type") != "application/json":
			t.Errorf("dead letter %s lost original headers: %v", d.ID, d.Message.Header)
		}
		if i > 0 && d.Time.Before(ds[i-1].Time) {
			t.Errorf("dead letters not oldest first: %s at %v after %s at %v", d.ID, d.Time, ds[i-1].ID, ds[i-1].Time)
		}
		delete(bodies, string(d.Message.Body))
	}

	again, err := c.DeadLetters(e.ctx, group, topic, bus.DeadLetterFilter{})
	if err != nil {
		t.Fatalf("DeadLetters again: %v", err)
	}
	if got, want := sortedIDs(again), sortedIDs(ds); !slices.Equal(got, want) {
		t.Errorf("a second browse found IDs %v, want the same as the first, %v: browsing must not consume or rename", got, want)
	}

	one, err := c.DeadLetter(e.ctx, group, topic, ds[1].ID)
	if err != nil {
		t.Fatalf("DeadLetter(%s): %v", ds[1].ID, err)
	}
	if string(one.Message.Body) != string(ds[1].Message.Body) {
		t.Errorf("DeadLetter(%s) body %q, want %q", ds[1].ID, one.Message.Body, ds[1].Message.Body)
	}
	_, err = c.DeadLetter(e.ctx, group, topic, "no-such-id-"+e.id)
	wantCode(t, "DeadLetter of an unknown ID", err, bus.NotFound)

	for _, tc := range []struct {
		name string
		f    bus.DeadLetterFilter
		want int
	}{
		{"reason", bus.DeadLetterFilter{Reason: regexp.MustCompile(`poison-1$`)}, 1},
		{"reason matching none", bus.DeadLetterFilter{Reason: regexp.MustCompile(`^nothing`)}, 0},
		{"since the future", bus.DeadLetterFilter{Since: time.Now().Add(time.Hour)}, 0},
		{"until the future", bus.DeadLetterFilter{Until: time.Now().Add(time.Hour)}, 3},
		{"IDs", bus.DeadLetterFilter{IDs: []string{ds[0].ID, ds[2].ID}}, 2},
		{"limit", bus.DeadLetterFilter{Limit: 2}, 2},
	} {
		got, err := c.DeadLetters(e.ctx, group, topic, tc.f)
		if err != nil || len(got) != tc.want {
			t.Errorf("DeadLetters filtered by %s: %d, %v; want %d", tc.name, len(got), err, tc.want)
		}
	}

	if ds, err := c.DeadLetters(e.ctx, clean, topic, bus.DeadLetterFilter{}); err != nil || len(ds) != 0 {
		t.Errorf("DeadLetters of a group without failures: %d, %v; want none and no error", len(ds), err)
	}
	_, err = c.DeadLetters(e.ctx, e.group("nobody"), topic, bus.DeadLetterFilter{})
	wantCode(t, "DeadLetters of a group that never subscribed", err, bus.NotFound)

	if !f.ListPlaces {
		t.Logf("not checking DeadLetterPlaces: %s", f.Why)
		return
	}
	places, err := c.DeadLetterPlaces(e.ctx)
	if err != nil {
		t.Fatalf("DeadLetterPlaces: %v", err)
	}
	if !slices.Contains(places, bus.DeadLetterPlace{Group: group, Topic: topic, Count: 3}) {
		t.Errorf("DeadLetterPlaces = %v, want it to hold %s on %s with 3", places, group, topic)
	}
}

func sortedIDs(ds []*bus.DeadLetter) []string {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	slices.Sort(ids)
	return ids
}

func testDeadLetterReplay(t *testing.T, e *env) {
	c := e.open()
	needDeadLetters(t, c)
	topic, group, other := e.subject("orders"), e.group("billing"), e.group("audit")
	audit := newRecord[got]()
	e.subscribe(e.open(), topic, other, e.opts(), recordTo(audit, 1))
	poisons, goods := e.deadLetterPlace(c, topic, group, 3)
	ds, err := c.DeadLetters(e.ctx, group, topic, bus.DeadLetterFilter{})
	if err != nil || len(ds) != 3 {
		t.Fatalf("DeadLetters before replay: %d, %v; want 3", len(ds), err)
	}
	deadIDs := map[string]bool{}
	for _, d := range ds {
		deadIDs[d.ID] = true
	}

	// The fix is deployed: the group accepts everything now.
	fixed := newRecord[got]()
	e.subscribe(c, topic, group, e.opts(), recordTo(fixed, 0))
	res, err := c.ReplayDeadLetters(e.ctx, group, topic, bus.DeadLetterFilter{})
	if err != nil {
		t.Fatalf("ReplayDeadLetters: %v", err)
	}
	if len(res.Replayed) != 3 || len(res.NotRemoved)+len(res.Pending) != 0 {
		t.Errorf("ReplayDeadLetters: replayed %d, not removed %d, pending %d; want 3, 0, 0", len(res.Replayed), len(res.NotRemoved), len(res.Pending))
	}
	var keys []string
	for _, m := range poisons {
		keys = append(keys, string(m.Body))
	}
	waitKeys(t, fixed, keys)
	for _, g := range fixed.all() {
		h := g.Msg.Header
		if !deadIDs[h.Get(bus.HeaderReplayOf)] || h.Get(bus.HeaderReplayed) != "1" || h.Get(bus.HeaderReplayGroup) != group {
			t.Errorf("replay of %q has %s=%q %s=%q %s=%q", g.Key, bus.HeaderReplayOf, h.Get(bus.HeaderReplayOf),
				bus.HeaderReplayed, h.Get(bus.HeaderReplayed), bus.HeaderReplayGroup, h.Get(bus.HeaderReplayGroup))
		}
		if h.Get("Kind") != "poison" || g.Msg.Subject != topic || g.Attempt != 1 {
			t.Errorf("replay of %q: subject %q, attempt %d, headers %v; want the original topic and headers, attempt 1", g.Key, g.Msg.Subject, g.Attempt, h)
		}
		for k := range h {
			if strings.HasPrefix(k, "Sb-Dead-") {
				t.Errorf("replay of %q keeps the dead-letter header %s", g.Key, k)
			}
		}
		if orig := h.Get(bus.HeaderReplayOriginalID); !strings.Contains(orig, "-poison-") {
			t.Errorf("replay of %q: %s = %q, want the original message ID", g.Key, bus.HeaderReplayOriginalID, orig)
		}
	}
	if left, err := c.DeadLetters(e.ctx, group, topic, bus.DeadLetterFilter{}); err != nil || len(left) != 0 {
		t.Errorf("after the replay %d dead letters are left (%v), want none", len(left), err)
	}

	// The other group got every original once and no replay: a message
	// published after the replay reaches it after any replay would have.
	sentinel := e.publishN(c, topic, "after-replay", 1)
	audit.waitFor(t, "the other group to get the message published after the replay", func(gs []got) bool {
		return slices.ContainsFunc(gs, func(g got) bool { return g.Key == sentinel[0] })
	})
	for _, g := range audit.all() {
		if g.Msg.Header.Get(bus.HeaderReplayOf) != "" {
			t.Errorf("group %s, which never failed it, was handed the replay of %q", other, g.Key)
		}
	}
	all := append(append(slices.Clone(keys), goods...), sentinel...)
	l := tally(all, audit.all())
	t.Logf("ledger: published=%d consumed-by-%s=%d dead-lettered=%d replayed=%d consumed-after-replay=%d; %s: %v",
		len(all), group, len(goods), len(ds), len(res.Replayed), len(fixed.all()), other, l)
	if l.Lost != 0 {
		t.Errorf("group %s lost %d messages: %v", other, l.Lost, l.missing)
	}
}

func testDeadLetterPurge(t *testing.T, e *env) {
	c := e.open()
	needDeadLetters(t, c)
	topic, group := e.subject("orders"), e.group("billing")
	e.deadLetterPlace(c, topic, group, 3)
	count := func() int {
		t.Helper()
		ds, err := c.DeadLetters(e.ctx, group, topic, bus.DeadLetterFilter{})
		if err != nil {
			t.Fatalf("DeadLetters: %v", err)
		}
		return len(ds)
	}

	gone, err := c.PurgeDeadLetters(e.ctx, group, topic, bus.DeadLetterFilter{Reason: regexp.MustCompile(`poison-0$`)})
	if err != nil || len(gone) != 1 || string(gone[0].Message.Body) != "poison-0" {
		t.Fatalf("PurgeDeadLetters by reason: %d, %v; want poison-0 only", len(gone), err)
	}
	if n := count(); n != 2 {
		t.Errorf("after purging one of 3, %d are left", n)
	}

	unknown := "no-such-id-" + e.id
	_, err = c.PurgeDeadLetters(e.ctx, group, topic, bus.DeadLetterFilter{IDs: []string{unknown}})
	wantCode(t, "PurgeDeadLetters of an unknown ID", err, bus.NotFound)
	_, err = c.ReplayDeadLetters(e.ctx, group, topic, bus.DeadLetterFilter{IDs: []string{unknown}})
	wantCode(t, "ReplayDeadLetters of an unknown ID", err, bus.NotFound)
	if n := count(); n != 2 {
		t.Errorf("after failed purge and replay of an unknown ID, %d are left, want 2", n)
	}

	ds, _ := c.DeadLetters(e.ctx, group, topic, bus.DeadLetterFilter{})
	gone, err = c.PurgeDeadLetters(e.ctx, group, topic, bus.DeadLetterFilter{IDs: []string{ds[0].ID}})
	if err != nil || len(gone) != 1 || gone[0].ID != ds[0].ID {
		t.Errorf("PurgeDeadLetters by ID: %v, %v", gone, err)
	}
	gone, err = c.PurgeDeadLetters(e.ctx, group, topic, bus.DeadLetterFilter{})
	if err != nil || len(gone) != 1 {
		t.Errorf("PurgeDeadLetters of the rest: %d, %v; want 1", len(gone), err)
	}
	if n := count(); n != 0 {
		t.Errorf("after purging all, %d are left", n)
	}
}

// testDeadLetterUnsupported checks that an operation a driver lacks fails
// with Unimplemented rather than pretending.
func testDeadLetterUnsupported(t *testing.T, e *env) {
	c := e.open()
	f := c.DeadLetterSupport()
	if f.ListPlaces {
		t.Skip("the driver lists dead-letter places")
	}
	if f.Why == "" {
		t.Errorf("DeadLetterSupport says ListPlaces is false without saying why")
	}
	_, err := c.DeadLetterPlaces(e.ctx)
	wantCode(t, "DeadLetterPlaces on a driver that cannot list them", err, bus.Unimplemented)
	var be *bus.Error
	if errors.As(err, &be) && !strings.Contains(be.Message, f.Why) {
		t.Errorf("DeadLetterPlaces error %q does not say why (%q)", be.Message, f.Why)
	}
}
