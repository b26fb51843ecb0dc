package amqpbus_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/amqpbus"
	"github.com/switchboard-dev/switchboard/bus/bustest"
	"github.com/switchboard-dev/switchboard/internal/amqptest"
)

// harness opens bus connections by URL and remembers them, so that the
// queues they declared can be deleted after the suite.
type harness struct {
	url   string
	mu    sync.Mutex
	conns []*bus.Conn
}

func (h *harness) Open(ctx context.Context, t *testing.T) (*bus.Conn, error) {
	c, err := bus.Open(ctx, h.url)
	if err == nil {
		h.mu.Lock()
		h.conns = append(h.conns, c)
		h.mu.Unlock()
	}
	return c, err
}

func (*harness) Features() bustest.Features { return bustest.Features{PublishDedup: false} }

// TestConformance runs the suite against the machine's RabbitMQ, in
// exchanges and queues of its own (a random prefix) that it deletes at the
// end; queue_expires bounds what a failed cleanup leaves behind.
func TestConformance(t *testing.T) {
	base := amqptest.URL(t)
	u, prefix := isolated(t, base)
	h := &harness{url: u}
	// One open up front turns a wrong URL into one clear failure.
	open(t, u)
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		cleanup(t, base, prefix, h.conns...)
	})
	bustest.Run(t, h)
}

// isolated returns base with a random prefix (so runs and tests never share
// an exchange or queue) and a queue expiry, and the prefix.
func isolated(t testing.TB, base string) (string, string) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("broker URL: %v", err)
	}
	prefix := fmt.Sprintf("sbtest.%08x", rand.Uint32())
	q := u.Query()
	q.Set("prefix", prefix)
	q.Set("queue_expires", "10m")
	u.RawQuery = q.Encode()
	return u.String(), prefix
}

// cleanup deletes the exchanges of prefix and the queues conns declared.
func cleanup(t testing.TB, base, prefix string, conns ...*bus.Conn) {
	u, err := url.Parse(base)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
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
	seen := map[string]bool{}
	for _, c := range conns {
		for _, q := range amqpbus.DeclaredQueues(c) {
			if seen[q] {
				continue
			}
			seen[q] = true
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				t.Errorf("cleanup: delete queue %s: %v", q, err)
				return
			}
		}
	}
	for _, x := range []string{prefix + ".msg", prefix + ".evt"} {
		if err := ch.ExchangeDelete(x, false, false); err != nil {
			t.Errorf("cleanup: delete exchange %s: %v", x, err)
			return
		}
	}
	t.Logf("cleanup: deleted %d queues and the exchanges of %s", len(seen), prefix)
}

// open opens a bus connection that is closed after the test.
func open(t *testing.T, rawURL string) *bus.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := bus.Open(ctx, rawURL)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}
