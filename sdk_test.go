package switchboard_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

type greetReq struct {
	Name string `json:"name"`
	Age  int    `json:"age,omitempty"`
}

type greetRsp struct {
	Greeting string `json:"greeting"`
	Caller   string `json:"caller,omitempty"`
}

var (
	hello = switchboard.Endpoint[*greetReq, *greetRsp]("greeter", "hello")
	upper = switchboard.Endpoint[*wrapperspb.StringValue, *wrapperspb.StringValue]("greeter", "upper")
	slow  = switchboard.Endpoint[*greetReq, *greetRsp]("greeter", "slow")
	boom  = switchboard.Endpoint[*greetReq, *greetRsp]("greeter", "boom")
)

// gate holds the slow endpoint: it signals entered when a call starts and
// waits for release.
type gate struct{ entered, release chan struct{} }

func newGate() *gate { return &gate{entered: make(chan struct{}, 16), release: make(chan struct{})} }

// greeter returns a started greeter service on conn. g, if set, gates the
// slow endpoint.
func greeter(t *testing.T, conn *bus.Conn, version string, g *gate, opts ...switchboard.ServiceOption) *switchboard.Service {
	t.Helper()
	svc := switchboard.NewService("greeter", version, append([]switchboard.ServiceOption{switchboard.WithHeartbeat(100 * time.Millisecond)}, opts...)...)
	hello.Handle(svc, func(ctx context.Context, req *greetReq) (*greetRsp, error) {
		if req.Name == "" {
			return nil, switchboard.Errorf(switchboard.InvalidArgument, "name is required")
		}
		call, _ := switchboard.CallFrom(ctx)
		return &greetRsp{Greeting: "hello " + req.Name + " from " + version, Caller: call.Envelope.Caller}, nil
	})
	upper.Handle(svc, func(ctx context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		return wrapperspb.String(strings.ToUpper(req.GetValue())), nil
	})
	slow.Handle(svc, func(ctx context.Context, req *greetReq) (*greetRsp, error) {
		if g == nil {
			return nil, switchboard.Errorf(switchboard.FailedPrecondition, "no gate")
		}
		g.entered <- struct{}{}
		select {
		case <-g.release:
			return &greetRsp{Greeting: "finally"}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, switchboard.MaxInFlight(1))
	boom.Handle(svc, func(ctx context.Context, req *greetReq) (*greetRsp, error) {
		panic("boom: " + req.Name)
	})
	if err := svc.Start(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Shutdown(context.Background()) })
	return svc
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestTypedCalls(t *testing.T) {
	conn := newBus(t)
	svc := greeter(t, conn, "1.0.0", nil)
	cl := switchboard.NewClient(conn, switchboard.WithCaller("tester"))
	ctx := ctxT(t)

	t.Run("a JSON endpoint replies with its typed value and sees the caller", func(t *testing.T) {
		rsp, err := hello.Call(ctx, cl, &greetReq{Name: "Ada"})
		if err != nil {
			t.Fatal(err)
		}
		if rsp.Greeting != "hello Ada from 1.0.0" || rsp.Caller != "tester" {
			t.Fatalf("got %+v", rsp)
		}
	})
	t.Run("a protobuf endpoint is called in protobuf by Go clients", func(t *testing.T) {
		rsp, err := upper.Call(ctx, cl, wrapperspb.String("shout"))
		if err != nil || rsp.GetValue() != "SHOUT" {
			t.Fatalf("got %v, %v", rsp, err)
		}
	})
	t.Run("a protobuf endpoint is callable with JSON", func(t *testing.T) {
		rep, err := cl.CallJSON(ctx, "greeter", "upper", []byte(`"json"`))
		if err != nil {
			t.Fatal(err)
		}
		if string(rep.Body) != `"JSON"` || rep.ContentType != wire.ContentTypeJSON || rep.Instance != svc.ID() {
			t.Fatalf("got %s (%s, %s)", rep.Body, rep.ContentType, rep.Instance)
		}
	})
	t.Run("a handler's coded error reaches the caller with its code", func(t *testing.T) {
		_, err := hello.Call(ctx, cl, &greetReq{})
		if switchboard.ErrorCode(err) != switchboard.InvalidArgument || !strings.Contains(err.Error(), "name is required") {
			t.Fatalf("got %v", err)
		}
		var se *switchboard.Error
		if !errors.As(err, &se) {
			t.Fatalf("error %T is not *switchboard.Error", err)
		}
	})
}

func TestBadInput(t *testing.T) {
	conn := newBus(t)
	svc := greeter(t, conn, "1.0.0", nil)
	cl := switchboard.NewClient(conn)
	ctx := ctxT(t)

	t.Run("an unknown service fails promptly with Unavailable naming it", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := cl.CallJSON(cctx, "nosuchservice", "x", nil)
		if switchboard.ErrorCode(err) != switchboard.Unavailable || !strings.Contains(err.Error(), `"nosuchservice"`) {
			t.Fatalf("got %v", err)
		}
		if cctx.Err() != nil {
			t.Fatal("the call waited for its deadline instead of failing promptly")
		}
	})
	t.Run("an unknown endpoint is Unimplemented and lists the endpoints", func(t *testing.T) {
		_, err := cl.CallJSON(ctx, "greeter", "nosuch", []byte(`{}`))
		if switchboard.ErrorCode(err) != switchboard.Unimplemented {
			t.Fatalf("got %v", err)
		}
		for _, ep := range []string{"boom", "hello", "slow", "upper"} {
			if !strings.Contains(err.Error(), ep) {
				t.Errorf("error %q does not list endpoint %s", err, ep)
			}
		}
	})
	t.Run("malformed JSON is InvalidArgument naming the offset, from the server too", func(t *testing.T) {
		rep, err := conn.Request(ctx, &bus.Message{Subject: wire.RequestSubject("greeter", "hello"),
			Header: bus.Header{wire.HeaderContentType: wire.ContentTypeJSON}, Body: []byte(`{"name": "x",}`)})
		if err != nil {
			t.Fatal(err)
		}
		err = wire.DecodeError(rep.Header)
		if bus.ErrorCode(err) != bus.InvalidArgument || !strings.Contains(err.Error(), "offset") {
			t.Fatalf("got %v", err)
		}
		_, err = cl.CallJSON(ctx, "greeter", "hello", []byte(`{"name": `))
		if switchboard.ErrorCode(err) != switchboard.InvalidArgument || !strings.Contains(err.Error(), "offset") {
			t.Fatalf("client-side check: got %v", err)
		}
	})
	t.Run("a wrongly typed field is InvalidArgument naming the field", func(t *testing.T) {
		_, err := cl.CallJSON(ctx, "greeter", "hello", []byte(`{"name":"x","age":"old"}`))
		if switchboard.ErrorCode(err) != switchboard.InvalidArgument || !strings.Contains(err.Error(), `"age"`) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("an oversized request is rejected before sending", func(t *testing.T) {
		big := &greetReq{Name: strings.Repeat("x", conn.MaxMessageSize()+1)}
		before := svc.Info().Stats["hello"].Requests
		_, err := hello.Call(ctx, cl, big)
		if switchboard.ErrorCode(err) != switchboard.InvalidArgument || !strings.Contains(err.Error(), "exceeds") {
			t.Fatalf("got %v", err)
		}
		if after := svc.Info().Stats["hello"].Requests; after != before {
			t.Fatalf("the server saw %d requests; want none", after-before)
		}
	})
	t.Run("an expired deadline is DeadlineExceeded and the handler does not run", func(t *testing.T) {
		h := bus.Header{wire.HeaderContentType: wire.ContentTypeJSON, wire.HeaderTimeout: "0"}
		rep, err := conn.Request(ctx, &bus.Message{Subject: wire.RequestSubject("greeter", "boom"), Header: h, Body: []byte(`{"name":"late"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if err := wire.DecodeError(rep.Header); bus.ErrorCode(err) != bus.DeadlineExceeded {
			t.Fatalf("got %v; want DeadlineExceeded (and boom must not have panicked)", err)
		}
	})
	t.Run("a handler panic is Internal and the service keeps serving", func(t *testing.T) {
		_, err := boom.Call(ctx, cl, &greetReq{Name: "x"})
		if switchboard.ErrorCode(err) != switchboard.Internal || !strings.Contains(err.Error(), "panicked") {
			t.Fatalf("got %v", err)
		}
		if _, err := hello.Call(ctx, cl, &greetReq{Name: "still"}); err != nil {
			t.Fatalf("after the panic: %v", err)
		}
	})
	t.Run("a malformed deadline header is InvalidArgument", func(t *testing.T) {
		rep, err := conn.Request(ctx, &bus.Message{Subject: wire.RequestSubject("greeter", "hello"),
			Header: bus.Header{wire.HeaderTimeout: "soon"}, Body: []byte(`{"name":"x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if err := wire.DecodeError(rep.Header); bus.ErrorCode(err) != bus.InvalidArgument {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("an invalid bus URL names the URL and the accepted schemes", func(t *testing.T) {
		_, err := bus.Open(ctx, "kafka://localhost:9092")
		if bus.ErrorCode(err) != bus.InvalidArgument || !strings.Contains(err.Error(), "kafka://localhost:9092") || !strings.Contains(err.Error(), "nats") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestBulkheadRejectsAtOnce(t *testing.T) {
	conn := newBus(t)
	g := newGate()
	greeter(t, conn, "1.0.0", g)
	cl := switchboard.NewClient(conn)
	ctx := ctxT(t)
	first := make(chan error, 1)
	go func() {
		_, err := slow.Call(ctx, cl, &greetReq{Name: "a"})
		first <- err
	}()
	<-g.entered // the first call occupies the only slot
	_, err := slow.Call(ctx, cl, &greetReq{Name: "b"})
	if switchboard.ErrorCode(err) != switchboard.ResourceExhausted {
		t.Fatalf("second call: got %v, want ResourceExhausted at once", err)
	}
	if d, ok := bus.RetryAfter(err); !ok || d <= 0 {
		t.Errorf("rejection carries no retry_after hint: %v", err)
	}
	close(g.release)
	if err := <-first; err != nil {
		t.Fatalf("the admitted call failed: %v", err)
	}
}

var (
	outer = switchboard.Endpoint[*greetReq, *greetRsp]("front", "outer")
)

func TestDeadlinePropagatesThroughNestedCalls(t *testing.T) {
	conn := newBus(t)
	var innerDeadline atomic.Int64
	back := switchboard.NewService("back", "1.0.0")
	hello2 := switchboard.Endpoint[*greetReq, *greetRsp]("back", "hello")
	hello2.Handle(back, func(ctx context.Context, req *greetReq) (*greetRsp, error) {
		dl, ok := ctx.Deadline()
		if ok {
			innerDeadline.Store(dl.UnixNano())
		}
		c, _ := switchboard.CallFrom(ctx)
		return &greetRsp{Greeting: "inner", Caller: c.Envelope.Caller}, nil
	})
	front := switchboard.NewService("front", "1.0.0")
	outer.Handle(front, func(ctx context.Context, req *greetReq) (*greetRsp, error) {
		return hello2.Call(ctx, front, req)
	})
	for _, s := range []*switchboard.Service{back, front} {
		if err := s.Start(context.Background(), conn); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	}
	deadline := time.Now().Add(3 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	rsp, err := outer.Call(ctx, switchboard.NewClient(conn), &greetReq{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if rsp.Caller != "front" {
		t.Errorf("inner call's caller = %q, want front", rsp.Caller)
	}
	got := time.Unix(0, innerDeadline.Load())
	if got.After(deadline.Add(50*time.Millisecond)) || got.Before(deadline.Add(-2*time.Second)) {
		t.Fatalf("inner deadline %v, want about the caller's %v", got, deadline)
	}
}

func TestDiscoveryAndRouting(t *testing.T) {
	conn := newBus(t)
	v1 := greeter(t, conn, "1.4.0", nil)
	v2 := greeter(t, conn, "2.1.0", nil)
	cl := switchboard.NewClient(conn)
	ctx := ctxT(t)

	t.Run("both instances are discovered with their endpoints", func(t *testing.T) {
		var insts []wire.InstanceInfo
		waitFor(t, func() bool {
			var err error
			insts, err = cl.Discovery().List(ctx, time.Second)
			return err == nil && len(insts) == 2
		})
		sum := switchboard.Summarize(insts)
		if len(sum) != 1 || len(sum[0].Instances) != 2 || strings.Join(sum[0].Versions, ",") != "1.4.0,2.1.0" {
			t.Fatalf("got %+v", sum)
		}
		if len(sum[0].Instances[0].Endpoints) != 4 || sum[0].Instances[0].Endpoints[0].Request == nil {
			t.Fatalf("endpoints without schemas: %+v", sum[0].Instances[0].Endpoints)
		}
	})
	t.Run("a version constraint routes only to matching instances", func(t *testing.T) {
		for range 10 {
			rsp, err := hello.Call(ctx, cl, &greetReq{Name: "v"}, switchboard.WithVersion("2.x"))
			if err != nil || !strings.HasSuffix(rsp.Greeting, "2.1.0") {
				t.Fatalf("got %v, %v", rsp, err)
			}
		}
		_, err := hello.Call(ctx, cl, &greetReq{Name: "v"}, switchboard.WithVersion("3"))
		if switchboard.ErrorCode(err) != switchboard.Unavailable || !strings.Contains(err.Error(), "1.4.0") {
			t.Fatalf("no match: got %v", err)
		}
	})
	t.Run("an instance id routes point to point", func(t *testing.T) {
		for range 5 {
			rsp, err := hello.Call(ctx, cl, &greetReq{Name: "i"}, switchboard.WithInstance(v1.ID()))
			if err != nil || !strings.HasSuffix(rsp.Greeting, "1.4.0") {
				t.Fatalf("got %v, %v", rsp, err)
			}
		}
		_, err := hello.Call(ctx, cl, &greetReq{Name: "i"}, switchboard.WithInstance("gone"))
		if switchboard.ErrorCode(err) != switchboard.Unavailable {
			t.Fatalf("unknown instance: got %v", err)
		}
	})
	t.Run("an instance that shuts down leaves discovery at once", func(t *testing.T) {
		if err := v2.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			insts, _ := cl.Discovery().Lookup(ctx, "greeter")
			return len(insts) == 1 && insts[0].ID == v1.ID()
		})
	})
}

func TestCrashedInstanceDisappearsAfterMissedHeartbeats(t *testing.T) {
	conn := newBus(t)
	other := newBusOn(t, conn) // the crashing instance has its own connection
	svc := greeter(t, other, "1.0.0", nil)
	cl := switchboard.NewClient(conn)
	ctx := ctxT(t)
	if insts, _ := cl.Discovery().Lookup(ctx, "greeter"); len(insts) != 1 || insts[0].ID != svc.ID() {
		t.Fatalf("not discovered: %+v", insts)
	}
	// A crash: the connection dies without a goodbye.
	_ = other.Driver().Close()
	waitFor(t, func() bool {
		insts, _ := cl.Discovery().Lookup(ctx, "greeter")
		return len(insts) == 0
	})
}

func TestGracefulShutdownFinishesInFlightCalls(t *testing.T) {
	conn := newBus(t)
	g := newGate()
	svc := greeter(t, conn, "1.0.0", g)
	cl := switchboard.NewClient(conn)
	ctx := ctxT(t)
	res := make(chan error, 1)
	go func() {
		_, err := slow.Call(ctx, cl, &greetReq{Name: "a"})
		res <- err
	}()
	<-g.entered
	var shutErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); shutErr = svc.Shutdown(ctx) }()
	close(g.release) // the in-flight call may now finish while shutdown waits for it
	wg.Wait()
	if shutErr != nil {
		t.Fatalf("shutdown: %v", shutErr)
	}
	if err := <-res; err != nil {
		t.Fatalf("in-flight call failed during shutdown: %v", err)
	}
	if _, err := hello.Call(ctx, cl, &greetReq{Name: "late"}); switchboard.ErrorCode(err) != switchboard.Unavailable {
		t.Fatalf("after shutdown: got %v, want Unavailable", err)
	}
}

func TestVersionMatches(t *testing.T) {
	for _, tc := range []struct {
		c, v string
		ok   bool
	}{
		{"", "1.2.3", true}, {"*", "1.2.3", true}, {"1", "1.2.3", true}, {"1.x", "1.9.0", true},
		{"2", "1.2.3", false}, {"1.2", "1.2.9", true}, {"1.2.x", "1.3.0", false}, {"1.2.3", "1.2.3", true},
		{"1.2.3", "1.2.4", false}, {"v1", "1.0.0", true}, {"1.2", "1.20.0", false}, {"1", "10.0.0", false},
	} {
		if got := switchboard.VersionMatches(tc.c, tc.v); got != tc.ok {
			t.Errorf("VersionMatches(%q, %q) = %v, want %v", tc.c, tc.v, got, tc.ok)
		}
	}
}

// waitFor polls cond until it holds, failing after a generous bound.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
