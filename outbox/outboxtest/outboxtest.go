// Package outboxtest is the conformance suite for outbox stores: every
// store runs the same behaviours against its real database and a real
// (embedded) NATS server — publishing each committed event with its id,
// sharing work between relays, keeping order per key, recording failures,
// and losing nothing when relay processes are killed with SIGKILL.
//
// A driver's test calls Run, and Main from its TestMain so that the crash
// test can re-execute the test binary as a relay child process.
package outboxtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	switchboard "github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/natsbus"
	"github.com/switchboard-dev/switchboard/dedupe"
	"github.com/switchboard-dev/switchboard/outbox"
)

// Setup is one fresh outbox, with a business table beside it in the same
// database.
type Setup struct {
	// Open returns a store on a new connection to the outbox, as another
	// relay process would have.
	Open func(t *testing.T) outbox.Store
	// Commit inserts business row n and enqueues msgs in one transaction.
	// With rollback it rolls the transaction back instead of committing.
	Commit func(ctx context.Context, n int, rollback bool, msgs ...outbox.Message) error
	// Rows returns the numbers of the committed business rows.
	Rows func(ctx context.Context) ([]int, error)
	// Pending returns how many records are not marked sent.
	Pending func(ctx context.Context) (int, error)
	// ChildEnv is the environment a relay child process needs for the
	// opener given to Main to open this outbox.
	ChildEnv []string
}

// Harness makes setups.
type Harness struct {
	// New returns a fresh outbox for one test, removed when it ends.
	New func(t *testing.T) Setup
}

// Run runs every behaviour as a subtest.
func Run(t *testing.T, h Harness) {
	t.Run("every committed event is published once with its id and a rolled back one never", func(t *testing.T) { testPublishes(t, h) })
	t.Run("an invalid message is refused inside the transaction", func(t *testing.T) { testInvalid(t, h) })
	t.Run("a failed publish is recorded, stops its key and is retried", func(t *testing.T) { testFailure(t, h) })
	t.Run("a record that cannot be published holds up its key only", func(t *testing.T) { testPoison(t, h) })
	t.Run("two relays never publish one record at the same time", func(t *testing.T) { testTwoRelays(t, h) })
	t.Run("records of one key are published in order by two relays", func(t *testing.T) { testKeyOrder(t, h) })
	t.Run("sent records are pruned", func(t *testing.T) { testPrune(t, h) })
	t.Run("relays killed with SIGKILL lose nothing", func(t *testing.T) { testCrash(t, h) })
}

// Row is the event the suite publishes for business row N.
type Row struct {
	N int `json:"n"`
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newTopic() switchboard.TopicDef[*Row] {
	return switchboard.Topic[*Row](fmt.Sprintf("outbox.t%08x", rand.Uint32()))
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func eventID(n int) string { return "row-" + strconv.Itoa(n) }

func rowEvent(ctx context.Context, t *testing.T, topic switchboard.TopicDef[*Row], n int, key string) outbox.Message {
	t.Helper()
	m, err := outbox.Event(ctx, topic, &Row{N: n}, switchboard.WithEventID(eventID(n)), switchboard.WithSubject(key))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func embeddedBus(t *testing.T) *bus.Conn {
	t.Helper()
	conn, err := bus.Open(context.Background(), "embedded://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// consumer records what a consumer group receives on a topic.
type consumer struct {
	mu     sync.Mutex
	ids    map[string]int    // deliveries per ce-id
	order  map[string][]int  // row numbers per key, in delivery order
	msgIDs map[string]string // bus message id per ce-id
	notify chan struct{}
}

func consume(t *testing.T, conn *bus.Conn, topic string) *consumer {
	t.Helper()
	c := &consumer{ids: map[string]int{}, order: map[string][]int{}, msgIDs: map[string]string{}, notify: make(chan struct{}, 1)}
	sub, err := conn.Subscribe(context.Background(), topic, "audit", func(_ context.Context, d *bus.Delivery) error {
		var n int
		if _, err := fmt.Sscanf(string(d.Body), `{"n":%d}`, &n); err != nil {
			return fmt.Errorf("body %q: %w", d.Body, err)
		}
		c.mu.Lock()
		id := d.Header["ce-id"]
		c.ids[id]++
		c.msgIDs[id] = d.ID
		k := d.Header["ce-subject"]
		c.order[k] = append(c.order[k], n)
		c.mu.Unlock()
		select {
		case c.notify <- struct{}{}:
		default:
		}
		return nil
	}, bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Stop(context.Background()) })
	return c
}

// waitFor waits until the consumer has received every id in want.
func (c *consumer) waitFor(ctx context.Context, t *testing.T, want []string) {
	t.Helper()
	for {
		c.mu.Lock()
		missing := 0
		for _, id := range want {
			if c.ids[id] == 0 {
				missing++
			}
		}
		c.mu.Unlock()
		if missing == 0 {
			return
		}
		select {
		case <-c.notify:
		case <-ctx.Done():
			t.Fatalf("%d of %d events were not consumed", missing, len(want))
		}
	}
}

// drain relays until nothing is pending.
func drain(ctx context.Context, t *testing.T, s Setup, r *outbox.Relay) {
	t.Helper()
	for {
		if _, err := r.RelayOnce(ctx); err != nil {
			t.Fatal(err)
		}
		n, err := s.Pending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%d records still pending", n)
		}
	}
}

func testPublishes(t *testing.T, h Harness) {
	ctx := ctxT(t, 30*time.Second)
	s := h.New(t)
	conn := embeddedBus(t)
	topic := newTopic()
	c := consume(t, conn, topic.Name())
	var want []string
	for n := range 50 {
		rollback := n%10 == 3
		if err := s.Commit(ctx, n, rollback, rowEvent(ctx, t, topic, n, "k"+strconv.Itoa(n%3))); err != nil {
			t.Fatal(err)
		}
		if !rollback {
			want = append(want, eventID(n))
		}
	}
	r := &outbox.Relay{Store: s.Open(t), Publisher: conn, BatchSize: 16, Logger: quiet()}
	drain(ctx, t, s, r)
	c.waitFor(ctx, t, want)
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, n := range c.ids {
		if !slices.Contains(want, id) {
			t.Errorf("event %s was published but its transaction rolled back", id)
		}
		if n != 1 {
			t.Errorf("event %s consumed %d times", id, n)
		}
		if c.msgIDs[id] != id {
			t.Errorf("event %s published with message id %q, want the event id", id, c.msgIDs[id])
		}
	}
	if st := r.Stats(); st.Published != int64(len(want)) || st.Failed != 0 {
		t.Errorf("relay stats %+v, want %d published", st, len(want))
	}
}

func testInvalid(t *testing.T, h Harness) {
	ctx := ctxT(t, 30*time.Second)
	s := h.New(t)
	bad := outbox.Message{Topic: "no spaces allowed", Body: []byte(`{}`)}
	err := s.Commit(ctx, 1, false, bad)
	if bus.ErrorCode(err) != bus.InvalidArgument || !strings.Contains(err.Error(), "no spaces allowed") {
		t.Fatalf("enqueue of an invalid topic: %v, want InvalidArgument naming it", err)
	}
	rows, err := s.Rows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 0 {
		t.Fatalf("business rows %v committed although their event was refused", rows)
	}
}

func testFailure(t *testing.T, h Harness) {
	ctx := ctxT(t, 30*time.Second)
	s := h.New(t)
	conn := embeddedBus(t)
	topic := newTopic()
	c := consume(t, conn, topic.Name())
	var want []string
	for n := range 6 {
		if err := s.Commit(ctx, n, false, rowEvent(ctx, t, topic, n, "k")); err != nil {
			t.Fatal(err)
		}
		want = append(want, eventID(n))
	}
	// A relay whose broker connection is gone.
	dead, err := bus.Open(ctx, "embedded://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_ = dead.Close()
	var attempts []error
	r1 := &outbox.Relay{Store: s.Open(t), Publisher: dead, Logger: quiet(), OnPublish: func(_ outbox.Record, err error) { attempts = append(attempts, err) }}
	n, err := r1.RelayOnce(ctx)
	if err == nil || n != 0 {
		t.Fatalf("relay on a closed connection: published %d, err %v; want an error", n, err)
	}
	if len(attempts) != 1 {
		t.Fatalf("%d publish attempts on a dead broker, want 1 (the batch stops)", len(attempts))
	}
	if p, _ := s.Pending(ctx); p != 6 {
		t.Fatalf("%d pending after a failed publish, want all 6", p)
	}
	r2 := &outbox.Relay{Store: s.Open(t), Publisher: conn, Logger: quiet()}
	drain(ctx, t, s, r2)
	c.waitFor(ctx, t, want)
	c.mu.Lock()
	defer c.mu.Unlock()
	if got := c.order["k"]; !slices.Equal(got, []int{0, 1, 2, 3, 4, 5}) {
		t.Fatalf("order after the retry %v", got)
	}
}

func testPoison(t *testing.T, h Harness) {
	ctx := ctxT(t, 30*time.Second)
	s := h.New(t)
	conn := embeddedBus(t)
	topic := newTopic()
	c := consume(t, conn, topic.Name())
	huge := rowEvent(ctx, t, topic, 0, "a")
	huge.Body = append([]byte(`{"n":0,"pad":"`), append(make([]byte, conn.MaxMessageSize()), `"}`...)...)
	for i := range huge.Body[14 : len(huge.Body)-2] {
		huge.Body[14+i] = 'x'
	}
	if err := s.Commit(ctx, 0, false, huge); err != nil {
		t.Fatal(err)
	}
	want := []string{}
	for n := 1; n <= 4; n++ {
		key := "b"
		if n == 1 {
			key = "a" // behind the refused record
		}
		if err := s.Commit(ctx, n, false, rowEvent(ctx, t, topic, n, key)); err != nil {
			t.Fatal(err)
		}
		if key == "b" {
			want = append(want, eventID(n))
		}
	}
	var attempts []int
	r := &outbox.Relay{Store: s.Open(t), Publisher: conn, Logger: quiet(), OnPublish: func(rec outbox.Record, err error) {
		if rec.ID == eventID(0) {
			attempts = append(attempts, rec.Attempts)
			if err == nil {
				t.Errorf("a message larger than the broker takes was published")
			}
		}
	}}
	for range 2 {
		n, err := r.RelayOnce(ctx)
		if err == nil || !strings.Contains(err.Error(), eventID(0)) {
			t.Fatalf("relay: %v, want the refused record's error", err)
		}
		if n != len(want) && n != 0 {
			t.Fatalf("published %d", n)
		}
	}
	c.waitFor(ctx, t, want)
	if p, _ := s.Pending(ctx); p != 2 {
		t.Fatalf("%d pending, want the refused record and the one behind it on its key", p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids[eventID(1)] != 0 {
		t.Fatal("a record was published before the older record of its key")
	}
	if !slices.Equal(attempts, []int{0, 1}) {
		t.Fatalf("the refused record's recorded attempts were %v on its two tries, want [0 1]", attempts)
	}
}

// countingPublisher publishes through the real bus and records, per event
// id, how many publishes were in flight at once and in all.
type countingPublisher struct {
	outbox.Publisher
	mu         sync.Mutex
	inFlight   map[string]int
	total      map[string]int
	overlapped int
}

func (p *countingPublisher) Publish(ctx context.Context, m *bus.Message) error {
	p.mu.Lock()
	if p.inFlight[m.ID] > 0 {
		p.overlapped++
	}
	p.inFlight[m.ID]++
	p.total[m.ID]++
	p.mu.Unlock()
	err := p.Publisher.Publish(ctx, m)
	p.mu.Lock()
	p.inFlight[m.ID]--
	p.mu.Unlock()
	return err
}

func runRelays(ctx context.Context, t *testing.T, rs ...*outbox.Relay) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() { _ = r.Run(ctx) })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func testTwoRelays(t *testing.T, h Harness) {
	ctx := ctxT(t, 60*time.Second)
	s := h.New(t)
	conn := embeddedBus(t)
	topic := newTopic()
	c := consume(t, conn, topic.Name())
	pub := &countingPublisher{Publisher: conn, inFlight: map[string]int{}, total: map[string]int{}}
	r1 := &outbox.Relay{Store: s.Open(t), Publisher: pub, BatchSize: 10, PollInterval: 5 * time.Millisecond, Logger: quiet()}
	r2 := &outbox.Relay{Store: s.Open(t), Publisher: pub, BatchSize: 10, PollInterval: 5 * time.Millisecond, Logger: quiet()}
	runRelays(ctx, t, r1, r2)
	const rows = 400
	var want []string
	for n := range rows {
		if err := s.Commit(ctx, n, false, rowEvent(ctx, t, topic, n, "")); err != nil {
			t.Fatal(err)
		}
		want = append(want, eventID(n))
	}
	c.waitFor(ctx, t, want)
	pub.mu.Lock()
	defer pub.mu.Unlock()
	dups := 0
	for _, n := range pub.total {
		dups += n - 1
	}
	s1, s2 := r1.Stats(), r2.Stats()
	t.Logf("ledger: committed=%d published=%d (relay 1: %d, relay 2: %d) published twice=%d at the same time=%d consumed=%d",
		rows, s1.Published+s2.Published, s1.Published, s2.Published, dups, pub.overlapped, len(c.ids))
	if pub.overlapped != 0 || dups != 0 {
		t.Fatalf("%d records were published by two relays at once, %d twice in all", pub.overlapped, dups)
	}
	if s1.Published == 0 || s2.Published == 0 {
		t.Logf("one relay did all the work (%d/%d): the sharing was not exercised this run", s1.Published, s2.Published)
	}
}

func testKeyOrder(t *testing.T, h Harness) {
	ctx := ctxT(t, 60*time.Second)
	s := h.New(t)
	conn := embeddedBus(t)
	topic := newTopic()
	c := consume(t, conn, topic.Name())
	const rows, keys = 300, 4
	var want []string
	for n := range rows {
		if err := s.Commit(ctx, n, false, rowEvent(ctx, t, topic, n, "acct-"+strconv.Itoa(n%keys))); err != nil {
			t.Fatal(err)
		}
		want = append(want, eventID(n))
	}
	// Small batches so that the relays' claims interleave within each key.
	r1 := &outbox.Relay{Store: s.Open(t), Publisher: conn, BatchSize: 3, PollInterval: time.Millisecond, Logger: quiet()}
	r2 := &outbox.Relay{Store: s.Open(t), Publisher: conn, BatchSize: 5, PollInterval: time.Millisecond, Logger: quiet()}
	runRelays(ctx, t, r1, r2)
	c.waitFor(ctx, t, want)
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range keys {
		got := c.order["acct-"+strconv.Itoa(k)]
		if len(got) != rows/keys || !slices.IsSorted(got) {
			t.Fatalf("key acct-%d consumed in the order %v", k, got)
		}
	}
	t.Logf("%d records of %d keys in order; relay 1 published %d, relay 2 %d", rows, keys, r1.Stats().Published, r2.Stats().Published)
}

func testPrune(t *testing.T, h Harness) {
	ctx := ctxT(t, 30*time.Second)
	s := h.New(t)
	conn := embeddedBus(t)
	topic := newTopic()
	for n := range 5 {
		if err := s.Commit(ctx, n, false, rowEvent(ctx, t, topic, n, "")); err != nil {
			t.Fatal(err)
		}
	}
	store := s.Open(t)
	drain(ctx, t, s, &outbox.Relay{Store: store, Publisher: conn, Logger: quiet()})
	if err := s.Commit(ctx, 5, false, rowEvent(ctx, t, topic, 5, "")); err != nil {
		t.Fatal(err)
	}
	if n, err := store.Prune(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("prune of records sent before an hour ago: %d, %v; want 0", n, err)
	}
	if n, err := store.Prune(ctx, time.Now().Add(time.Second)); err != nil || n != 5 {
		t.Fatalf("prune: %d, %v; want the 5 sent records", n, err)
	}
	if p, _ := s.Pending(ctx); p != 1 {
		t.Fatalf("%d pending after pruning, want the unsent one kept", p)
	}
}

// The child process's environment.
const (
	envChild = "SWITCHBOARD_OUTBOXTEST_RELAY"
	envBus   = "SWITCHBOARD_OUTBOXTEST_BUS"
)

// Main runs the tests, or, in a relay child process started by the crash
// test, a relay on the store open returns (from the environment the
// Setup's ChildEnv set) until the process is killed. It prints
// "published <event id>" for each record the broker confirmed. The relay's
// PublishTimeout is 250ms: a store with leases should lease for about a
// second there, so that a killed relay's records do not wait long.
func Main(m *testing.M, open func(ctx context.Context) (outbox.Store, error)) {
	if os.Getenv(envChild) == "" {
		os.Exit(m.Run())
	}
	ctx := context.Background()
	store, err := open(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay child: open store:", err)
		os.Exit(2)
	}
	conn, err := bus.Open(ctx, os.Getenv(envBus))
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay child: open bus:", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	// A short publish timeout, so that stores with leases can use short
	// ones and a killed relay's records are taken over quickly.
	r := &outbox.Relay{Store: store, Publisher: conn, BatchSize: 20, PollInterval: 10 * time.Millisecond, PublishTimeout: 250 * time.Millisecond,
		OnPublish: func(rec outbox.Record, err error) {
			if err == nil {
				mu.Lock()
				fmt.Fprintln(out, "published", rec.ID)
				_ = out.Flush()
				mu.Unlock()
			}
		}}
	_ = r.Run(ctx)
	os.Exit(0)
}

// child is one relay process.
type child struct {
	cmd       *exec.Cmd
	published chan struct{} // one value per publish it reported
	done      chan struct{} // closed when its output ended
}

func startChild(t *testing.T, env []string, logDir string, n int, onPublish func(id string)) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), envChild+"=1"), env...)
	logf, err := os.Create(filepath.Join(logDir, fmt.Sprintf("relay-%d.log", n)))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, published: make(chan struct{}, 1<<16), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "published "); ok {
				onPublish(id)
				c.published <- struct{}{}
			}
		}
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-c.done; _ = cmd.Wait(); logf.Close() })
	return c
}

// kill sends SIGKILL and checks that the fault fired.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.done
	err := c.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("relay child ended with %v, want killed by SIGKILL", err)
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the fault did not fire: relay child ended with %v", err)
	}
}

// ledger is the crash test's account.
type ledger struct {
	mu        sync.Mutex
	committed int
	published map[string]int // confirmed publishes per id, as the children reported
	delivered map[string]int // deliveries per id, before de-duplication
	handled   map[string]int // handler runs per id, after de-duplication
	dropped   int            // deliveries the dedupe middleware dropped
	notify    chan struct{}
}

func testCrash(t *testing.T, h Harness) {
	if testing.Short() {
		t.Skip("kills relay processes; skipped with -short")
	}
	ctx := ctxT(t, 90*time.Second)
	s := h.New(t)
	srv, err := natsbus.StartServer(natsbus.ServerOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	conn, err := bus.Open(ctx, srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	topic := newTopic()
	l := &ledger{published: map[string]int{}, delivered: map[string]int{}, handled: map[string]int{}, notify: make(chan struct{}, 1)}

	// The consumer: idempotent, so duplicates that get past the broker are
	// dropped; an outer middleware counts deliveries before that.
	count := func(next switchboard.EventHandler) switchboard.EventHandler {
		return func(ctx context.Context, ev *switchboard.EventCall) error {
			l.mu.Lock()
			l.delivered[ev.Info.ID]++
			l.mu.Unlock()
			return next(ctx, ev)
		}
	}
	dd := dedupe.Middleware(&dedupe.Memory{}, dedupe.WithObserver(func(_ string, o dedupe.Outcome, _ error) {
		if o == dedupe.Duplicate {
			l.mu.Lock()
			l.dropped++
			l.mu.Unlock()
		}
	}))
	svc := switchboard.NewService("ledger", "1.0.0", switchboard.WithLogger(quiet()), switchboard.WithConsumerMiddleware(count, dd))
	topic.Subscribe(svc, "ledger", func(ctx context.Context, r *Row) error {
		l.mu.Lock()
		l.handled[eventID(r.N)]++
		l.mu.Unlock()
		select {
		case l.notify <- struct{}{}:
		default:
		}
		return nil
	}, switchboard.Concurrency(4))
	if err := svc.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Shutdown(context.Background()) })

	// The producer commits numbered business rows with their events.
	stop := make(chan struct{})
	produced := make(chan int)
	go func() {
		n := 0
		defer func() { produced <- n }()
		pace := time.NewTicker(2 * time.Millisecond) // at most about 500 rows a second
		defer pace.Stop()
		for ; n < 5000; n++ {
			select {
			case <-stop:
				return
			case <-pace.C:
			}
			l.mu.Lock()
			backlog := n - len(l.handled)
			l.mu.Unlock()
			if backlog > 200 { // keep the final drain short: skip this tick
				n--
				continue
			}
			m, err := outbox.Event(ctx, topic, &Row{N: n}, switchboard.WithEventID(eventID(n)), switchboard.WithSubject("acct-"+strconv.Itoa(n%8)))
			if err == nil {
				err = s.Commit(ctx, n, false, m)
			}
			if err != nil {
				t.Errorf("commit %d: %v", n, err)
				return
			}
		}
	}()

	onPublish := func(id string) {
		l.mu.Lock()
		l.published[id]++
		l.mu.Unlock()
	}
	env := append([]string{envBus + "=" + srv.ClientURL()}, s.ChildEnv...)
	logDir := t.TempDir()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(logDir, "*.log"))
		for _, f := range logs {
			b, _ := os.ReadFile(f)
			if len(b) > 2000 {
				b = b[len(b)-2000:]
			}
			t.Logf("%s:\n%s", filepath.Base(f), b)
		}
	})
	const slots, wantKills = 2, 10
	started := 0
	relays := make([]*child, slots)
	for i := range relays {
		relays[i] = startChild(t, env, logDir, started, onPublish)
		started++
	}
	kills, idleKills := 0, 0
	begin := time.Now()
	for kills < wantKills {
		i := kills % slots
		// Kill it after it reported a random number of publishes: mid-batch,
		// between a publish and marking it sent, or between batches.
		want := 1 + rand.IntN(45)
		timer := time.NewTimer(3 * time.Second)
	wait:
		for range want {
			select {
			case <-relays[i].published:
			case <-timer.C:
				idleKills++ // the other relay took the work
				break wait
			case <-ctx.Done():
				t.Fatal("deadline before the kills were done")
			}
		}
		timer.Stop()
		relays[i].kill(t)
		kills++
		relays[i] = startChild(t, env, logDir, started, onPublish)
		started++
	}
	close(stop)
	committed := <-produced
	t.Logf("kills done after %v", time.Since(begin))
	rows, err := s.Rows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The relays still running publish the rest.
	var want []string
	for _, n := range rows {
		want = append(want, eventID(n))
	}
	for {
		l.mu.Lock()
		missing := 0
		for _, id := range want {
			if l.handled[id] == 0 {
				missing++
			}
		}
		l.mu.Unlock()
		if missing == 0 {
			break
		}
		select {
		case <-l.notify:
		case <-ctx.Done():
			t.Fatalf("%d of %d committed rows' events never consumed", missing, len(want))
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	published, republished, delivered, lost, twice, stray := 0, 0, 0, 0, 0, 0
	for _, n := range l.published {
		published += n
		republished += n - 1
	}
	for _, n := range l.delivered {
		delivered += n
	}
	for _, id := range want {
		if l.handled[id] == 0 {
			lost++
		}
		if l.handled[id] > 1 {
			twice++
		}
	}
	for id := range l.handled {
		if !slices.Contains(want, id) {
			stray++
		}
	}
	t.Logf("ledger: committed=%d (rows in the table %d) published=%d (again after a kill: %d) delivered=%d duplicates dropped=%d handled=%d lost=%d handled twice=%d; relays started=%d killed=%d (of them idle %d)",
		committed, len(rows), published, republished, delivered, l.dropped, len(l.handled), lost, twice, started, kills, idleKills)
	if len(rows) != committed {
		t.Errorf("the producer committed %d rows but the table has %d", committed, len(rows))
	}
	if lost != 0 || twice != 0 || stray != 0 {
		t.Fatalf("lost=%d handled twice=%d events of no committed row=%d; want 0, 0, 0", lost, twice, stray)
	}
	if kills < wantKills || committed == 0 {
		t.Fatalf("only %d kills, %d rows: the fault was not exercised", kills, committed)
	}
}
