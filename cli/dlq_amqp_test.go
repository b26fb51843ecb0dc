package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard"
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
	// A service, so that discovery announces its consumer group.
	svc := switchboard.NewService(group, "1.0.0", switchboard.WithLogger(slog.New(slog.DiscardHandler)))
	switchboard.Topic[json.RawMessage](topic).Subscribe(svc, group, func(ctx context.Context, ev json.RawMessage) error {
		if strings.Contains(string(ev), "poison") && !fixed.Load() {
			failedLast <- struct{}{}
			return errors.New("order without an amount")
		}
		info, _ := switchboard.EventFrom(ctx)
		mu.Lock()
		consumed[string(ev)] = info.Header.Get(bus.HeaderReplayed)
		mu.Unlock()
		got <- struct{}{}
		return nil
	}, switchboard.MaxAttempts(1))
	if err := svc.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
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

	// RabbitMQ cannot list its queues over AMQP: the places are those of
	// the groups that running services announce, and the command says so.
	code, stdout, stderr := run("--bus", busURL, "dlq", "list", "-o", "json")
	var places cli.PlacesJSON
	if err := json.Unmarshal([]byte(stdout), &places); code != 0 || err != nil {
		t.Fatalf("dlq list without a place: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	if want := (bus.DeadLetterPlace{Group: group, Topic: topic, Count: 1}); places.Source != "discovery" || len(places.Places) != 1 || places.Places[0] != want {
		t.Errorf("dlq list without a place: %+v, want source discovery and %+v", places, want)
	}
	code, stdout, stderr = run("--bus", busURL, "dlq", "list")
	if code != 0 || !strings.Contains(stderr, "running services announce") || !strings.Contains(stdout, group) {
		t.Errorf("dlq list without a place: exit %d\n%s%s", code, stdout, stderr)
	}

	code, stdout, stderr = run("--bus", busURL, "dlq", "show", "--group", group, "--topic", topic, id)
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
