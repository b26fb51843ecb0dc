// Package bustest is the conformance suite for bus drivers: one set of
// behaviours that every driver (NATS/JetStream, RabbitMQ, ...) must show, so
// that the embedded default and a production broker behave alike.
//
// A driver's own test calls Run with a Harness that opens connections to a
// running broker (embedded where possible):
//
//	type harness struct{ url string }
//
//	func (h harness) Open(ctx context.Context, t *testing.T) (*bus.Conn, error) {
//		return bus.Open(ctx, h.url)
//	}
//
//	func (harness) Features() bustest.Features { return bustest.Features{PublishDedup: true} }
//
//	func TestConformance(t *testing.T) { bustest.Run(t, harness{url: srv.ClientURL()}) }
//
// The suite uses only package bus, never a broker client, and it is the same
// for every driver: where a broker legitimately cannot do something, a
// Features flag turns the subtest into a t.Skip that says why, never a fork.
//
// Every subtest uses its own random subjects, topics and consumer groups, so
// the suite can run against a shared, long-lived broker and be run again. It
// waits on signals with generous deadlines against hangs but asserts no
// speed: a slow machine makes it slower, not flaky.
package bustest

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

// Harness makes connections to one broker for the suite.
type Harness interface {
	// Open returns a new, independent connection to the same broker (same
	// namespace) each call. The suite shuts down every Conn it opens, so
	// Open need not register a cleanup for it.
	Open(ctx context.Context, t *testing.T) (*bus.Conn, error)
	// Features reports what the driver can do.
	Features() Features
}

// Features says what a driver can do beyond what every driver must. The zero
// value is the baseline that the bus package documents; a flag enables a
// subtest that would otherwise be skipped with the reason.
type Features struct {
	// PublishDedup reports that the broker drops a second Publish carrying
	// the same Message.ID within its de-duplication window.
	PublishDedup bool
}

const (
	// waitTimeout bounds every wait against hangs; it is never a speed
	// requirement.
	waitTimeout = 15 * time.Second
	// grace is how long the suite watches for a call returning too early
	// (Stop or Shutdown while a handler runs). A correct driver never trips
	// it however slow the machine; a wrong one is caught almost always.
	grace = 100 * time.Millisecond
)

// fastBackoff keeps redelivery tests quick.
func fastBackoff(int) time.Duration { return 10 * time.Millisecond }

// Run runs every conformance subtest against the broker h connects to.
func Run(t *testing.T, h Harness) {
	t.Helper()
	for _, tc := range suite {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newEnv(t, h)) })
	}
}

var suite = []struct {
	name string
	run  func(*testing.T, *env)
}{
	// Request/reply and live messages.
	{"Request gets the reply with headers and body intact", testRequestReply},
	{"Consecutive requests, replies and sends carry exactly their own headers", testHeadersDoNotCarryOver},
	{"Request with no responder fails at once with Unavailable", testNoResponders},
	{"Request whose handler never replies ends with DeadlineExceeded at the deadline", testNoReply},
	{"Request canceled while waiting ends with Canceled", testRequestCanceled},
	{"Publish and Request with a canceled context return Canceled and send nothing", testCanceledContext},
	{"Serve with a queue answers each request exactly once across responders", testServeQueue},
	{"Serve without a queue delivers each request to every responder", testServeNoQueue},
	{"Serve on a wildcard pattern sees the concrete subject", testServeWildcard},
	{"Listen gets every Send in order on every listener", testListenFanOut},
	{"Listen patterns match star as one token and gt as the rest", testListenWildcards},

	// Durable publish/subscribe.
	{"Publish is durable: a group gets what was published while it was stopped", testDurable},
	{"Publish with a repeated ID is delivered once", testPublishDedup},
	{"Members of a group compete and lose nothing", testCompetingConsumers},
	{"Every group gets every message", testGroupsFanOut},
	{"A failed handler gets a redelivery with the next Attempt", testRedelivery},
	{"A message that keeps failing goes to the dead-letter topic without blocking others", testDeadLetter},
	{"A panicking handler is treated as a failure and redelivered", testHandlerPanic},
	{"Concurrency N runs exactly N handlers at once", testConcurrency},
	{"A restarted subscriber resumes its group with nothing lost", testRestart},
	{"Stop while a handler runs waits for it and hands the rest to the group", testStopWhileBusy},
	{"Concurrent publishers lose nothing", testConcurrentPublishers},
	{"Tail sees live durable messages on a pattern without touching groups", testTail},
	{"Backlog counts what a group has yet to finish, and NotFound for a group that does not exist", testBacklog},

	// Dead letters in place.
	{"Dead letters can be browsed, filtered and shown without consuming them", testDeadLetterBrowse},
	{"Replay re-publishes dead letters to their group alone and then removes them", testDeadLetterReplay},
	{"Purge deletes the selected dead letters only, and unknown IDs change nothing", testDeadLetterPurge},
	{"A dead-letter operation the driver lacks fails with Unimplemented and says why", testDeadLetterUnsupported},

	// Limits, validation and lifecycle.
	{"A message over MaxMessageSize is rejected with InvalidArgument and never delivered", testTooLarge},
	{"A large message under the limit round-trips intact", testLargeMessage},
	{"Invalid subjects, patterns and groups are rejected with InvalidArgument", testInvalid},
	{"Subscriptions outlive the context they were started with", testSubscriptionContext},
	{"A closed Conn returns errors instead of panicking", testClosedConn},
	{"Shutdown waits for in-flight Serve handlers", testShutdown},
}

// env is one subtest's world: its random names, its connections and a done
// channel that releases blocked handlers when the subtest ends.
type env struct {
	t     *testing.T
	h     Harness
	id    string
	ctx   context.Context // for calls; outlives every wait
	done  chan struct{}   // closed at cleanup, before connections shut down
	conns []*bus.Conn
}

func newEnv(t *testing.T, h Harness) *env {
	ctx, cancel := context.WithTimeout(context.Background(), 4*waitTimeout)
	e := &env{t: t, h: h, id: fmt.Sprintf("%012x", rand.Uint64()>>16), ctx: ctx, done: make(chan struct{})}
	t.Cleanup(func() {
		close(e.done)
		for _, c := range slices.Backward(e.conns) {
			sctx, scancel := context.WithTimeout(context.Background(), waitTimeout)
			if err := c.Shutdown(sctx); err != nil {
				t.Errorf("shutdown at cleanup: %v", err)
			}
			scancel()
		}
		cancel()
	})
	return e
}

// open opens a connection that is shut down when the subtest ends.
func (e *env) open() *bus.Conn {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, waitTimeout)
	defer cancel()
	c, err := e.h.Open(ctx, e.t)
	if err != nil {
		e.t.Fatalf("harness Open: %v", err)
	}
	e.conns = append(e.conns, c)
	return c
}

// subject returns a subject (or topic) unique to this subtest.
func (e *env) subject(name string) string { return "bustest." + e.id + "." + name }

// group returns a consumer group or queue name unique to this subtest.
func (e *env) group(name string) string { return name + "-" + e.id }

// block waits in a handler until ch is closed. It gives up (false) when the
// subtest ends or waitTimeout passes, so no handler outlives its test.
func (e *env) block(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-e.done:
	case <-time.After(waitTimeout):
	}
	return false
}

// await waits in the test goroutine until ch is closed or fails the test.
func (e *env) await(ch <-chan struct{}, what string) {
	e.t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		e.t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
	}
}

func (e *env) opts() bus.SubscribeOptions {
	return bus.SubscribeOptions{Backoff: fastBackoff}
}

func (e *env) subscribe(c *bus.Conn, topic, group string, opts bus.SubscribeOptions, h bus.Handler) *bus.Subscription {
	e.t.Helper()
	s, err := c.Subscribe(e.ctx, topic, group, h, opts)
	if err != nil {
		e.t.Fatalf("Subscribe(%q, group %q): %v", topic, group, err)
	}
	return s
}

// recordTo returns a handler that records each delivery as member and
// acknowledges it.
func recordTo(rec *record[got], member int) bus.Handler {
	return func(_ context.Context, d *bus.Delivery) error {
		rec.add(gotFrom(d, member))
		return nil
	}
}

func (e *env) serve(c *bus.Conn, subject, queue string, h bus.RequestHandler) *bus.Subscription {
	e.t.Helper()
	s, err := c.Serve(e.ctx, subject, queue, h)
	if err != nil {
		e.t.Fatalf("Serve(%q, queue %q): %v", subject, queue, err)
	}
	return s
}

func (e *env) listen(c *bus.Conn, pattern string, rec *record[*bus.Message]) *bus.Subscription {
	e.t.Helper()
	s, err := c.Listen(e.ctx, pattern, func(m *bus.Message) { rec.add(m) })
	if err != nil {
		e.t.Fatalf("Listen(%q): %v", pattern, err)
	}
	return s
}

func (e *env) stop(s *bus.Subscription) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		e.t.Errorf("Stop: %v", err)
	}
}

func (e *env) publish(c *bus.Conn, m *bus.Message) {
	e.t.Helper()
	if err := c.Publish(e.ctx, m); err != nil {
		e.t.Fatalf("Publish(%q): %v", m.Subject, err)
	}
}

// publishN publishes n messages with bodies prefix-0 ... and returns the
// bodies. Each gets an ID unique to its topic and body, as a de-duplicating
// broker requires of distinct messages.
func (e *env) publishN(c *bus.Conn, topic, prefix string, n int) []string {
	e.t.Helper()
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprintf("%s-%d", prefix, i)
		e.publish(c, &bus.Message{Subject: topic, Body: []byte(keys[i]), ID: topic + "/" + keys[i]})
	}
	return keys
}

// got is one delivery as a handler saw it.
type got struct {
	Key     string // the body
	Attempt int
	Group   string
	Member  int
	Msg     *bus.Message
}

func gotFrom(d *bus.Delivery, member int) got {
	return got{Key: string(d.Body), Attempt: d.Attempt, Group: d.Group, Member: member, Msg: d.Message}
}

// record collects values from handlers and lets the test goroutine wait for
// a condition on them, woken on every addition rather than polling.
type record[T any] struct {
	mu      sync.Mutex
	items   []T
	changed chan struct{}
}

func newRecord[T any]() *record[T] { return &record[T]{changed: make(chan struct{})} }

func (r *record[T]) add(v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.items = append(r.items, v)
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *record[T]) all() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.items)
}

// wait returns the items once ok holds for them, or the items and false after
// waitTimeout.
func (r *record[T]) wait(ok func([]T) bool) ([]T, bool) {
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		r.mu.Lock()
		items, changed := slices.Clone(r.items), r.changed
		r.mu.Unlock()
		if ok(items) {
			return items, true
		}
		select {
		case <-changed:
		case <-timer.C:
			return items, false
		}
	}
}

// waitFor is wait that fails the test on timeout, naming what it waited for.
func (r *record[T]) waitFor(t *testing.T, what string, ok func([]T) bool) []T {
	t.Helper()
	items, done := r.wait(ok)
	if !done {
		t.Fatalf("timed out after %v waiting for %s (have %d)", waitTimeout, what, len(items))
	}
	return items
}

// waitN waits for at least n items.
func (r *record[T]) waitN(t *testing.T, what string, n int) []T {
	t.Helper()
	return r.waitFor(t, fmt.Sprintf("%d %s", n, what), func(items []T) bool { return len(items) >= n })
}

// waitKeys waits until every key was delivered at least once and returns
// the ledger; on timeout it fails the test, printing the ledger.
func waitKeys(t *testing.T, rec *record[got], keys []string) ledger {
	t.Helper()
	items, ok := rec.wait(func(items []got) bool { return tally(keys, items).Lost == 0 })
	l := tally(keys, items)
	t.Logf("ledger: %v", l)
	if !ok {
		t.Fatalf("timed out after %v with messages lost: %v; missing %v; duplicated %v", waitTimeout, l, first(l.missing, 10), first(l.duplicated, 10))
	}
	return l
}

// ledger accounts for published messages: what was consumed, duplicated and
// lost.
type ledger struct {
	Published  int // distinct messages published
	Deliveries int // handler calls that succeeded or were recorded
	Consumed   int // distinct published messages seen at least once
	Duplicates int // deliveries beyond the first of a message
	Lost       int // published, never seen
	Unexpected int // seen, never published
	missing    []string
	duplicated []string
}

func (l ledger) String() string {
	return fmt.Sprintf("published=%d deliveries=%d consumed=%d duplicates=%d lost=%d unexpected=%d",
		l.Published, l.Deliveries, l.Consumed, l.Duplicates, l.Lost, l.Unexpected)
}

func tally(keys []string, items []got) ledger {
	count := map[string]int{}
	for _, it := range items {
		count[it.Key]++
	}
	l := ledger{Published: len(keys), Deliveries: len(items)}
	for _, k := range keys {
		switch c := count[k]; {
		case c == 0:
			l.Lost++
			l.missing = append(l.missing, k)
		default:
			l.Consumed++
			l.Duplicates += c - 1
			if c > 1 {
				l.duplicated = append(l.duplicated, fmt.Sprintf("%s×%d", k, c))
			}
		}
		delete(count, k)
	}
	for _, c := range count {
		l.Unexpected += c
	}
	return l
}

func first[T any](s []T, n int) []T { return s[:min(n, len(s))] }

// wantCode reports an error unless err carries code.
func wantCode(t *testing.T, what string, err error, code bus.Code) {
	t.Helper()
	if got := bus.ErrorCode(err); got != code {
		t.Errorf("%s: got error %v (code %v), want code %v", what, err, got, code)
	}
}

// headerDiff describes how got differs from want, or returns "".
func headerDiff(want, got bus.Header) string {
	if maps.Equal(want, got) {
		return ""
	}
	var d []string
	for k, v := range want {
		if gv, ok := got[k]; !ok {
			d = append(d, fmt.Sprintf("missing %q", k))
		} else if gv != v {
			d = append(d, fmt.Sprintf("%q = %q, want %q", k, gv, v))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("unexpected %q = %q", k, v))
		}
	}
	sort.Strings(d)
	return strings.Join(d, "; ")
}

// testHeader has the shapes of header a driver must round-trip exactly:
// mixed case, dashes, lower case, spaces, colons, non-ASCII, empty values.
func testHeader() bus.Header {
	return bus.Header{
		"Content-Type":    "application/json",
		"X-Request-Id":    "req-42",
		"x-lower-case":    "lower",
		"MiXeD-CaSe-Key":  "Mixed Value: with colon, comma; and spaces",
		"Sb-Trace-Parent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"Unicode":         "héllo wörld ✓",
		"Empty":           "",
	}
}
