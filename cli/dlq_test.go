package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/natsbus"
)

// TestDLQScripts runs the scripts in testdata/script/dlq against the real
// switchboard command, on a NATS server where a billing consumer group
// rejects orders without an amount until the script deploys "the fix".
func TestDLQScripts(t *testing.T) {
	ns := startNATS(t)
	url := ns.ClientURL()
	b := startBilling(t, url)
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script/dlq",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("SWITCHBOARD_BUS", url)
			env.Setenv("XDG_CONFIG_HOME", filepath.Join(env.WorkDir, "config"))
			env.Setenv("HOME", filepath.Join(env.WorkDir, "home"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":        cmdExits,
			"validjson":    cmdValidJSON,
			"capture":      cmdCapture,
			"fix":          func(ts *testscript.TestScript, neg bool, args []string) { b.fixed.Store(true) },
			"waitconsumed": b.cmdWaitConsumed,
			"waitdead":     func(ts *testscript.TestScript, neg bool, args []string) { b.cmdWaitDead(ts, neg, args, url) },
			"ledger":       b.cmdLedger,
		},
	})
}

// billingTopic and billingGroup are the poison consumer's.
const (
	billingTopic    = "order.placed"
	billingGroup    = "billing"
	billingAttempts = 3
)

// billing is a consumer group that rejects orders without an amount, as
// a service with a bug would, until fixed is set; and a tail that counts
// what was published.
type billing struct {
	fixed atomic.Bool

	mu        sync.Mutex
	changed   chan struct{}
	published map[string]bool // event ids seen on the topic, replays aside
	consumed  map[string]int  // event id → successful deliveries
	dead      map[string]bool // event ids that failed their last attempt
	replayed  map[string]bool // event ids consumed from a replay
}

func startBilling(t *testing.T, url string) *billing {
	t.Helper()
	ctx := context.Background()
	conn, err := bus.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	b := &billing{changed: make(chan struct{}), published: map[string]bool{}, consumed: map[string]int{},
		dead: map[string]bool{}, replayed: map[string]bool{}}
	if _, err := conn.Tail(ctx, billingTopic, func(m *bus.Message) {
		if m.Header.Get(bus.HeaderReplayed) == "" {
			b.note(func() { b.published[m.Header.Get("ce-id")] = true })
		}
	}); err != nil {
		t.Fatal(err)
	}
	opts := bus.SubscribeOptions{MaxAttempts: billingAttempts, Backoff: func(int) time.Duration { return 10 * time.Millisecond }}
	if _, err := conn.Subscribe(ctx, billingTopic, billingGroup, func(_ context.Context, d *bus.Delivery) error {
		id := d.Header.Get("ce-id")
		var order struct {
			Order  string `json:"order"`
			Amount *int   `json:"amount"`
		}
		if err := json.Unmarshal(d.Body, &order); err != nil {
			return fmt.Errorf("order event %s: %w", id, err)
		}
		if order.Amount == nil && !b.fixed.Load() {
			if d.Attempt >= billingAttempts {
				b.note(func() { b.dead[id] = true })
			}
			return errors.New("order " + order.Order + ": amount missing")
		}
		b.note(func() {
			b.consumed[id]++
			if d.Header.Get(bus.HeaderReplayed) != "" {
				b.replayed[id] = true
			}
		})
		return nil
	}, opts); err != nil {
		t.Fatal(err)
	}
	return b
}

// note applies f under the lock and wakes waiters.
func (b *billing) note(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f()
	close(b.changed)
	b.changed = make(chan struct{})
}

// wait waits until ok holds, woken by every change, for at most 20s.
func (b *billing) wait(ok func() bool) bool {
	deadline := time.After(20 * time.Second)
	for {
		b.mu.Lock()
		done, changed := ok(), b.changed
		b.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-changed:
		case <-deadline:
			return false
		}
	}
}

// cmdWaitConsumed waits until N distinct events were consumed:
//
//	waitconsumed N
func (b *billing) cmdWaitConsumed(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitconsumed N")
	}
	n, err := strconv.Atoi(args[0])
	ts.Check(err)
	if !b.wait(func() bool { return len(b.consumed) >= n }) {
		ts.Fatalf("%d events consumed within 20s, want %d", len(b.consumed), n)
	}
}

// cmdWaitDead waits until N events failed their last attempt and the
// stream holds N dead letters of the billing group:
//
//	waitdead N
func (b *billing) cmdWaitDead(ts *testscript.TestScript, neg bool, args []string, url string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitdead N")
	}
	n, err := strconv.Atoi(args[0])
	ts.Check(err)
	if !b.wait(func() bool { return len(b.dead) >= n }) {
		ts.Fatalf("%d events failed their last attempt within 20s, want %d", len(b.dead), n)
	}
	// The dead letter is published after the handler returned: wait for
	// the stream to have it.
	nc, err := nats.Connect(url)
	ts.Check(err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	ts.Check(err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	subject := natsbus.DefaultSubjectPrefix + "." + bus.DeadLetterTopic(billingGroup, billingTopic)
	for {
		stream, err := js.Stream(ctx, natsbus.DefaultStream)
		ts.Check(err)
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
		ts.Check(err)
		if info.State.Subjects[subject] >= uint64(n) {
			return
		}
		select {
		case <-ctx.Done():
			ts.Fatalf("the stream holds %d dead letters on %s after 20s, want %d", info.State.Subjects[subject], subject, n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// cmdLedger waits until every published event was consumed, then prints
// the ledger to stdout and fails if any event was lost:
//
//	ledger
func (b *billing) cmdLedger(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: ledger")
	}
	lost := func() int {
		n := 0
		for id := range b.published {
			if b.consumed[id] == 0 {
				n++
			}
		}
		return n
	}
	b.wait(func() bool { return len(b.published) > 0 && lost() == 0 })
	b.mu.Lock()
	defer b.mu.Unlock()
	dups := 0
	for _, n := range b.consumed {
		dups += n - 1
	}
	line := fmt.Sprintf("published=%d consumed=%d dead-lettered=%d replayed=%d duplicates=%d lost=%d",
		len(b.published), len(b.consumed), len(b.dead), len(b.replayed), dups, lost())
	fmt.Fprintln(ts.Stdout(), line)
	ts.Logf("ledger: %s", line)
	if l := lost(); l != 0 {
		ts.Fatalf("%d events lost", l)
	}
}

// cmdCapture sets an environment variable to the first group of a regular
// expression matched in the last command's stdout:
//
//	capture VAR REGEXP
func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: capture VAR REGEXP")
	}
	re, err := regexp.Compile(args[1])
	ts.Check(err)
	m := re.FindStringSubmatch(ts.ReadFile("stdout"))
	if len(m) < 2 {
		ts.Fatalf("capture: %q does not match stdout", args[1])
	}
	ts.Setenv(args[0], m[1])
}
