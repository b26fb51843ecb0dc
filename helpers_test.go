package switchboard_test

import (
	"context"
	"sync"
	"testing"

	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/natsbus"
)

var (
	urlsMu sync.Mutex
	urls   = map[*bus.Conn]string{}
)

// newBus starts an embedded NATS server with JetStream for the test, its
// data in a temporary directory, and returns a connection to it.
func newBus(t *testing.T) *bus.Conn {
	t.Helper()
	return open(t, "embedded://"+t.TempDir())
}

// newBusOn returns a second, independent connection to the server behind conn.
func newBusOn(t *testing.T, conn *bus.Conn) *bus.Conn {
	t.Helper()
	urlsMu.Lock()
	u := urls[conn]
	urlsMu.Unlock()
	return open(t, u)
}

func open(t *testing.T, u string) *bus.Conn {
	conn, err := bus.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	urlsMu.Lock()
	urls[conn] = u
	urlsMu.Unlock()
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}
