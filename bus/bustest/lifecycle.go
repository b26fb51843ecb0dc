package bustest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

func testTooLarge(t *testing.T, e *env) {
	c := e.open()
	limit := c.MaxMessageSize()
	if limit <= 0 {
		t.Fatalf("MaxMessageSize() = %d: a driver must report its broker's limit", limit)
	}
	big := make([]byte, limit+1)
	topic, subject, live := e.subject("big.topic"), e.subject("big.rpc"), e.subject("big.live")

	deliveries := newRecord[got]()
	e.subscribe(c, topic, e.group("g"), e.opts(), recordTo(deliveries, 0))
	requests := newRecord[*bus.Message]()
	e.serve(c, subject, "", func(_ context.Context, req *bus.Message) *bus.Message {
		requests.add(req)
		return &bus.Message{Body: req.Body}
	})
	sends := newRecord[*bus.Message]()
	e.listen(c, live, sends)

	wantCode(t, "Publish over the limit", c.Publish(e.ctx, &bus.Message{Subject: topic, Body: big}), bus.InvalidArgument)
	_, err := c.Request(e.ctx, &bus.Message{Subject: subject, Body: big})
	wantCode(t, "Request over the limit", err, bus.InvalidArgument)
	wantCode(t, "Send over the limit", c.Send(e.ctx, &bus.Message{Subject: live, Body: big}), bus.InvalidArgument)

	// Headers count too: half the limit in a header and half in the body.
	half := limit/2 + 1
	hugeHeader := bus.Header{"X-Huge": strings.Repeat("h", half)}
	wantCode(t, "Publish with headers and body over the limit together",
		c.Publish(e.ctx, &bus.Message{Subject: topic, Header: hugeHeader, Body: big[:half]}), bus.InvalidArgument)

	normal := []byte("normal")
	e.publish(c, &bus.Message{Subject: topic, Body: normal})
	if _, err := c.Request(e.ctx, &bus.Message{Subject: subject, Body: normal}); err != nil {
		t.Fatalf("Request: %v", err)
	}
	if err := c.Send(e.ctx, &bus.Message{Subject: live, Body: normal}); err != nil {
		t.Fatalf("Send: %v", err)
	}

	for _, d := range deliveries.waitN(t, "normal durable message", 1) {
		if d.Key != "normal" {
			t.Errorf("subscriber got a %d-byte message that Publish rejected", len(d.Key))
		}
	}
	for _, m := range requests.all() {
		if string(m.Body) != "normal" {
			t.Errorf("handler got a %d-byte request that Request rejected", len(m.Body))
		}
	}
	for _, m := range sends.waitN(t, "normal live message", 1) {
		if string(m.Body) != "normal" {
			t.Errorf("listener got a %d-byte message that Send rejected", len(m.Body))
		}
	}
}

func testLargeMessage(t *testing.T, e *env) {
	pub, sub := e.open(), e.open()
	size := min(pub.MaxMessageSize()/2, 1<<20)
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i * 7)
	}
	topic, subject := e.subject("large.topic"), e.subject("large.rpc")
	rec := newRecord[got]()
	e.subscribe(sub, topic, e.group("g"), e.opts(), recordTo(rec, 0))
	e.serve(sub, subject, "", func(_ context.Context, req *bus.Message) *bus.Message {
		return &bus.Message{Body: req.Body}
	})

	e.publish(pub, &bus.Message{Subject: topic, Body: body})
	if d := rec.waitN(t, "the large message", 1)[0]; d.Key != string(body) {
		t.Errorf("a %d-byte message arrived as %d bytes or altered", size, len(d.Key))
	}
	rep, err := pub.Request(e.ctx, &bus.Message{Subject: subject, Body: body})
	if err != nil {
		t.Fatalf("Request with a %d-byte body: %v", size, err)
	}
	if !bytes.Equal(rep.Body, body) {
		t.Errorf("a %d-byte request echoed back as %d bytes or altered", size, len(rep.Body))
	}
}

func testInvalid(t *testing.T, e *env) {
	c := e.open()
	good := e.subject("good")
	noop := func(context.Context, *bus.Delivery) error { return nil }
	reply := func(context.Context, *bus.Message) *bus.Message { return nil }
	drop := func(*bus.Message) {}
	ok := func(s *bus.Subscription, err error) error {
		if s != nil {
			e.stop(s)
		}
		return err
	}

	badSubjects := []string{"", " ", "a b", "a\tb", "a..b", ".a", "a.", "a.*", "a.>", "a.b*", ">"}
	for _, s := range badSubjects {
		m := func() *bus.Message { return &bus.Message{Subject: s, Body: []byte("x")} }
		wantCode(t, fmt.Sprintf("Publish(%q)", s), c.Publish(e.ctx, m()), bus.InvalidArgument)
		_, err := c.Request(e.ctx, m())
		wantCode(t, fmt.Sprintf("Request(%q)", s), err, bus.InvalidArgument)
		wantCode(t, fmt.Sprintf("Send(%q)", s), c.Send(e.ctx, m()), bus.InvalidArgument)
		wantCode(t, fmt.Sprintf("Subscribe(%q)", s), ok(c.Subscribe(e.ctx, s, e.group("g"), noop, e.opts())), bus.InvalidArgument)
	}
	badPatterns := []string{"", " ", "a b", "a..b", ".a", "a.", "a.b*", "a.>.b", "a.b>", "a.*b"}
	for _, p := range badPatterns {
		wantCode(t, fmt.Sprintf("Serve(%q)", p), ok(c.Serve(e.ctx, p, "", reply)), bus.InvalidArgument)
		wantCode(t, fmt.Sprintf("Listen(%q)", p), ok(c.Listen(e.ctx, p, drop)), bus.InvalidArgument)
		wantCode(t, fmt.Sprintf("Tail(%q)", p), ok(c.Tail(e.ctx, p, drop)), bus.InvalidArgument)
	}
	for _, g := range []string{"", " ", "a b", "a.b", "a*", "a>", "tab\tbed"} {
		wantCode(t, fmt.Sprintf("Subscribe with group %q", g), ok(c.Subscribe(e.ctx, good, g, noop, e.opts())), bus.InvalidArgument)
	}
	for _, q := range []string{" ", "a b", "a*", "a>"} {
		wantCode(t, fmt.Sprintf("Serve with queue %q", q), ok(c.Serve(e.ctx, good, q, reply)), bus.InvalidArgument)
	}
}

func testSubscriptionContext(t *testing.T, e *env) {
	c, other := e.open(), e.open()
	topic, rpc, live := e.subject("ctx.topic"), e.subject("ctx.rpc"), e.subject("ctx.live")
	ctx, cancel := context.WithCancel(e.ctx)
	deliveries := newRecord[got]()
	if _, err := c.Subscribe(ctx, topic, e.group("g"), recordTo(deliveries, 0), e.opts()); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if _, err := c.Serve(ctx, rpc, "", func(_ context.Context, req *bus.Message) *bus.Message { return req }); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	sends, tails := newRecord[*bus.Message](), newRecord[*bus.Message]()
	if _, err := c.Listen(ctx, live, func(m *bus.Message) { sends.add(m) }); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	if _, err := c.Tail(ctx, topic, func(m *bus.Message) { tails.add(m) }); err != nil {
		t.Fatalf("Tail: %v", err)
	}
	cancel()

	e.publish(other, &bus.Message{Subject: topic, Body: []byte("x")})
	if _, err := other.Request(e.ctx, &bus.Message{Subject: rpc}); err != nil {
		t.Errorf("Request after Serve's context was canceled: %v", err)
	}
	if err := other.Send(e.ctx, &bus.Message{Subject: live}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	deliveries.waitN(t, "delivery after Subscribe's context was canceled", 1)
	sends.waitN(t, "message after Listen's context was canceled", 1)
	tails.waitN(t, "message after Tail's context was canceled", 1)
}

func testClosedConn(t *testing.T, e *env) {
	c := e.open()
	topic, subject := e.subject("closed.topic"), e.subject("closed.rpc")
	sub := e.serve(c, subject, "", func(_ context.Context, req *bus.Message) *bus.Message { return req })
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	noop := func(context.Context, *bus.Delivery) error { return nil }
	reply := func(context.Context, *bus.Message) *bus.Message { return nil }
	drop := func(*bus.Message) {}
	m := func() *bus.Message { return &bus.Message{Subject: subject, Body: []byte("x")} }
	calls := []struct {
		name string
		call func() error
	}{
		{"Publish", func() error { return c.Publish(e.ctx, &bus.Message{Subject: topic}) }},
		{"Request", func() error { _, err := c.Request(e.ctx, m()); return err }},
		{"Send", func() error { return c.Send(e.ctx, m()) }},
		{"Serve", func() error { return stopIfAny(c.Serve(e.ctx, subject, "", reply)) }},
		{"Listen", func() error { return stopIfAny(c.Listen(e.ctx, subject, drop)) }},
		{"Tail", func() error { return stopIfAny(c.Tail(e.ctx, topic, drop)) }},
		{"Subscribe", func() error { return stopIfAny(c.Subscribe(e.ctx, topic, e.group("g"), noop, e.opts())) }},
		{"Stop of a subscription made before Close", func() error {
			if err := sub.Stop(e.ctx); err != nil {
				t.Errorf("Stop after Close: %v", err)
			}
			return bus.ErrClosed
		}},
		{"Close again", func() error {
			if err := c.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			return bus.ErrClosed
		}},
	}
	for _, tc := range calls {
		err := noPanic(t, tc.name, tc.call)
		if err == nil {
			t.Errorf("%s on a closed Conn succeeded", tc.name)
			continue
		}
		wantCode(t, tc.name+" on a closed Conn", err, bus.Unavailable)
	}
}

// stopIfAny stops a subscription that should not have been made.
func stopIfAny(s *bus.Subscription, err error) error {
	if s != nil {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		_ = s.Stop(ctx)
	}
	return err
}

// noPanic runs call, turning a panic into a test error.
func noPanic(t *testing.T, name string, call func() error) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panicked: %v", name, r)
			err = bus.ErrClosed
		}
	}()
	return call()
}

func testShutdown(t *testing.T, e *env) {
	server, client := e.open(), e.open()
	subject := e.subject("inflight")
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	e.serve(server, subject, "", func(ctx context.Context, req *bus.Message) *bus.Message {
		close(started)
		if !e.block(release) {
			return nil
		}
		finished.Store(ctx.Err() == nil)
		return &bus.Message{Body: []byte("done")}
	})

	type result struct {
		rep *bus.Message
		err error
	}
	replied := make(chan result, 1)
	go func() {
		rep, err := client.Request(e.ctx, &bus.Message{Subject: subject})
		replied <- result{rep, err}
	}()
	e.await(started, "the request at the handler")

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		shut <- server.Shutdown(ctx)
	}()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (err=%v) while a Serve handler was still running", err)
	case <-time.After(grace):
	}
	close(release)
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Shutdown did not return within %v of its handler finishing", waitTimeout)
	}
	if !finished.Load() {
		t.Errorf("the in-flight handler did not complete (its context was canceled) before Shutdown returned")
	}
	select {
	case r := <-replied:
		if r.err != nil {
			t.Errorf("the in-flight request failed: %v; a graceful shutdown sends the reply", r.err)
		} else if string(r.rep.Body) != "done" {
			t.Errorf("the in-flight request got %q, want %q", r.rep.Body, "done")
		}
	case <-time.After(waitTimeout):
		t.Fatalf("the in-flight request did not return")
	}
	if _, err := server.Serve(e.ctx, subject, "", nil); bus.ErrorCode(err) != bus.Unavailable {
		t.Errorf("Serve after Shutdown: %v, want Unavailable", err)
	}
}
