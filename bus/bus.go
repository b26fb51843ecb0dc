// Package bus is Switchboard's portable messaging layer: request/reply with
// deadlines, fire-and-forget sends, and durable publish/subscribe with consumer
// groups, acknowledgement, redelivery with backoff and dead letters.
//
// It moves opaque messages with string headers and knows nothing of services
// (that is package wire and the SDK above it). A broker is reached through a
// driver chosen by URL scheme: import a driver package for its side effect and
// call Open:
//
//	import _ "github.com/switchboard-dev/switchboard/bus/natsbus"
//	conn, err := bus.Open(ctx, "nats://127.0.0.1:4222")
//
// Everything a caller relies on — validation, default deadlines, error codes,
// handler concurrency, ack-after-success, retry backoff and dead-lettering —
// is done here, once, for every driver. The conformance suite in bus/bustest
// holds every driver to the same behaviour.
package bus

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/switchboard-dev/switchboard/bus/driver"
)

var (
	contextDeadline = context.DeadlineExceeded
	contextCanceled = context.Canceled
)

// Message is a message on the bus: a subject, string headers and an opaque
// body. For durable messages Subject is the topic.
type Message struct {
	Subject string
	Header  Header
	Body    []byte
	// ID is an optional idempotency key for durable publishes: brokers that
	// de-duplicate drop a second publish of the same ID within their window.
	ID string
}

// Header holds message headers. Keys are case sensitive and round-trip
// exactly through every driver. It is the drivers' type, so that a Message
// goes down to a driver and comes back without being copied.
type Header = driver.Header

// OpenFunc opens a driver connection for a parsed URL. Drivers must reject
// query parameters they do not know.
type OpenFunc func(ctx context.Context, u *url.URL) (driver.Conn, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]OpenFunc{}
)

// Register makes a driver available under a URL scheme. It is called from a
// driver package's init and panics if the scheme is taken.
func Register(scheme string, open OpenFunc) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[scheme]; dup {
		panic("bus: Register called twice for scheme " + scheme)
	}
	registry[scheme] = open
}

// Schemes lists the registered URL schemes, sorted.
func Schemes() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	s := make([]string, 0, len(registry))
	for k := range registry {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// Open connects to the broker named by rawURL using the driver registered for
// its scheme. An unparseable URL or unknown scheme yields an InvalidArgument
// error naming the URL and the accepted schemes.
func Open(ctx context.Context, rawURL string) (*Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" {
		return nil, Errorf(InvalidArgument, "bus: invalid URL %q: want scheme://host[:port] with scheme one of %s", rawURL, strings.Join(Schemes(), ", "))
	}
	registryMu.RLock()
	open := registry[u.Scheme]
	registryMu.RUnlock()
	if open == nil {
		return nil, Errorf(InvalidArgument, "bus: unknown scheme %q in URL %q: accepted schemes are %s", u.Scheme, redact(u), strings.Join(Schemes(), ", "))
	}
	d, err := open(ctx, u)
	if err != nil {
		return nil, wrapDriver("open", redact(u), err)
	}
	c := NewConn(d)
	c.url = redact(u)
	return c, nil
}

func redact(u *url.URL) string { return u.Redacted() }

// Conn is a connection to the bus. It is safe for concurrent use. Close it
// (or Shutdown it) to stop its subscriptions and wait for their handlers.
type Conn struct {
	drv driver.Conn
	url string

	mu     sync.Mutex
	closed bool
	subs   map[*Subscription]struct{}
}

// NewConn wraps a driver connection. Drivers' own constructors use it; most
// callers use Open.
func NewConn(d driver.Conn) *Conn {
	return &Conn{drv: d, subs: map[*Subscription]struct{}{}}
}

// URL returns the URL the connection was opened with, password redacted.
func (c *Conn) URL() string { return c.url }

// Driver returns the underlying driver connection, for drivers' tests and
// benchmarks.
func (c *Conn) Driver() driver.Conn { return c.drv }

// MaxMessageSize is the largest message, headers included, the broker takes.
func (c *Conn) MaxMessageSize() int { return c.drv.MaxMessageSize() }

func (c *Conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// checkSize rejects a message the broker would refuse, before anything is sent.
func (c *Conn) checkSize(op string, m *Message) error {
	n := len(m.Body) + len(m.Subject)
	for k, v := range m.Header {
		n += len(k) + len(v) + 4
	}
	if max := c.drv.MaxMessageSize(); max > 0 && n > max {
		return &Error{Code: InvalidArgument,
			Message: fmt.Sprintf("bus: %s %q: message of %d bytes exceeds the broker's limit of %d bytes", op, m.Subject, n, max),
			Details: map[string]string{"size": fmt.Sprint(n), "limit": fmt.Sprint(max)},
			Err:     driver.ErrTooLarge}
	}
	return nil
}

// toDriver and fromDriver convert without copying: a Message and a
// driver.Message are the same struct (drivers read what they are given
// and hand over what they return).
func toDriver(m *Message) *driver.Message { return (*driver.Message)(m) }

// fromDriver gives a message without headers an empty Header.
func fromDriver(m *driver.Message) *Message {
	if m.Header == nil {
		m.Header = Header{}
	}
	return (*Message)(m)
}

// Request sends msg and waits for one reply. Without a deadline on ctx,
// DefaultRequestTimeout applies. When nothing serves the subject it fails
// promptly with Unavailable (IsNoResponders reports true), not after the
// deadline.
func (c *Conn) Request(ctx context.Context, msg *Message) (*Message, error) {
	if err := validateSubject(msg.Subject, false); err != nil {
		return nil, err
	}
	if err := c.checkSize("request", msg); err != nil {
		return nil, err
	}
	if c.isClosed() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, ctxError("request", msg.Subject, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	rep, err := c.drv.Request(ctx, toDriver(msg))
	if err != nil {
		return nil, wrapDriver("request", msg.Subject, err)
	}
	return fromDriver(rep), nil
}

func ctxError(op, subject string, err error) error {
	code := Canceled
	if errors.Is(err, context.DeadlineExceeded) {
		code = DeadlineExceeded
	}
	return &Error{Code: code, Message: fmt.Sprintf("bus: %s %q: %v", op, subject, err), Err: err}
}

// Send publishes msg without persistence to whoever listens now.
func (c *Conn) Send(ctx context.Context, msg *Message) error {
	if err := validateSubject(msg.Subject, false); err != nil {
		return err
	}
	if err := c.checkSize("send", msg); err != nil {
		return err
	}
	if c.isClosed() {
		return ErrClosed
	}
	return wrapDriver("send", msg.Subject, c.drv.Send(ctx, toDriver(msg)))
}

// Publish stores msg durably on topic msg.Subject. It returns nil only after
// the broker confirmed it stored the message; otherwise it returns an error
// and the caller must assume the message was not published.
func (c *Conn) Publish(ctx context.Context, msg *Message) error {
	if err := validateSubject(msg.Subject, false); err != nil {
		return err
	}
	if err := c.checkSize("publish", msg); err != nil {
		return err
	}
	if c.isClosed() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return ctxError("publish", msg.Subject, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	return wrapDriver("publish", msg.Subject, c.drv.Publish(ctx, toDriver(msg)))
}

// Shutdown stops every subscription made on c (no new deliveries), waits for
// running handlers until ctx ends, then closes the connection.
func (c *Conn) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	subs := make([]*Subscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	var errs []error
	for _, s := range subs {
		if err := s.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.drv.Close(); err != nil {
		errs = append(errs, wrapDriver("close", c.url, err))
	}
	return errors.Join(errs...)
}

// Close is Shutdown with DefaultShutdownTimeout for running handlers.
func (c *Conn) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultShutdownTimeout)
	defer cancel()
	return c.Shutdown(ctx)
}

func (c *Conn) track(s *Subscription) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.subs[s] = struct{}{}
	return nil
}

func (c *Conn) untrack(s *Subscription) {
	c.mu.Lock()
	delete(c.subs, s)
	c.mu.Unlock()
}

// validateSubject checks a subject or topic: dot-separated non-empty tokens
// without whitespace; wildcards ('*' token, '>' last token) only in patterns.
// It scans bytes rather than splitting: it runs on every message.
func validateSubject(s string, pattern bool) error {
	if s == "" {
		return Errorf(InvalidArgument, "bus: empty subject")
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			switch s[i] {
			case ' ', '\t', '\r', '\n':
				return Errorf(InvalidArgument, "bus: invalid subject %q: tokens must be non-empty and contain no whitespace", s)
			}
			continue
		}
		tok := s[start:i]
		start = i + 1
		if tok == "" {
			return Errorf(InvalidArgument, "bus: invalid subject %q: tokens must be non-empty and contain no whitespace", s)
		}
		if !strings.ContainsAny(tok, "*>") {
			continue
		}
		if !pattern {
			return Errorf(InvalidArgument, "bus: invalid subject %q: wildcards are only allowed in patterns", s)
		}
		if tok != "*" && !(tok == ">" && i == len(s)) {
			return Errorf(InvalidArgument, "bus: invalid pattern %q: '*' must be a whole token and '>' the last token", s)
		}
	}
	return nil
}

// ValidName reports whether s is usable as a single subject token such as a
// consumer group, service or endpoint name: letters, digits, '_' and '-'.
func ValidName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	return !slices.ContainsFunc([]rune(s), func(r rune) bool {
		return !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})
}
