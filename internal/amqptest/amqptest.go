// Package amqptest finds the RabbitMQ broker that tests run against, for
// every package whose tests need one.
package amqptest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// EnvURL names the environment variable that points tests at a broker;
// ./scripts/test sets it.
const EnvURL = "SWITCHBOARD_TEST_AMQP_URL"

// DefaultURL is the broker tests use when EnvURL is unset and something
// listens on its port.
const DefaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// URL returns $SWITCHBOARD_TEST_AMQP_URL, or DefaultURL when something
// listens there. Without a broker it skips the test saying how to get one,
// or fails it when CI=true: CI must not pass by skipping.
func URL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:5672", time.Second)
	if err != nil {
		msg := fmt.Sprintf("no RabbitMQ at %s (%v): run ./scripts/test, which installs and starts one, or set %s", DefaultURL, err, EnvURL)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	_ = c.Close()
	return DefaultURL
}

// Isolated returns a bus URL for base under a random prefix of the test's
// own (so tests and runs never share an exchange or queue), with the
// driver's queue_expires set to expires so that what a failed cleanup
// leaves goes by itself, and the prefix. When the test ends it deletes the
// prefix's exchanges and the queues named by also (full names), if given.
func Isolated(t testing.TB, base, expires string, also ...string) (busURL, prefix string) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("amqptest: broker URL: %v", err)
	}
	prefix = fmt.Sprintf("sbtest.%08x", rand.Uint32())
	q := u.Query()
	q.Set("prefix", prefix)
	q.Set("queue_expires", expires)
	u.RawQuery = q.Encode()
	busURL = u.String()
	u.RawQuery = ""
	plain := u.String()
	t.Cleanup(func() { Delete(t, plain, also, []string{prefix + ".msg", prefix + ".evt"}) })
	return busURL, prefix
}

// Delete deletes queues and exchanges on the broker at plainURL (a URL
// without driver parameters), reporting failures as test errors.
func Delete(t testing.TB, plainURL string, queues, exchanges []string) {
	t.Helper()
	ac, err := amqp.Dial(plainURL)
	if err != nil {
		t.Errorf("amqptest: cleanup: %v", err)
		return
	}
	defer ac.Close()
	ch, err := ac.Channel()
	if err != nil {
		t.Errorf("amqptest: cleanup: %v", err)
		return
	}
	for _, q := range queues {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			t.Errorf("amqptest: cleanup: delete queue %s: %v", q, err)
		}
	}
	for _, x := range exchanges {
		if err := ch.ExchangeDelete(x, false, false); err != nil {
			t.Errorf("amqptest: cleanup: delete exchange %s: %v", x, err)
		}
	}
}
