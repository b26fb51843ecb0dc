// Package amqptest finds the RabbitMQ broker that tests run against, for
// every package whose tests need one.
package amqptest

import (
	"fmt"
	"net"
	"os"
	"testing"
	"time"
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
