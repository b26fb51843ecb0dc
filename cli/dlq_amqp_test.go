package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/cli"
	"github.com/switchboard-dev/switchboard/internal/amqptest"
)

// run runs the switchboard command in process and returns its exit code,
// stdout and stderr.
func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cli.Run(context.Background(), args, cli.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	return code, out.String(), errOut.String()
}

// TestDLQOnRabbitMQ dead-letters a poison event on RabbitMQ, inspects it
// with the CLI, replays it after the fix and checks that it was consumed.
func TestDLQOnRabbitMQ(t *testing.T) {
	const topic, group = "order.placed", "billing"
	// Queue names are the driver's: group, its dead-letter topic, retries.
	queues := func(p string) []string {
		return []string{p + ".group." + group + "." + topic, p + ".group." + group + "." + bus.DeadLetterTopic(group, topic), p + ".retry." + group + "." + topic}
	}
	base := amqptest.URL(t)
	busURL, prefix := amqptest.Isolated(t, base, "10m") // the expiry bounds what a failed cleanup leaves
	t.Cleanup(func() { amqptest.Delete(t, base, queues(prefix), nil) })

	ctx := context.Background()
	conn, err := bus.Open(ctx, busURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var fixed atomic.Bool
	var mu sync.Mutex
	consumed := map[string]string{} // body → Sb-Replayed
	failedLast := make(chan struct{}, 10)
	got := make(chan struct{}, 10)
	if _, err := conn.Subscribe(ctx, topic, group, func(_ context.Context, d *bus.Delivery) error {
		if strings.Contains(string(d.Body), "poison") && !fixed.Load() {
			failedLast <- struct{}{}
			return errors.New("order without an amount")
		}
		mu.Lock()
		consumed[string(d.Body)] = d.Header.Get(bus.HeaderReplayed)
		mu.Unlock()
		got <- struct{}{}
		return nil
	}, bus.SubscribeOptions{MaxAttempts: 1}); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{"n":1}`, `{"poison":true}`, `{"n":3}`} {
		if code, _, stderr := run("--bus", busURL, "publish", topic, body); code != 0 {
			t.Fatalf("publish: exit %d: %s", code, stderr)
		}
	}
	waitN := func(ch <-chan struct{}, n int, what string) {
		t.Helper()
		for range n {
			select {
			case <-ch:
			case <-time.After(15 * time.Second):
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitN(got, 2, "the good events")
	waitN(failedLast, 1, "the poison event to fail")

	// Listing places needs the management API on RabbitMQ: a clear error.
	code, _, stderr := run("--bus", busURL, "dlq", "list", "-o", "json")
	if code != cli.ExitFailed || !strings.Contains(stderr, "RabbitMQ cannot list queues over AMQP 0.9.1") || !strings.Contains(stderr, `"code":"Unimplemented"`) {
		t.Errorf("dlq list without a place: exit %d, stderr %q; want 1 and the reason", code, stderr)
	}

	// The dead letter is published after the handler failed: wait for it.
	var list struct {
		Count       int `json:"count"`
		DeadLetters []struct {
			ID       string `json:"id"`
			Reason   string `json:"reason"`
			Attempts int    `json:"attempts"`
		} `json:"dead_letters"`
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, stdout, stderr := run("--bus", busURL, "dlq", "list", "--group", group, "--topic", topic, "-o", "json")
		if code != 0 {
			t.Fatalf("dlq list: exit %d: %s", code, stderr)
		}
		if err := json.Unmarshal([]byte(stdout), &list); err != nil {
			t.Fatalf("dlq list -o json: %v\n%s", err, stdout)
		}
		if list.Count == 1 || time.Now().After(deadline) {
			break
		}
	}
	if list.Count != 1 || list.DeadLetters[0].Reason != "order without an amount" || list.DeadLetters[0].Attempts != 1 {
		t.Fatalf("dlq list: %+v, want the poison event with its reason", list)
	}
	id := list.DeadLetters[0].ID

	code, stdout, stderr := run("--bus", busURL, "dlq", "show", "--group", group, "--topic", topic, id)
	if code != 0 || !strings.Contains(stdout, "Sb-Dead-Reason:") || !strings.Contains(stdout, `"poison": true`) {
		t.Errorf("dlq show: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := run("--bus", busURL, "dlq", "show", "--group", group, "--topic", topic, "000000000000"); code != cli.ExitNotFound {
		t.Errorf("dlq show of an unknown ID: exit %d (%s), want %d", code, stderr, cli.ExitNotFound)
	}
	if code, _, stderr := run("--bus", busURL, "dlq", "list", "--group", "shipping", "--topic", topic); code != cli.ExitNotFound || !strings.Contains(stderr, "no consumer group shipping") {
		t.Errorf("dlq list of an unknown group: exit %d (%s), want %d naming the group", code, stderr, cli.ExitNotFound)
	}

	fixed.Store(true)
	code, stdout, stderr = run("--bus", busURL, "dlq", "replay", "--group", group, "--topic", topic, "--all", "-o", "json")
	if code != 0 || !strings.Contains(stdout, `"count": 1`) {
		t.Fatalf("dlq replay: exit %d\n%s%s", code, stdout, stderr)
	}
	waitN(got, 1, "the replayed event")
	mu.Lock()
	replayed := consumed[`{"poison":true}`]
	n := len(consumed)
	mu.Unlock()
	if replayed != "1" {
		t.Errorf("the replayed event has %s=%q, want 1", bus.HeaderReplayed, replayed)
	}
	code, stdout, _ = run("--bus", busURL, "dlq", "list", "--group", group, "--topic", topic, "-o", "json")
	if code != 0 || !strings.Contains(stdout, `"count": 0`) {
		t.Errorf("dlq list after the replay: exit %d\n%s", code, stdout)
	}
	t.Logf("ledger: published=3 consumed=%d dead-lettered=1 replayed=1 lost=%d", n, 3-n)
	if n != 3 {
		t.Errorf("%d events lost", 3-n)
	}
}
