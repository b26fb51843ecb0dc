// Package natsbus is the NATS driver of package bus: core NATS carries
// request/reply and fire-and-forget messages, JetStream carries durable
// topics. Import it for its side effect and open a URL:
//
//	import _ "github.com/switchboard-dev/switchboard/bus/natsbus"
//
//	conn, err := bus.Open(ctx, "nats://127.0.0.1:4222")
//
// # URLs
//
// Two schemes are registered.
//
//	nats://[user:pass@]host[:port][,host[:port]...][?param=value&...]
//
// connects to an existing NATS server or cluster with JetStream enabled.
// A token is given as the user alone (nats://token@host). The port defaults
// to 4222. An unreachable server fails the open within a few seconds with an
// error naming the URL; once connected, the connection reconnects forever
// with backoff, and calls made while it is down fail at once with an
// Unavailable error instead of waiting.
//
//	embedded:///abs/data/dir[?param=value&...]
//	embedded:relative/data/dir[?...]
//	embedded:[?...]
//
// starts a NATS server with JetStream inside the process (see Server), its
// data under the directory; without a directory the data go to a temporary
// directory removed when the connection closes. Opens of the same directory
// in one process share one server, which shuts down gracefully (JetStream
// flushed) when the last of them closes. Other processes reach it over TCP on
// 127.0.0.1 at the port it listens on.
//
// Parameters of both schemes:
//
//	name=NAME       connection name shown by the server (default "switchboard")
//	stream=NAME     JetStream stream holding durable topics (default SWITCHBOARD)
//	prefix=SUBJECT  subject prefix of durable topics (default sb.evt)
//	max_age=DUR     how long durable messages are kept, a Go duration (default 168h)
//	replicas=N      stream replicas in a cluster, 1 to 5 (default 1)
//
// Parameters of embedded only:
//
//	port=N          TCP port on 127.0.0.1; 0, the default, picks a free port
//	                (never 4222 unless asked for)
//	sync=always     fsync every JetStream write; or sync=DUR, a Go duration
//	                between fsyncs (default nats-server's, 2m)
//	inprocess=BOOL  true (default): this process connects without TCP;
//	                false: over TCP on 127.0.0.1
//
// Unknown or repeated parameters are rejected with an InvalidArgument error
// naming them.
//
// # Without a URL
//
// StartServer runs the embedded server under the caller's control, as
// `switchboard dev` does: other processes open its ClientURL, Server.Open
// connects this process without TCP, and embedded: URLs of the same data
// directory share it. NewConn makes a bus connection over a NATS connection
// the caller already has.
//
// # Mapping to NATS
//
// This is the protocol a plain NATS client speaks to interoperate.
//
// Request, Serve, Send and Listen use the bus subject as the NATS subject,
// unchanged. Request is core NATS request/reply (the reply goes to the
// request's reply subject); with nothing subscribed it fails at once with
// no responders. Serve with a non-empty queue is a queue subscription in that
// queue group, so members share requests.
//
// Headers: each bus header is one NATS header of the same name (case kept)
// and value. Names starting with "Nats-" are reserved for NATS and refused;
// values must be single-line without leading or trailing blanks (NATS would
// alter them) and are refused otherwise, so every accepted header round-trips
// exactly. Message.ID travels as the Nats-Msg-Id header.
//
// A durable topic T is the NATS subject sb.evt.T (prefix "." T), stored in
// the stream SWITCHBOARD, which the driver creates on open when it is
// missing: subjects sb.evt.>, file storage, limits retention, MaxAge 7 days,
// duplicate window 2 minutes, 1 replica. On an existing stream the driver
// only adds its subjects and applies max_age and replicas when the URL gives
// them, keeping everything else an operator set. Dead letters are ordinary
// topics (_dlq.GROUP.TOPIC) in the same stream.
//
// Publish is a JetStream publish that returns after the stream's PubAck;
// Message.ID (Nats-Msg-Id) makes the stream drop a repeat within the
// duplicate window.
//
// Subscribe(topic, group) is a durable pull consumer on the stream named
// GROUP-TOPIC-HASH (TOPIC with characters other than letters, digits, '_'
// and '-' replaced by '_'; HASH the first 8 hex digits of FNV-1a over group,
// a NUL byte and topic), so members of a group share it and a restart resumes
// it. It filters on the topic's subject, acks explicitly, waits AckWait and
// never gives up by itself (MaxDeliver -1: package bus dead-letters). A new
// group starts with the messages published after its first subscription
// (DeliverPolicy new), like a new queue on other brokers. Prefetch is per
// member, not per group (MaxAckPending is unlimited): each member keeps one
// pull request at the server for no more messages than it has room for
// (Prefetch minus the deliveries it holds unacknowledged), with an idle
// heartbeat so that a request lost to a server restart is replaced. Attempt
// is the delivery count from the JetStream metadata; Ack is a double ack
// (+ACK confirmed by the server), Nak with a delay is -NAK {"delay": ns}.
// Stopping a member gives the messages it had received but not handed over
// back to the group at once.
//
// Tail(pattern) is a core subscription on sb.evt.PATTERN: it sees messages as
// they are published (a repeat the stream drops as a duplicate included),
// without acknowledging anything, and reports the topic without the prefix.
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/driver"
)

// Scheme is the URL scheme of an external NATS server or cluster.
const Scheme = "nats"

// EmbeddedScheme is the URL scheme of a NATS server run inside the process.
const EmbeddedScheme = "embedded"

func init() {
	bus.Register(Scheme, openURL)
	bus.Register(EmbeddedScheme, openEmbeddedURL)
}

// Defaults of Options and of the stream the driver creates.
const (
	DefaultStream        = "SWITCHBOARD"
	DefaultSubjectPrefix = "sb.evt"
	DefaultMaxAge        = 7 * 24 * time.Hour
	// DuplicateWindow is how long the stream remembers message IDs to drop
	// repeated publishes.
	DuplicateWindow = 2 * time.Minute
	// DefaultName is the connection name shown by the server.
	DefaultName = "switchboard"
)

// Options say where durable topics live. The zero value uses the defaults.
type Options struct {
	// Stream names the JetStream stream holding durable topics
	// (DefaultStream). Letters, digits, '_' and '-'.
	Stream string
	// SubjectPrefix is put, with a dot, before a topic to form its NATS
	// subject (DefaultSubjectPrefix). Streams on one server must not share
	// a prefix.
	SubjectPrefix string
	// MaxAge bounds how long durable messages are kept. Zero means
	// DefaultMaxAge for a new stream and no change to an existing one.
	MaxAge time.Duration
	// Replicas is the stream's replica count in a cluster (1 to 5). Zero
	// means 1 for a new stream and no change to an existing one.
	Replicas int
}

func (o *Options) validate() error {
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = DefaultSubjectPrefix
	}
	if !bus.ValidName(o.Stream) {
		return fmt.Errorf("natsbus: invalid stream name %q: use letters, digits, '_' and '-': %w", o.Stream, driver.ErrInvalid)
	}
	for _, t := range strings.Split(o.SubjectPrefix, ".") {
		if t == "" || strings.ContainsAny(t, "*> \t\r\n") {
			return fmt.Errorf("natsbus: invalid subject prefix %q: want dot-separated tokens without wildcards or blanks: %w", o.SubjectPrefix, driver.ErrInvalid)
		}
	}
	if o.MaxAge < 0 {
		return fmt.Errorf("natsbus: invalid max age %s: %w", o.MaxAge, driver.ErrInvalid)
	}
	if o.Replicas < 0 || o.Replicas > 5 {
		return fmt.Errorf("natsbus: invalid replica count %d: want 1 to 5: %w", o.Replicas, driver.ErrInvalid)
	}
	return nil
}

// NewConn returns a bus connection over nc, an established NATS connection
// the caller keeps owning: closing the bus connection stops its
// subscriptions but leaves nc open. It creates or updates the stream of
// durable topics first (see the package doc), so JetStream must be enabled.
func NewConn(ctx context.Context, nc *nats.Conn, opts Options) (*bus.Conn, error) {
	c, err := newConn(ctx, nc, opts, false)
	if err != nil {
		return nil, err
	}
	return bus.NewConn(c), nil
}

// conn implements driver.Conn over one NATS connection.
type conn struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	opts   Options
	prefix string // SubjectPrefix + "."
	ownNC  bool   // Close closes nc
	// release, if set, is called once on Close after nc is closed (it
	// lets go of an embedded server).
	release func()

	mu     sync.Mutex
	closed bool
	subs   map[driver.Subscription]struct{}
}

var _ driver.Conn = (*conn)(nil)

func newConn(ctx context.Context, nc *nats.Conn, opts Options, own bool) (*conn, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsbus: jetstream: %w", err)
	}
	c := &conn{nc: nc, js: js, opts: opts, prefix: opts.SubjectPrefix + ".", ownNC: own,
		subs: map[driver.Subscription]struct{}{}}
	if err := c.ensureStream(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// setupTimeout bounds a setup call (stream or consumer creation, flush)
// whose context has no deadline.
const setupTimeout = 10 * time.Second

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, setupTimeout)
}

// ensureStream creates the stream of durable topics, or brings an existing
// one in line with the options the caller gave explicitly.
func (c *conn) ensureStream(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	subjects := c.prefix + ">"
	for range 2 { // a second round only after losing a creation race
		s, err := c.js.Stream(ctx, c.opts.Stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			cfg := jetstream.StreamConfig{
				Name:        c.opts.Stream,
				Description: "Switchboard durable topics",
				Subjects:    []string{subjects},
				Retention:   jetstream.LimitsPolicy,
				Storage:     jetstream.FileStorage,
				Discard:     jetstream.DiscardOld,
				MaxAge:      orDefault(c.opts.MaxAge, DefaultMaxAge),
				Duplicates:  DuplicateWindow,
				Replicas:    orDefault(c.opts.Replicas, 1),
			}
			_, err = c.js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				continue
			}
			if err != nil {
				return c.streamError("create", err)
			}
			return nil
		}
		if err != nil {
			return c.streamError("look up", err)
		}
		cfg := s.CachedInfo().Config
		if cfg.Retention != jetstream.LimitsPolicy {
			return fmt.Errorf("natsbus: stream %s has %s retention; durable topics need limits retention: %w", c.opts.Stream, cfg.Retention, driver.ErrInvalid)
		}
		changed := false
		if !slices.Contains(cfg.Subjects, subjects) {
			cfg.Subjects = append(cfg.Subjects, subjects)
			changed = true
		}
		if c.opts.MaxAge > 0 && cfg.MaxAge != c.opts.MaxAge {
			cfg.MaxAge, changed = c.opts.MaxAge, true
		}
		if c.opts.Replicas > 0 && cfg.Replicas != c.opts.Replicas {
			cfg.Replicas, changed = c.opts.Replicas, true
		}
		if !changed {
			return nil
		}
		if _, err := c.js.UpdateStream(ctx, cfg); err != nil {
			return c.streamError("update", err)
		}
		return nil
	}
	return c.streamError("create", jetstream.ErrStreamNameAlreadyInUse)
}

func (c *conn) streamError(op string, err error) error {
	wrapped := wrapErr(op+" stream "+c.opts.Stream+" for", c.prefix+">", err)
	switch {
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount),
		errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w; is JetStream enabled on the server? (nats-server -js)", wrapped)
	case strings.Contains(err.Error(), "overlap"):
		return fmt.Errorf("%w; another stream stores these subjects: choose another prefix= or stream=", wrapped)
	}
	return wrapped
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// ready fails fast when a call cannot go through now: the connection is
// closed or down (nats.go would otherwise buffer and wait), or ctx is done.
func (c *conn) ready(ctx context.Context, op, subject string) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed || c.nc.IsClosed() {
		return fmt.Errorf("natsbus: %s %s: %w", op, subject, driver.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return wrapErr(op, subject, err)
	}
	if !c.nc.IsConnected() {
		return fmt.Errorf("natsbus: %s %s: %w (status %s)", op, subject, driver.ErrDisconnected, c.nc.Status())
	}
	return nil
}

func (c *conn) track(s driver.Subscription) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return driver.ErrClosed
	}
	c.subs[s] = struct{}{}
	return nil
}

func (c *conn) untrack(s driver.Subscription) {
	c.mu.Lock()
	delete(c.subs, s)
	c.mu.Unlock()
}

// flush makes sure the server processed what was sent, so that a
// subscription is in place before the call that made it returns.
func (c *conn) flush(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	return c.nc.FlushWithContext(ctx)
}

// Request implements driver.Conn with core NATS request/reply.
func (c *conn) Request(ctx context.Context, msg *driver.Message) (*driver.Message, error) {
	if err := c.ready(ctx, "request", msg.Subject); err != nil {
		return nil, err
	}
	out, err := newOutgoing(msg.Subject, msg)
	if err != nil {
		return nil, err
	}
	rep, err := c.nc.RequestMsgWithContext(ctx, &out.msg)
	out.release()
	if err != nil {
		return nil, wrapErr("request", msg.Subject, err)
	}
	return fromNATS(rep.Subject, rep), nil
}

// Send implements driver.Conn with a core NATS publish.
func (c *conn) Send(ctx context.Context, msg *driver.Message) error {
	if err := c.ready(ctx, "send", msg.Subject); err != nil {
		return err
	}
	out, err := newOutgoing(msg.Subject, msg)
	if err != nil {
		return err
	}
	err = c.nc.PublishMsg(&out.msg)
	out.release()
	return wrapErr("send", msg.Subject, err)
}

// Serve implements driver.Conn with a (queue) subscription.
func (c *conn) Serve(ctx context.Context, subject, queue string, fn func(*driver.Message, driver.Respond)) (driver.Subscription, error) {
	return c.subscribeCore(ctx, "serve", subject, queue, func(m *nats.Msg) {
		fn(fromNATS(m.Subject, m), func(ctx context.Context, rep *driver.Message) error {
			if m.Reply == "" {
				return fmt.Errorf("natsbus: respond to %s: the request has no reply subject: %w", m.Subject, driver.ErrInvalid)
			}
			if err := c.ready(ctx, "respond", m.Subject); err != nil {
				return err
			}
			out, err := newOutgoing(m.Reply, rep)
			if err != nil {
				return err
			}
			err = c.nc.PublishMsg(&out.msg)
			out.release()
			return wrapErr("respond", m.Subject, err)
		})
	})
}

// Listen implements driver.Conn with a subscription.
func (c *conn) Listen(ctx context.Context, pattern string, fn func(*driver.Message)) (driver.Subscription, error) {
	return c.subscribeCore(ctx, "listen", pattern, "", func(m *nats.Msg) {
		fn(fromNATS(m.Subject, m))
	})
}

// Tail implements driver.Conn with a core subscription on the topics'
// subjects: JetStream publishes reach core subscribers too.
func (c *conn) Tail(ctx context.Context, pattern string, fn func(*driver.Message)) (driver.Subscription, error) {
	return c.subscribeCore(ctx, "tail", c.prefix+pattern, "", func(m *nats.Msg) {
		fn(fromNATS(strings.TrimPrefix(m.Subject, c.prefix), m))
	})
}

// Publish implements driver.Conn with a JetStream publish awaiting the
// PubAck.
func (c *conn) Publish(ctx context.Context, msg *driver.Message) error {
	subject := c.prefix + msg.Subject
	if err := c.ready(ctx, "publish", subject); err != nil {
		return err
	}
	out, err := newOutgoing(subject, msg)
	if err != nil {
		return err
	}
	defer out.release()
	if _, err := c.js.PublishMsg(ctx, &out.msg, noRetries); err != nil {
		return wrapErr("publish", subject, err)
	}
	return nil
}

// noRetries is the option of every durable publish: no retries, package bus
// decides what to do with a failure.
var noRetries = jetstream.WithRetryAttempts(0)

// MaxMessageSize implements driver.Conn: the server's max_payload.
func (c *conn) MaxMessageSize() int { return int(c.nc.MaxPayload()) }

// Close implements driver.Conn. It stops the subscriptions made on c
// without waiting for buffered messages, then closes the NATS connection if
// c owns it.
func (c *conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	subs := make([]driver.Subscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	now, cancel := context.WithCancel(context.Background())
	cancel() // Stop with a done context does not wait for drains.
	for _, s := range subs {
		_ = s.Stop(now)
	}
	if c.ownNC {
		// Close flushes what was buffered, so sends and acks made just
		// before are not dropped.
		c.nc.Close()
	}
	if c.release != nil {
		c.release()
	}
	return nil
}

// gate serialises a subscription's callbacks with its Stop: once close has
// returned no callback runs, and close waits for the one running.
type gate struct {
	mu     sync.Mutex
	closed bool
}

// run calls f unless the gate is closed and reports whether it did.
func (g *gate) run(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	f()
	return true
}

func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// coreSub is a core NATS subscription (Serve, Listen, Tail).
type coreSub struct {
	c      *conn
	sub    *nats.Subscription
	done   chan struct{} // closed when nats.go stopped delivering
	gate   gate
	once   sync.Once
	closed sync.Once
}

func (c *conn) subscribeCore(ctx context.Context, op, subject, queue string, cb func(*nats.Msg)) (driver.Subscription, error) {
	if err := c.ready(ctx, op, subject); err != nil {
		return nil, err
	}
	s := &coreSub{c: c, done: make(chan struct{})}
	handler := func(m *nats.Msg) { s.gate.run(func() { cb(m) }) }
	var err error
	if queue != "" {
		s.sub, err = c.nc.QueueSubscribe(subject, queue, handler)
	} else {
		s.sub, err = c.nc.Subscribe(subject, handler)
	}
	if err != nil {
		return nil, wrapErr(op, subject, err)
	}
	s.sub.SetClosedHandler(func(string) { s.closed.Do(func() { close(s.done) }) })
	// Once the server has the subscription, a message sent after this call
	// returns is delivered.
	if err := c.flush(ctx); err != nil {
		_ = s.sub.Unsubscribe()
		return nil, wrapErr(op, subject, err)
	}
	if err := c.track(s); err != nil {
		_ = s.sub.Unsubscribe()
		return nil, fmt.Errorf("natsbus: %s %s: %w", op, subject, err)
	}
	return s, nil
}

// Stop drains the subscription: messages already received are still
// delivered until ctx ends. No callback runs after Stop returns.
func (s *coreSub) Stop(ctx context.Context) error {
	s.once.Do(func() {
		if !s.c.nc.IsConnected() {
			// Nothing more can arrive, and draining would wait for a flush.
			_ = s.sub.Unsubscribe()
		} else if err := s.sub.Drain(); err == nil {
			select {
			case <-s.done:
			case <-ctx.Done():
				_ = s.sub.Unsubscribe()
			}
		} else {
			_ = s.sub.Unsubscribe()
		}
		s.gate.close()
		s.c.untrack(s)
	})
	return nil
}
