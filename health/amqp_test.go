package health_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/amqpbus"
	"github.com/switchboard-dev/switchboard/health"
)

// TestBuiltinChecksOnRabbitMQ runs the built-in checks on the machine's
// RabbitMQ ($SWITCHBOARD_TEST_AMQP_URL, else 127.0.0.1:5672), under a
// prefix of its own: the bus check's round trip goes through the broker.
// Without a broker it skips, or fails when CI=true.
func TestBuiltinChecksOnRabbitMQ(t *testing.T) {
	base := os.Getenv("SWITCHBOARD_TEST_AMQP_URL")
	if base == "" {
		base = "amqp://guest:guest@127.0.0.1:5672/"
		c, err := net.DialTimeout("tcp", "127.0.0.1:5672", time.Second)
		if err != nil {
			msg := fmt.Sprintf("no RabbitMQ at %s (%v): run ./scripts/test, which starts one, or set SWITCHBOARD_TEST_AMQP_URL", base, err)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
		_ = c.Close()
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("sbhealthtest.%08x", rand.Uint32())
	q := u.Query()
	q.Set("prefix", prefix)
	q.Set("queue_expires", "1m")
	u.RawQuery = q.Encode()
	t.Cleanup(func() {
		u.RawQuery = ""
		ac, err := amqp.Dial(u.String())
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer ac.Close()
		ch, err := ac.Channel()
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		for _, x := range []string{prefix + ".msg", prefix + ".evt"} {
			if err := ch.ExchangeDelete(x, false, false); err != nil {
				t.Errorf("cleanup: delete exchange %s: %v", x, err)
			}
		}
	})
	conn, err := bus.Open(ctxT(t), u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := newPatient(t, conn)
	r := refresh(t, p.chk)
	wantCheck(t, r, "bus", health.Healthy, "connected to amqp://guest:xxxxx@127.0.0.1:5672/")
	if r.Status != health.Healthy {
		t.Errorf("report on RabbitMQ %+v, want healthy", r)
	}
}
