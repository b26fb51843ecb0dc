package natsbus

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/driver"
)

// wait bounds every wait on a signal in these tests; it is never a speed
// requirement.
const wait = 15 * time.Second

func testServer(t *testing.T, opts ServerOptions) *Server {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	srv, err := StartServer(opts)
	if err != nil {
		t.Fatalf("StartServer: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func testOpen(t *testing.T, rawURL string) *bus.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := bus.Open(ctx, rawURL)
	if err != nil {
		t.Fatalf("Open(%q): %v", rawURL, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func natsConn(c *bus.Conn) *nats.Conn { return c.Driver().(*conn).nc }

func ctxWait(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// collect returns a handler that sends each delivery's body to a channel.
func collect() (bus.Handler, chan string) {
	ch := make(chan string, 100)
	return func(_ context.Context, d *bus.Delivery) error { ch <- string(d.Body); return nil }, ch
}

func receive(t *testing.T, ch <-chan string, want ...string) {
	t.Helper()
	got := map[string]bool{}
	timeout := time.After(wait)
	for len(got) < len(want) {
		select {
		case b := <-ch:
			got[b] = true
		case <-timeout:
			t.Fatalf("got %v after %v, want %v", got, wait, want)
		}
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("missing %q; got %v", w, got)
		}
	}
}

func TestOpenUnreachableFailsFastNamingTheURL(t *testing.T) {
	start := time.Now()
	_, err := bus.Open(context.Background(), "nats://bob:secret@127.0.0.1:1")
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Open took %v to fail", d)
	}
	if bus.ErrorCode(err) != bus.Unavailable || !errors.Is(err, driver.ErrDisconnected) {
		t.Errorf("error %v: want Unavailable wrapping driver.ErrDisconnected", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "127.0.0.1:1") || strings.Contains(msg, "secret") {
		t.Errorf("error %q should name the URL without its password", msg)
	}
}

func TestOpenWithoutJetStreamSaysSo(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(wait) {
		t.Fatal("server not ready")
	}
	_, err = bus.Open(ctxWait(t), ns.ClientURL())
	if err == nil || !strings.Contains(err.Error(), "JetStream") {
		t.Errorf("Open on a server without JetStream: %v, want an error that mentions JetStream", err)
	}
}

func TestHeadersNATSCannotCarryAreRejected(t *testing.T) {
	srv := testServer(t, ServerOptions{})
	c := testOpen(t, "embedded://"+srv.DataDir())
	ctx := ctxWait(t)
	for _, h := range []bus.Header{
		{"Nats-Msg-Id": "x"},
		{"nats-expected-stream": "x"},
		{"Bad Key": "x"},
		{"Bad:Key": "x"},
		{"": "x"},
		{"Multi": "line\nvalue"},
		{"Lead": " blank"},
		{"Trail": "blank\t"},
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
				t.Errorf("%s with header %q: %v, want InvalidArgument", call.name, h, call.err)
			}
		}
	}
	if err := c.Publish(ctx, &bus.Message{Subject: "x", ID: "two\nlines"}); bus.ErrorCode(err) != bus.InvalidArgument {
		t.Errorf("Publish with a multi-line ID: %v, want InvalidArgument", err)
	}
}

func TestConsumerNameIsStableAndValid(t *testing.T) {
	a := ConsumerName("billing", "orders.created")
	if a != ConsumerName("billing", "orders.created") {
		t.Error("ConsumerName is not deterministic")
	}
	if !strings.HasPrefix(a, "billing-orders_created-") {
		t.Errorf("ConsumerName = %q, want a readable prefix", a)
	}
	seen := map[string]string{}
	long := strings.Repeat("very.long.topic.", 40)
	for _, gt := range [][2]string{{"billing", "orders.created"}, {"billing", "orders_created"}, {"billing-orders", "created"},
		{"g", long + "a"}, {"g", long + "b"}, {"g", "_dlq.billing.orders"}} {
		n := ConsumerName(gt[0], gt[1])
		if prev, dup := seen[n]; dup {
			t.Errorf("%v and %s share consumer name %q", gt, prev, n)
		}
		seen[n] = fmt.Sprint(gt)
		valid := strings.Trim(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
		if len(n) > 255 || !valid {
			t.Errorf("ConsumerName%v = %q: want at most 255 letters, digits, '_' and '-'", gt, n)
		}
	}
}

// TestDurableDataSurvivesServerRestart publishes to a group, restarts the
// embedded server on the same data directory and consumes.
func TestDurableDataSurvivesServerRestart(t *testing.T) {
	dir := t.TempDir()
	h, got := collect()
	srv := testServer(t, ServerOptions{DataDir: dir, SyncAlways: true})
	c, err := srv.Open(ctxWait(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe(ctxWait(t), "orders", "billing", h, bus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Stop(ctxWait(t)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c.Publish(ctxWait(t), &bus.Message{Subject: "orders", Body: []byte(fmt.Sprint("order-", i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()

	// The URL form on the same directory starts a new server on it.
	c = testOpen(t, "embedded://"+dir)
	if _, err := c.Subscribe(ctxWait(t), "orders", "billing", h, bus.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	receive(t, got, "order-0", "order-1", "order-2")
}

// TestBrokerLossIsSurvived stops the server under a connection: calls fail
// at once with Unavailable; after a restart on the same port the connection
// recovers and its subscriptions resume.
func TestBrokerLossIsSurvived(t *testing.T) {
	dir := t.TempDir()
	srv := testServer(t, ServerOptions{DataDir: dir})
	port := srv.Port()
	c := testOpen(t, srv.ClientURL())
	nc := natsConn(c)
	h, got := collect()
	if _, err := c.Subscribe(ctxWait(t), "jobs", "workers", h, bus.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Serve(ctxWait(t), "svc.echo", "echo", func(_ context.Context, req *bus.Message) *bus.Message { return req }); err != nil {
		t.Fatal(err)
	}
	down := nc.StatusChanged(nats.RECONNECTING)
	up := nc.StatusChanged(nats.CONNECTED)
	srv.Shutdown()
	select {
	case <-down:
	case <-time.After(wait):
		t.Fatal("the connection did not notice the server stopped")
	}

	ctx := ctxWait(t)
	start := time.Now()
	_, rerr := c.Request(ctx, &bus.Message{Subject: "svc.echo"})
	perr := c.Publish(ctx, &bus.Message{Subject: "jobs", Body: []byte("lost?")})
	serr := c.Send(ctx, &bus.Message{Subject: "svc.echo"})
	if d := time.Since(start); d > time.Second {
		t.Errorf("calls while disconnected took %v; they must fail at once", d)
	}
	for name, err := range map[string]error{"Request": rerr, "Publish": perr, "Send": serr} {
		if bus.ErrorCode(err) != bus.Unavailable || !errors.Is(err, driver.ErrDisconnected) {
			t.Errorf("%s while disconnected: %v, want Unavailable wrapping driver.ErrDisconnected", name, err)
		}
	}

	testServer(t, ServerOptions{DataDir: dir, Port: port})
	select {
	case <-up:
	case <-time.After(wait):
		t.Fatal("the connection did not reconnect")
	}
	rep, err := c.Request(ctxWait(t), &bus.Message{Subject: "svc.echo", Body: []byte("back")})
	if err != nil || string(rep.Body) != "back" {
		t.Fatalf("Request after reconnecting: %v %v", rep, err)
	}
	if err := c.Publish(ctxWait(t), &bus.Message{Subject: "jobs", Body: []byte("after")}); err != nil {
		t.Fatal(err)
	}
	receive(t, got, "after")
}

func TestEmbeddedURLsShareTheServerOfTheirDirectory(t *testing.T) {
	dir := t.TempDir()
	a := testOpen(t, "embedded://"+dir)
	b := testOpen(t, "embedded://"+dir+"?inprocess=false&name=other")
	if ia, ib := natsConn(a).ConnectedServerId(), natsConn(b).ConnectedServerId(); ia != ib {
		t.Errorf("two opens of one directory reached servers %s and %s", ia, ib)
	}
	if addr := natsConn(b).ConnectedAddr(); !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Errorf("inprocess=false connected to %q, want TCP on 127.0.0.1", addr)
	}
	port := natsConn(b).ConnectedUrl()
	if _, err := bus.Open(ctxWait(t), "embedded://"+dir+"?sync=always"); bus.ErrorCode(err) != bus.InvalidArgument {
		t.Errorf("Open with settings that conflict with the running server: %v, want InvalidArgument", err)
	}
	if _, err := StartServer(ServerOptions{DataDir: dir}); !errors.Is(err, driver.ErrInvalid) {
		t.Errorf("StartServer on a directory in use: %v, want an error", err)
	}

	h, got := collect()
	if _, err := b.Subscribe(ctxWait(t), "t", "g", h, bus.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctxWait(t), &bus.Message{Subject: "t", Body: []byte("shared")}); err != nil {
		t.Fatal(err)
	}
	receive(t, got, "shared")

	// The server stops with its last connection; a new open starts another.
	_ = a.Close()
	_ = b.Close()
	c := testOpen(t, "embedded://"+dir)
	if natsConn(c).ConnectedUrl() == port {
		t.Logf("restarted server reuses port %s (allowed)", port)
	}
	if err := c.Publish(ctxWait(t), &bus.Message{Subject: "t", Body: []byte("again")}); err != nil {
		t.Fatal(err)
	}
}

func TestStartServerPorts(t *testing.T) {
	srv := testServer(t, ServerOptions{})
	if srv.Port() == 0 || srv.Port() == 4222 {
		t.Errorf("default port %d: want a free port other than 4222", srv.Port())
	}
	if want := fmt.Sprintf("nats://127.0.0.1:%d", srv.Port()); srv.ClientURL() != want {
		t.Errorf("ClientURL() = %q, want %q", srv.ClientURL(), want)
	}
	_, err := StartServer(ServerOptions{DataDir: t.TempDir(), Port: srv.Port()})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(srv.Port())) {
		t.Errorf("StartServer on a taken port: %v, want an error naming the port", err)
	}

	tmp, err := StartServer(ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := tmp.DataDir()
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("temporary data directory: %v", err)
	}
	tmp.Shutdown()
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Shutdown left the temporary data directory %s: %v", dir, err)
	}
}

// TestStreamIsCreatedAndUpdatedIdempotently checks that opening creates the
// stream with the documented settings and that later opens only change what
// their URL asks for.
func TestStreamIsCreatedAndUpdatedIdempotently(t *testing.T) {
	srv := testServer(t, ServerOptions{})
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	info := func() jetstream.StreamConfig {
		t.Helper()
		s, err := js.Stream(ctxWait(t), DefaultStream)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config
	}

	testOpen(t, srv.ClientURL())
	cfg := info()
	if cfg.MaxAge != DefaultMaxAge || cfg.Duplicates != DuplicateWindow || cfg.Storage != jetstream.FileStorage ||
		cfg.Retention != jetstream.LimitsPolicy || len(cfg.Subjects) != 1 || cfg.Subjects[0] != "sb.evt.>" {
		t.Errorf("created stream %+v, want the documented defaults", cfg)
	}

	// An operator's own settings survive; max_age applies when given.
	cfg.MaxMsgs = 1000
	if _, err := js.UpdateStream(ctxWait(t), cfg); err != nil {
		t.Fatal(err)
	}
	testOpen(t, srv.ClientURL()+"?max_age=1h")
	if cfg = info(); cfg.MaxAge != time.Hour || cfg.MaxMsgs != 1000 {
		t.Errorf("after opening with max_age=1h: MaxAge %v MaxMsgs %d, want 1h and 1000", cfg.MaxAge, cfg.MaxMsgs)
	}
	testOpen(t, srv.ClientURL())
	if cfg = info(); cfg.MaxAge != time.Hour {
		t.Errorf("opening without max_age changed MaxAge to %v", cfg.MaxAge)
	}

	// A second prefix for the same stream is added to its subjects.
	c := testOpen(t, srv.ClientURL()+"?prefix=other.evt")
	if cfg = info(); len(cfg.Subjects) != 2 {
		t.Errorf("subjects %v, want sb.evt.> and other.evt.>", cfg.Subjects)
	}
	if err := c.Publish(ctxWait(t), &bus.Message{Subject: "x"}); err != nil {
		t.Errorf("Publish under the added prefix: %v", err)
	}

	// Another stream cannot take subjects a stream already has.
	_, err = bus.Open(ctxWait(t), srv.ClientURL()+"?stream=OTHER")
	if err == nil || !strings.Contains(err.Error(), "prefix=") {
		t.Errorf("Open of a second stream on the same prefix: %v, want a hint to choose another prefix", err)
	}
}

// TestMultiLineFailureIsDeadLettered checks a handler error with line
// breaks (errors.Join) still reaches the dead-letter topic on NATS, whose
// headers are single-line.
func TestMultiLineFailureIsDeadLettered(t *testing.T) {
	c := testOpen(t, "embedded:")
	dead := make(chan *bus.Delivery, 1)
	if _, err := c.Subscribe(ctxWait(t), bus.DeadLetterTopic("g", "t"), "inspect", func(_ context.Context, d *bus.Delivery) error {
		dead <- d
		return nil
	}, bus.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctxWait(t), "t", "g", func(context.Context, *bus.Delivery) error {
		return errors.Join(errors.New("first"), errors.New("second"))
	}, bus.SubscribeOptions{MaxAttempts: 1}); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctxWait(t), &bus.Message{Subject: "t", Body: []byte("poison")}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-dead:
		if r := d.Header.Get(bus.HeaderDeadReason); !strings.Contains(r, "first") || !strings.Contains(r, "second") {
			t.Errorf("dead reason %q, want both lines of the error", r)
		}
	case <-time.After(wait):
		t.Fatal("the message never reached the dead-letter topic")
	}
}

func TestErrorsWrapDriverSentinelsAndKeepTheCause(t *testing.T) {
	for _, tc := range []struct {
		in   error
		want error
	}{
		{nats.ErrNoResponders, driver.ErrNoResponders},
		{nats.ErrTimeout, driver.ErrTimeout},
		{context.DeadlineExceeded, driver.ErrTimeout},
		{context.Canceled, driver.ErrCanceled},
		{nats.ErrMaxPayload, driver.ErrTooLarge},
		{nats.ErrConnectionClosed, driver.ErrClosed},
		{nats.ErrConnectionReconnecting, driver.ErrDisconnected},
		{nats.ErrNoServers, driver.ErrDisconnected},
		{nats.ErrBadSubject, driver.ErrInvalid},
	} {
		err := wrapErr("op", "subj", tc.in)
		if !errors.Is(err, tc.want) || !errors.Is(err, tc.in) {
			t.Errorf("wrapErr(%v) = %v: want it to wrap %v and keep the cause", tc.in, err, tc.want)
		}
	}
	if wrapErr("op", "s", nil) != nil {
		t.Error("wrapErr(nil) != nil")
	}
}

// TestSettlingTwiceGivesBackRoomOnce checks that a delivery settled twice
// (outside the driver contract, which asks for exactly one Ack or Nak)
// frees its room in the member's prefetch once, so the member never holds
// more than its prefetch.
func TestSettlingTwiceGivesBackRoomOnce(t *testing.T) {
	srv := testServer(t, ServerOptions{})
	c := testOpen(t, srv.ClientURL())
	deliveries := make(chan driver.Delivery, 4)
	sub, err := c.Driver().Subscribe(ctxWait(t), driver.SubscribeSpec{Topic: "room", Group: "g", Prefetch: 1, AckWait: time.Minute},
		func(d driver.Delivery) { deliveries <- d })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop(ctxWait(t))
	held := func() int {
		s := sub.(*durableSub)
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.held
	}
	for i := range 2 {
		if err := c.Publish(ctxWait(t), &bus.Message{Subject: "room", Body: []byte{byte('a' + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	var d driver.Delivery
	select {
	case d = <-deliveries:
	case <-time.After(wait):
		t.Fatal("no delivery")
	}
	if err := d.Ack(ctxWait(t)); err != nil {
		t.Fatal(err)
	}
	_ = d.Ack(ctxWait(t))
	_ = d.Nak(ctxWait(t), 0)
	select {
	case d = <-deliveries:
	case <-time.After(wait):
		t.Fatal("the second event was not delivered after the first was acked")
	}
	if n := held(); n != 1 {
		t.Errorf("held = %d with one delivery unsettled, want 1", n)
	}
	if err := d.Ack(ctxWait(t)); err != nil {
		t.Fatal(err)
	}
	if n := held(); n != 0 {
		t.Errorf("held = %d after every delivery was settled, want 0", n)
	}
}
