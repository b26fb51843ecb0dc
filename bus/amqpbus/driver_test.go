package amqpbus_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/amqpbus"
	"github.com/switchboard-dev/switchboard/bus/bustest"
	"github.com/switchboard-dev/switchboard/bus/driver"
	"github.com/switchboard-dev/switchboard/internal/amqptest"
)

// wait bounds every wait on a signal in these tests; it is never a speed
// requirement.
const wait = 15 * time.Second

func ctxWait(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// env is an isolated namespace on the test broker: its URL, and a cleanup
// that deletes what the connections opened through it declared.
type env struct {
	t      *testing.T
	base   string
	url    string
	prefix string
	mu     sync.Mutex
	conns  []*bus.Conn
}

// newEnv makes a namespace; extra query parameters are added to its URL
// (an empty value removes one).
func newEnv(t *testing.T, extra ...string) *env {
	t.Helper()
	base := amqptest.URL(t)
	u, prefix := isolated(t, base)
	if len(extra) > 0 {
		pu, _ := url.Parse(u)
		q := pu.Query()
		for i := 0; i+1 < len(extra); i += 2 {
			if extra[i+1] == "" {
				q.Del(extra[i])
			} else {
				q.Set(extra[i], extra[i+1])
			}
		}
		pu.RawQuery = q.Encode()
		u = pu.String()
	}
	e := &env{t: t, base: base, url: u, prefix: prefix}
	t.Cleanup(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, c := range e.conns {
			_ = c.Close()
		}
		cleanup(t, base, prefix, e.conns...)
	})
	return e
}

// open opens a connection through rawURL (the env's URL when empty).
func (e *env) open(rawURL ...string) *bus.Conn {
	e.t.Helper()
	u := e.url
	if len(rawURL) > 0 {
		u = rawURL[0]
	}
	c, err := bus.Open(ctxWait(e.t), u)
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.mu.Lock()
	e.conns = append(e.conns, c)
	e.mu.Unlock()
	return c
}

// plain opens a channel with the plain AMQP client, closed after the test.
func (e *env) plain() *amqp.Channel {
	e.t.Helper()
	ac, err := amqp.Dial(e.base)
	if err != nil {
		e.t.Fatalf("plain dial: %v", err)
	}
	e.t.Cleanup(func() { _ = ac.Close() })
	ch, err := ac.Channel()
	if err != nil {
		e.t.Fatalf("plain channel: %v", err)
	}
	return ch
}

func TestConformanceClassicQueues(t *testing.T) {
	e := newEnv(t, "queue_type", "classic")
	h := &harness{url: e.url}
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		e.mu.Lock()
		e.conns = append(e.conns, h.conns...)
		e.mu.Unlock()
	})
	bustest.Run(t, h)
}

func TestOpenUnreachableFailsFastNamingTheURL(t *testing.T) {
	start := time.Now()
	_, err := bus.Open(context.Background(), "amqp://bob:secret@127.0.0.1:1/?connect_timeout=2s")
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Open took %v to fail", d)
	}
	if bus.ErrorCode(err) != bus.Unavailable || !errors.Is(err, driver.ErrDisconnected) {
		t.Errorf("error %v: want Unavailable wrapping driver.ErrDisconnected", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "127.0.0.1:1") || strings.Contains(msg, "secret") {
		t.Errorf("error %q should name the URL without its password", msg)
	}
}

func TestOpenWithWrongCredentialsSaysSo(t *testing.T) {
	u, _ := url.Parse(amqptest.URL(t))
	u.User = url.UserPassword("nobody", "wrong")
	_, err := bus.Open(ctxWait(t), u.String())
	if err == nil || !strings.Contains(err.Error(), "403") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("Open with wrong credentials: %v, want the broker's refusal without the password", err)
	}
}

func TestNoRespondersOnceTheLastServerOfAQueueStops(t *testing.T) {
	e := newEnv(t)
	server, client := e.open(), e.open()
	echo := func(_ context.Context, req *bus.Message) *bus.Message { return &bus.Message{Body: req.Body} }
	a, err := server.Serve(ctxWait(t), "svc.echo", "echo", echo)
	if err != nil {
		t.Fatal(err)
	}
	b, err := server.Serve(ctxWait(t), "svc.echo", "echo", echo)
	if err != nil {
		t.Fatal(err)
	}
	request := func() error {
		_, err := client.Request(ctxWait(t), &bus.Message{Subject: "svc.echo", Body: []byte("x")})
		return err
	}
	if err := request(); err != nil {
		t.Fatalf("Request with two servers: %v", err)
	}
	if err := a.Stop(ctxWait(t)); err != nil {
		t.Fatal(err)
	}
	if err := request(); err != nil {
		t.Fatalf("Request with one server left: %v", err)
	}
	if err := b.Stop(ctxWait(t)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = request()
	if !bus.IsNoResponders(err) || bus.ErrorCode(err) != bus.Unavailable {
		t.Errorf("Request after the last server stopped: %v, want no responders", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("no responders took %v: the shared queue must go with its last server", d)
	}
}

// TestConcurrentRequestsAreNotSerialized holds every handler until all the
// requests are in handlers at once: requests that waited for each other
// would never get there.
func TestConcurrentRequestsAreNotSerialized(t *testing.T) {
	const n = 32
	e := newEnv(t)
	server, client := e.open(), e.open()
	var in atomic.Int64
	all := make(chan struct{})
	if _, err := server.Serve(ctxWait(t), "svc.slow", "slow", func(_ context.Context, req *bus.Message) *bus.Message {
		if in.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
		case <-time.After(wait):
			return &bus.Message{Body: []byte("not all requests arrived together")}
		}
		return &bus.Message{Body: req.Body}
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			body := fmt.Sprint(i)
			rep, err := client.Request(ctxWait(t), &bus.Message{Subject: "svc.slow", Body: []byte(body)})
			switch {
			case err != nil:
				errs <- err
			case string(rep.Body) != body:
				errs <- fmt.Errorf("request %s got reply %q", body, rep.Body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d concurrent requests held at the server together took %v", n, time.Since(start))
}

func TestHeadersAMQPCannotCarryAreRejected(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	ctx := ctxWait(t)
	for _, h := range []bus.Header{
		{"Sb-Amqp-Attempt": "3"},
		{"sb-amqp-anything": "x"},
		{"x-death": "x"},
		{"X-Delivery-Count": "1"},
		{"x-first-death-reason": "x"},
		{"": "x"},
		{strings.Repeat("k", 256): "x"},
	} {
		for _, call := range []struct {
			name string
			err  error
		}{
			{"Send", c.Send(ctx, &bus.Message{Subject: "x", Header: h})},
			{"Publish", c.Publish(ctx, &bus.Message{Subject: "x", Header: h})},
			{"Request", func() error { _, err := c.Request(ctx, &bus.Message{Subject: "x", Header: h}); return err }()},
		} {
			if bus.ErrorCode(call.err) != bus.InvalidArgument {
				t.Errorf("%s with header %.20q: %v, want InvalidArgument", call.name, slices.Collect(maps.Keys(h)), call.err)
			}
		}
	}
	if err := c.Publish(ctx, &bus.Message{Subject: "x", ID: strings.Repeat("i", 256)}); bus.ErrorCode(err) != bus.InvalidArgument {
		t.Errorf("Publish with a 256-byte ID: %v, want InvalidArgument", err)
	}
	if err := c.Publish(ctx, &bus.Message{Subject: strings.Repeat("s", 256)}); bus.ErrorCode(err) != bus.InvalidArgument {
		t.Errorf("Publish to a 256-byte topic: %v, want InvalidArgument", err)
	}
	if _, err := c.Listen(ctx, "a.#", func(*bus.Message) {}); bus.ErrorCode(err) != bus.InvalidArgument {
		t.Errorf("Listen on a pattern with a '#' token: %v, want InvalidArgument", err)
	}
	// Every header a caller may set still round-trips, x- names included.
	h := bus.Header{"x-custom": "1", "X-Death-Star": "no", "Sb-Amqp": "not reserved", "Content-Type": "text/plain"}
	got := make(chan *bus.Message, 1)
	if _, err := c.Listen(ctx, "hdr", func(m *bus.Message) { got <- m }); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, &bus.Message{Subject: "hdr", Header: h}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if !maps.Equal(m.Header, h) {
			t.Errorf("headers %v, want %v", m.Header, h)
		}
	case <-time.After(wait):
		t.Fatal("no message")
	}
}

// TestDelayedRedeliveryWaitsAndKeepsTheMessageIntact checks the retry
// path: the delay is honoured, the attempt counts up, and the redelivered
// message has exactly the headers and id it was published with.
func TestDelayedRedeliveryWaitsAndKeepsTheMessageIntact(t *testing.T) {
	for _, qt := range []string{"quorum", "classic"} {
		t.Run(qt, func(t *testing.T) {
			e := newEnv(t, "queue_type", qt)
			c := e.open()
			const delay = 300 * time.Millisecond
			type seen struct {
				at  time.Time
				got *bus.Delivery
			}
			ch := make(chan seen, 10)
			if _, err := c.Subscribe(ctxWait(t), "orders", "billing", func(_ context.Context, d *bus.Delivery) error {
				ch <- seen{time.Now(), d}
				if d.Attempt < 3 {
					return errors.New("not yet")
				}
				return nil
			}, bus.SubscribeOptions{Backoff: func(int) time.Duration { return delay }}); err != nil {
				t.Fatal(err)
			}
			h := bus.Header{"Content-Type": "application/json", "ce-id": "42", "x-trace": "t", "Empty": ""}
			if err := c.Publish(ctxWait(t), &bus.Message{Subject: "orders", Header: h.Clone(), Body: []byte(`{"n":1}`), ID: "order-1"}); err != nil {
				t.Fatal(err)
			}
			var last time.Time
			for want := 1; want <= 3; want++ {
				select {
				case s := <-ch:
					if s.got.Attempt != want {
						t.Fatalf("delivery %d has Attempt %d", want, s.got.Attempt)
					}
					// The broker's TTL counts whole milliseconds on its own
					// clock, from when the copy reached its queue: it may
					// fire a millisecond or so short of ours. A redelivery
					// without the delay comes within a few milliseconds.
					if want > 1 && s.at.Sub(last) < delay*9/10 {
						t.Errorf("attempt %d came %v after the failure, before the %v delay", want, s.at.Sub(last), delay)
					}
					if !maps.Equal(s.got.Header, h) || s.got.ID != "order-1" || s.got.Subject != "orders" || string(s.got.Body) != `{"n":1}` {
						t.Errorf("attempt %d: %s %q id %q headers %v; want the message as published (headers %v)", want, s.got.Subject, s.got.Body, s.got.ID, s.got.Header, h)
					}
					last = s.at
				case <-time.After(wait):
					t.Fatalf("attempt %d never came", want)
				}
			}
		})
	}
}

// TestLostRetryQueueRequeuesInsteadOfLosing deletes the retry queue under
// a group: the delayed copy is returned, so the original is requeued (and
// comes again at once, not after its hour-long delay).
func TestLostRetryQueueRequeuesInsteadOfLosing(t *testing.T) {
	e := newEnv(t, "queue_expires", "")
	c := e.open()
	plain := e.plain()
	attempts := make(chan int, 10)
	if _, err := c.Subscribe(ctxWait(t), "jobs", "workers", func(_ context.Context, d *bus.Delivery) error {
		attempts <- d.Attempt
		switch d.Attempt {
		case 1:
			return errors.New("first failure: delayed briefly")
		case 2:
			if _, err := plain.QueueDelete(e.prefix+".retry.workers.jobs", false, false, false); err != nil {
				t.Errorf("delete the retry queue: %v", err)
			}
			return errors.New("second failure: delayed for an hour, but the retry queue is gone")
		}
		return nil
	}, bus.SubscribeOptions{Backoff: func(a int) time.Duration {
		if a == 1 {
			return 10 * time.Millisecond
		}
		return time.Hour
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctxWait(t), &bus.Message{Subject: "jobs", Body: []byte("job")}); err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= 3; want++ {
		select {
		case got := <-attempts:
			if got != want {
				t.Fatalf("got attempt %d, want %d", got, want)
			}
		case <-time.After(wait):
			t.Fatalf("attempt %d never came: the message was lost with its retry queue", want)
		}
	}
}

// TestDeadLettersAreKeptForTheGroup dead-letters a message while nobody
// reads the dead-letter topic, then reads it as the group.
func TestDeadLettersAreKeptForTheGroup(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	sub, err := c.Subscribe(ctxWait(t), "payments", "ledger", func(context.Context, *bus.Delivery) error {
		return errors.New("poison")
	}, bus.SubscribeOptions{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctxWait(t), &bus.Message{Subject: "payments", Header: bus.Header{"Kind": "poison"}, Body: []byte("p"), ID: "p-1"}); err != nil {
		t.Fatal(err)
	}
	dlq := bus.DeadLetterTopic("ledger", "payments")
	// Wait for it to be dead-lettered: the dead letter reaches a tail too.
	tailed := make(chan *bus.Message, 1)
	tail, err := c.Tail(ctxWait(t), "_dlq.>", func(m *bus.Message) { tailed <- m })
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctxWait(t), &bus.Message{Subject: "payments", Body: []byte("p2")}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-tailed:
		if m.Subject != dlq {
			t.Errorf("tail saw %q, want %q", m.Subject, dlq)
		}
	case <-time.After(wait):
		t.Fatal("nothing was dead-lettered")
	}
	_ = tail.Stop(ctxWait(t))
	_ = sub.Stop(ctxWait(t))

	got := make(chan *bus.Delivery, 4)
	if _, err := c.Subscribe(ctxWait(t), dlq, "ledger", func(_ context.Context, d *bus.Delivery) error {
		got <- d
		return nil
	}, bus.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if string(d.Body) != "p" && string(d.Body) != "p2" || d.Header.Get("Kind") == "" && string(d.Body) == "p" ||
			d.Header.Get(bus.HeaderDeadTopic) != "payments" || d.Header.Get(bus.HeaderDeadGroup) != "ledger" ||
			!strings.Contains(d.Header.Get(bus.HeaderDeadReason), "poison") {
			t.Errorf("dead letter %q with headers %v", d.Body, d.Header)
		}
	case <-time.After(wait):
		t.Fatal("the group found no dead letter on its dead-letter topic")
	}
}

func TestPublishToATopicWithoutGroupsSucceeds(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	if err := c.Publish(ctxWait(t), &bus.Message{Subject: "nobody.listens", Body: []byte("x")}); err != nil {
		t.Errorf("Publish to a topic without groups: %v, want success (no group is owed it)", err)
	}
	// The connection is unharmed: later publishes and their confirms work.
	got := make(chan string, 1)
	if _, err := c.Subscribe(ctxWait(t), "somebody.listens", "g", func(_ context.Context, d *bus.Delivery) error {
		got <- string(d.Body)
		return nil
	}, bus.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := c.Publish(ctxWait(t), &bus.Message{Subject: "nobody.listens", Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Publish(ctxWait(t), &bus.Message{Subject: "somebody.listens", Body: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if b != "y" {
			t.Errorf("got %q", b)
		}
	case <-time.After(wait):
		t.Fatal("no delivery")
	}
}

func TestErrorsWrapDriverSentinelsAndKeepTheCause(t *testing.T) {
	for _, tc := range []struct {
		in   error
		want error
	}{
		{&amqp.Error{Code: amqp.NoRoute, Reason: "NO_ROUTE"}, driver.ErrNoResponders},
		{&amqp.Error{Code: amqp.ContentTooLarge}, driver.ErrTooLarge},
		{&amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - message size 10 is larger than configured max size 5"}, driver.ErrTooLarge},
		{&amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - inequivalent arg 'x-queue-type'"}, driver.ErrInvalid},
		{&amqp.Error{Code: amqp.ConnectionForced}, driver.ErrDisconnected},
		{amqp.ErrClosed, driver.ErrDisconnected},
		{context.DeadlineExceeded, driver.ErrTimeout},
		{context.Canceled, driver.ErrCanceled},
	} {
		err := amqpbus.WrapErr("op", "subj", tc.in)
		if !errors.Is(err, tc.want) || !errors.Is(err, tc.in) {
			t.Errorf("wrapErr(%v) = %v: want it to wrap %v and keep the cause", tc.in, err, tc.want)
		}
	}
	if amqpbus.WrapErr("op", "s", nil) != nil {
		t.Error("wrapErr(nil) != nil")
	}
}

// TestSendReachesServersAndListenersSeeRequests checks that requests and
// sends share one subject space, as on NATS: the SDK sends discovery pings
// to what instances serve.
func TestSendReachesServersAndListenersSeeRequests(t *testing.T) {
	e := newEnv(t)
	server, client := e.open(), e.open()
	served := make(chan string, 4)
	for _, queue := range []string{"", "group"} {
		if _, err := server.Serve(ctxWait(t), "sb.disc.ping", queue, func(_ context.Context, req *bus.Message) *bus.Message {
			served <- queue + ":" + string(req.Body)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	heard := make(chan string, 4)
	if _, err := client.Listen(ctxWait(t), "sb.rpc.>", func(m *bus.Message) { heard <- m.Subject }); err != nil {
		t.Fatal(err)
	}
	if err := client.Send(ctxWait(t), &bus.Message{Subject: "sb.disc.ping", Body: []byte("ping")}); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for len(got) < 2 {
		select {
		case s := <-served:
			got[s] = true
		case <-time.After(wait):
			t.Fatalf("the send reached %v, want both servers", got)
		}
	}
	if !got[":ping"] || !got["group:ping"] {
		t.Errorf("the send reached %v, want the server without a queue and the queue group", got)
	}
	if _, err := server.Serve(ctxWait(t), "sb.rpc.svc.*", "svc", func(_ context.Context, req *bus.Message) *bus.Message { return req }); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Request(ctxWait(t), &bus.Message{Subject: "sb.rpc.svc.hello"}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-heard:
		if s != "sb.rpc.svc.hello" {
			t.Errorf("the listener heard %q", s)
		}
	case <-time.After(wait):
		t.Fatal("the listener did not see the request")
	}
}

// TestServersAcknowledgeRequestsOnHandOver: a server acknowledges each
// request when it hands it over (batched with those already waiting), so
// requests held by their handlers do not count against the prefetch, and a
// server that goes idle has acknowledged everything.
func TestServersAcknowledgeRequestsOnHandOver(t *testing.T) {
	const prefetch, n = 4, 12
	e := newEnv(t, "prefetch", fmt.Sprint(prefetch))
	server, client := e.open(), e.open()
	var in atomic.Int64
	all := make(chan struct{})
	if _, err := server.Serve(ctxWait(t), "svc.held", "held", func(_ context.Context, req *bus.Message) *bus.Message {
		if string(req.Body) == "held" {
			if in.Add(1) == n {
				close(all)
			}
			select {
			case <-all:
			case <-time.After(wait):
				return &bus.Message{Body: []byte("not all requests arrived together: held ones count against the prefetch")}
			}
		}
		return &bus.Message{Body: req.Body}
	}); err != nil {
		t.Fatal(err)
	}
	call := func(body string) error {
		rep, err := client.Request(ctxWait(t), &bus.Message{Subject: "svc.held", Body: []byte(body)})
		if err == nil && string(rep.Body) != body {
			err = fmt.Errorf("request %s got reply %q", body, rep.Body)
		}
		return err
	}
	// One at a time: each is acknowledged although none follows it.
	for i := range 3 * prefetch {
		if err := call(fmt.Sprint(i)); err != nil {
			t.Fatalf("sequential request %d: %v", i, err)
		}
	}
	// Three times the prefetch at once, all held by their handlers.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if err := call("held"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestAnIdleServerHasAcknowledgedWhatItHandedOver: a server whose
// connection breaks once its handlers replied must not have its requests
// redelivered to another server of its queue group: it acknowledged them
// on hand-over, though nothing followed them.
func TestAnIdleServerHasAcknowledgedWhatItHandedOver(t *testing.T) {
	e := newEnv(t)
	u, err := url.Parse(e.url)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, u.Host)
	a, b, client := e.open(p.through(t, e.url)), e.open(), e.open()
	echo := func(_ context.Context, req *bus.Message) *bus.Message { return &bus.Message{Body: req.Body} }
	if _, err := a.Serve(ctxWait(t), "svc.once", "once", echo); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := client.Request(ctxWait(t), &bus.Message{Subject: "svc.once", Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	seen := make(chan string, 8)
	if _, err := b.Serve(ctxWait(t), "svc.once", "once", func(ctx context.Context, req *bus.Message) *bus.Message {
		seen <- string(req.Body)
		return echo(ctx, req)
	}); err != nil {
		t.Fatal(err)
	}
	p.cut()
	waitState(t, a, false, "the cut server to notice")
	// The queue gives what it took back from the cut server first.
	if _, err := client.Request(ctxWait(t), &bus.Message{Subject: "svc.once", Body: []byte("after")}); err != nil {
		t.Fatal(err)
	}
	if got := next(t, "request at the other server", seen); got != "after" {
		t.Errorf("the other server got request %q again: the cut server had not acknowledged it", got)
	}
}
