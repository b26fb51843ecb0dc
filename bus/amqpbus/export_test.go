package amqpbus

import (
	"slices"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

// DeclaredQueues lists the durable queues a connection declared, for tests
// to delete.
func DeclaredQueues(c *bus.Conn) []string {
	d := c.Driver().(*conn)
	d.mu.Lock()
	defer d.mu.Unlock()
	var qs []string
	for q := range d.declared {
		qs = append(qs, q)
	}
	slices.Sort(qs)
	return qs
}

// WaitState waits until the connection is up (or down, when up is false),
// woken by the driver's own state changes, and reports whether it got there
// before timeout.
func WaitState(c *bus.Conn, up bool, timeout time.Duration) bool {
	d := c.Driver().(*conn)
	deadline := time.After(timeout)
	for {
		d.mu.Lock()
		now, changed := d.ac != nil && !d.ac.IsClosed(), d.changed
		d.mu.Unlock()
		if now == up {
			return true
		}
		select {
		case <-changed:
		case <-deadline:
			return false
		}
	}
}

// WaitConsumers waits until the connection is up and every subscription
// of it consumes again on it (after a reconnection the driver restores them
// one by one), and reports whether that happened before timeout.
func WaitConsumers(c *bus.Conn, timeout time.Duration) bool {
	d := c.Driver().(*conn)
	deadline := time.After(timeout)
	for {
		d.mu.Lock()
		ac, changed := d.ac, d.changed
		cons := make([]*consumer, 0, len(d.consumers))
		for s := range d.consumers {
			cons = append(cons, s)
		}
		d.mu.Unlock()
		all := ac != nil && !ac.IsClosed()
		for _, s := range cons {
			s.mu.Lock()
			if s.ac != ac || s.ch == nil || s.ch.IsClosed() {
				all = false
			}
			s.mu.Unlock()
		}
		if all {
			return true
		}
		select {
		case <-changed:
		case <-deadline:
			return false
		}
	}
}

// Host returns the host:port the connection is connected to, or "" while
// disconnected.
func Host(c *bus.Conn) string {
	d := c.Driver().(*conn)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ac == nil || d.ac.IsClosed() {
		return ""
	}
	return d.ac.RemoteAddr().String()
}

// Disconnects counts the connection losses the driver noticed.
func Disconnects(c *bus.Conn) int64 { return c.Driver().(*conn).disconnects.Load() }

// WrapErr exposes wrapErr to the error mapping test.
var WrapErr = wrapErr

// The header names the driver carries in properties.
const (
	HeaderContentType   = headerContentType
	HeaderTimeout       = headerTimeout
	HeaderCaller        = headerCaller
	HeaderInstance      = headerInstance
	HeaderCESpecVersion = headerCESpecVersion
	HeaderCEID          = headerCEID
	HeaderCEType        = headerCEType
	HeaderCESource      = headerCESource
	HeaderCETime        = headerCETime
)
