package bustest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

func testRequestReply(t *testing.T, e *env) {
	server, client := e.open(), e.open()
	subject := e.subject("echo")
	reqHeader := testHeader()
	replyHeader := bus.Header{"Reply-Header": "yes", "x-mixed-CASE": "V", "Content-Type": "text/plain; charset=utf-8"}
	body := []byte("hello\x00\xff\xfe world")

	seen := newRecord[*bus.Message]()
	e.serve(server, subject, "", func(_ context.Context, req *bus.Message) *bus.Message {
		seen.add(req)
		return &bus.Message{Header: replyHeader.Clone(), Body: append([]byte("re: "), req.Body...)}
	})

	rep, err := client.Request(e.ctx, &bus.Message{Subject: subject, Header: reqHeader.Clone(), Body: body})
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	reqs := seen.all()
	if len(reqs) != 1 {
		t.Fatalf("handler called %d times, want 1", len(reqs))
	}
	req := reqs[0]
	if req.Subject != subject {
		t.Errorf("handler saw subject %q, want %q", req.Subject, subject)
	}
	if d := headerDiff(reqHeader, req.Header); d != "" {
		t.Errorf("request headers did not round-trip: %s", d)
	}
	if !bytes.Equal(req.Body, body) {
		t.Errorf("handler saw body %q, want %q", req.Body, body)
	}
	if d := headerDiff(replyHeader, rep.Header); d != "" {
		t.Errorf("reply headers did not round-trip: %s", d)
	}
	if want := append([]byte("re: "), body...); !bytes.Equal(rep.Body, want) {
		t.Errorf("reply body %q, want %q", rep.Body, want)
	}
}

// A driver may reuse what it builds to send a message (NATS's pools its
// header maps): a message must arrive with its own headers only, none left
// from the one before, and a message without headers with none.
func testHeadersDoNotCarryOver(t *testing.T, e *env) {
	server, client := e.open(), e.open()
	subject, live := e.subject("hdrs"), e.subject("hdrs-live")
	sequence := []bus.Header{
		{"A": "1", "B": "2", "C": "3", "D": "4", "E": "5"},
		{"F": "6"},
		nil,
		{"A": "other"},
		{},
	}
	// The request's "N" header says which reply headers to answer with.
	e.serve(server, subject, "", func(_ context.Context, req *bus.Message) *bus.Message {
		var n int
		fmt.Sscan(req.Header.Get("N"), &n)
		return &bus.Message{Header: sequence[n].Clone(), Body: []byte("ok")}
	})
	heard := make(chan *bus.Message, len(sequence))
	lsub, err := server.Listen(e.ctx, live, func(m *bus.Message) { heard <- m })
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer lsub.Stop(e.ctx)
	seen := newRecord[*bus.Message]()
	e.serve(server, subject+"-echo", "", func(_ context.Context, req *bus.Message) *bus.Message {
		seen.add(req)
		return &bus.Message{Body: []byte("ok")}
	})
	for n, h := range sequence {
		rep, err := client.Request(e.ctx, &bus.Message{Subject: subject, Header: bus.Header{"N": fmt.Sprint(n)}, Body: []byte("x")})
		if err != nil {
			t.Fatalf("request %d: %v", n, err)
		}
		if d := headerDiff(h, rep.Header); d != "" {
			t.Errorf("reply %d: %s", n, d)
		}
		if _, err := client.Request(e.ctx, &bus.Message{Subject: subject + "-echo", Header: h.Clone(), Body: []byte("x")}); err != nil {
			t.Fatalf("echo request %d: %v", n, err)
		}
		if err := client.Send(e.ctx, &bus.Message{Subject: live, Header: h.Clone(), Body: []byte("x")}); err != nil {
			t.Fatalf("send %d: %v", n, err)
		}
		select {
		case m := <-heard:
			if d := headerDiff(h, m.Header); d != "" {
				t.Errorf("send %d: %s", n, d)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("send %d was not heard within %s", n, waitTimeout)
		}
	}
	for n, req := range seen.all() {
		if d := headerDiff(sequence[n], req.Header); d != "" {
			t.Errorf("request %d: %s", n, d)
		}
	}
}

func testNoResponders(t *testing.T, e *env) {
	c := e.open()
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	_, err := c.Request(ctx, &bus.Message{Subject: e.subject("nobody.home"), Body: []byte("hello?")})
	if ctx.Err() != nil {
		t.Fatalf("Request returned only when its deadline passed (%v); want a prompt no-responders error", err)
	}
	wantCode(t, "Request with no responder", err, bus.Unavailable)
	if !bus.IsNoResponders(err) {
		t.Errorf("IsNoResponders(%v) = false, want true", err)
	}
}

func testNoReply(t *testing.T, e *env) {
	server, client := e.open(), e.open()
	subject := e.subject("silent")
	seen := newRecord[*bus.Message]()
	e.serve(server, subject, "", func(_ context.Context, req *bus.Message) *bus.Message {
		seen.add(req)
		return nil // no reply
	})

	const timeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	_, err := client.Request(ctx, &bus.Message{Subject: subject})
	if early := time.Until(deadline); ctx.Err() == nil && early > 50*time.Millisecond {
		t.Errorf("Request gave up %v before its deadline", early)
	}
	wantCode(t, "Request to a handler that never replies", err, bus.DeadlineExceeded)
	if bus.IsNoResponders(err) {
		t.Errorf("IsNoResponders(%v) = true for a subject that is served", err)
	}
	seen.waitN(t, "request at the handler", 1)
}

func testRequestCanceled(t *testing.T, e *env) {
	server, client := e.open(), e.open()
	subject := e.subject("slow")
	seen := newRecord[*bus.Message]()
	e.serve(server, subject, "", func(_ context.Context, req *bus.Message) *bus.Message {
		seen.add(req)
		return nil
	})

	ctx, cancel := context.WithTimeout(e.ctx, waitTimeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := client.Request(ctx, &bus.Message{Subject: subject})
		errc <- err
	}()
	seen.waitN(t, "request at the handler", 1)
	cancel()
	select {
	case err := <-errc:
		wantCode(t, "Request canceled while waiting", err, bus.Canceled)
	case <-time.After(waitTimeout):
		t.Fatalf("Request did not return within %v of its context being canceled", waitTimeout)
	}
}

func testCanceledContext(t *testing.T, e *env) {
	c := e.open()
	topic, subject := e.subject("canceled.topic"), e.subject("canceled.rpc")
	deliveries := newRecord[got]()
	e.subscribe(c, topic, e.group("g"), e.opts(), recordTo(deliveries, 0))
	requests := newRecord[*bus.Message]()
	e.serve(c, subject, "", func(_ context.Context, req *bus.Message) *bus.Message {
		requests.add(req)
		return &bus.Message{Body: req.Body}
	})

	canceled, cancel := context.WithCancel(e.ctx)
	cancel()
	err := c.Publish(canceled, &bus.Message{Subject: topic, Body: []byte("canceled")})
	wantCode(t, "Publish with a canceled context", err, bus.Canceled)
	_, err = c.Request(canceled, &bus.Message{Subject: subject, Body: []byte("canceled")})
	wantCode(t, "Request with a canceled context", err, bus.Canceled)

	// Messages sent after the canceled ones arrive after them (one
	// connection, one subject), so once these are in nothing else is coming.
	e.publish(c, &bus.Message{Subject: topic, Body: []byte("live")})
	if _, err := c.Request(e.ctx, &bus.Message{Subject: subject, Body: []byte("live")}); err != nil {
		t.Fatalf("Request: %v", err)
	}
	for _, d := range deliveries.waitN(t, "live message", 1) {
		if d.Key != "live" {
			t.Errorf("subscriber got %q, published with a canceled context", d.Key)
		}
	}
	for _, r := range requests.all() {
		if string(r.Body) != "live" {
			t.Errorf("handler got %q, requested with a canceled context", r.Body)
		}
	}
}

func testServeQueue(t *testing.T, e *env) {
	servers := []*bus.Conn{e.open(), e.open()}
	client := e.open()
	subject, queue := e.subject("work"), e.group("workers")
	type served struct {
		server int
		id     string
	}
	rec := newRecord[served]()
	for i, s := range servers {
		e.serve(s, subject, queue, func(_ context.Context, req *bus.Message) *bus.Message {
			rec.add(served{i, string(req.Body)})
			return &bus.Message{Body: req.Body}
		})
	}

	const n = 200
	ids := make(chan string)
	failures := newRecord[string]()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for id := range ids {
				rep, err := client.Request(e.ctx, &bus.Message{Subject: subject, Body: []byte(id)})
				switch {
				case err != nil:
					failures.add(fmt.Sprintf("%s: %v", id, err))
				case string(rep.Body) != id:
					failures.add(fmt.Sprintf("%s: got the reply to %q", id, rep.Body))
				}
			}
		})
	}
	for i := range n {
		ids <- fmt.Sprint("req-", i)
	}
	close(ids)
	wg.Wait()
	if f := failures.all(); len(f) > 0 {
		t.Fatalf("%d of %d requests failed, first: %v", len(f), n, first(f, 5))
	}

	perID := map[string]int{}
	perServer := make([]int, len(servers))
	for _, s := range rec.all() {
		perID[s.id]++
		perServer[s.server]++
	}
	t.Logf("requests handled per server: %v", perServer)
	for i := range n {
		if id := fmt.Sprint("req-", i); perID[id] != 1 {
			t.Errorf("request %s handled %d times, want exactly once", id, perID[id])
		}
	}
	for i, c := range perServer {
		if c == 0 {
			t.Errorf("server %d of the queue handled none of %d requests", i, n)
		}
	}
}

func testServeNoQueue(t *testing.T, e *env) {
	servers := []*bus.Conn{e.open(), e.open()}
	client := e.open()
	subject := e.subject("broadcast")
	rec := newRecord[int]()
	for i, s := range servers {
		e.serve(s, subject, "", func(_ context.Context, req *bus.Message) *bus.Message {
			rec.add(i)
			return &bus.Message{Body: req.Body}
		})
	}
	if _, err := client.Request(e.ctx, &bus.Message{Subject: subject, Body: []byte("hi")}); err != nil {
		t.Fatalf("Request: %v", err)
	}
	rec.waitFor(t, "the request at both servers", func(got []int) bool {
		return slices.Contains(got, 0) && slices.Contains(got, 1)
	})
}

func testServeWildcard(t *testing.T, e *env) {
	server, client := e.open(), e.open()
	reply := func(_ context.Context, req *bus.Message) *bus.Message {
		return &bus.Message{Body: []byte(req.Subject)}
	}
	e.serve(server, e.subject("svc.*"), "", reply)
	e.serve(server, e.subject("rest.>"), "", reply)
	for _, subject := range []string{e.subject("svc.alpha"), e.subject("rest.a.b.c")} {
		rep, err := client.Request(e.ctx, &bus.Message{Subject: subject})
		if err != nil {
			t.Errorf("Request(%q): %v", subject, err)
			continue
		}
		if string(rep.Body) != subject {
			t.Errorf("handler saw subject %q, want %q", rep.Body, subject)
		}
	}
}

func testListenFanOut(t *testing.T, e *env) {
	sender := e.open()
	subject := e.subject("news")
	listeners := []*record[*bus.Message]{newRecord[*bus.Message](), newRecord[*bus.Message]()}
	for _, rec := range listeners {
		e.listen(e.open(), subject, rec)
	}
	const n = 50
	header := testHeader()
	for i := range n {
		h := header.Clone()
		h.Set("Seq", fmt.Sprint(i))
		if err := sender.Send(e.ctx, &bus.Message{Subject: subject, Header: h, Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	for l, rec := range listeners {
		msgs := rec.waitN(t, fmt.Sprintf("messages at listener %d", l), n)
		for i, m := range msgs {
			if string(m.Body) != fmt.Sprint(i) {
				t.Errorf("listener %d: message %d is %q: sends from one connection must arrive in order", l, i, m.Body)
				break
			}
		}
		if m := msgs[0]; m.Subject != subject {
			t.Errorf("listener %d saw subject %q, want %q", l, m.Subject, subject)
		}
		want := header.Clone()
		want.Set("Seq", "0")
		if d := headerDiff(want, msgs[0].Header); d != "" {
			t.Errorf("listener %d: headers did not round-trip: %s", l, d)
		}
	}
}

func testListenWildcards(t *testing.T, e *env) {
	sender, listener := e.open(), e.open()
	p := e.subject("w")
	star, rest := newRecord[*bus.Message](), newRecord[*bus.Message]()
	e.listen(listener, p+".*.x", star)
	e.listen(listener, p+".>", rest)

	sends := []string{
		p + ".a.x",      // both
		p + ".a.b.x",    // '>' only: '*' is one token
		p + ".x",        // '>' only
		p,               // neither: '>' needs at least one token
		p + "y.a.x",     // neither: a different token
		p + ".a.x.more", // '>' only
		p + ".end.x",    // both; sent last, so when it is in, all are in
	}
	for _, s := range sends {
		if err := sender.Send(e.ctx, &bus.Message{Subject: s, Body: []byte(s)}); err != nil {
			t.Fatalf("Send(%q): %v", s, err)
		}
	}
	check := func(name string, rec *record[*bus.Message], want []string) {
		t.Helper()
		msgs := rec.waitFor(t, "the last send at the "+name+" listener", func(ms []*bus.Message) bool {
			return slices.ContainsFunc(ms, func(m *bus.Message) bool { return m.Subject == p+".end.x" })
		})
		var subjects []string
		for _, m := range msgs {
			subjects = append(subjects, m.Subject)
		}
		if !slices.Equal(subjects, want) {
			t.Errorf("%s listener got %q, want %q", name, subjects, want)
		}
	}
	check(p+".*.x", star, []string{p + ".a.x", p + ".end.x"})
	check(p+".>", rest, []string{p + ".a.x", p + ".a.b.x", p + ".x", p + ".a.x.more", p + ".end.x"})
}
