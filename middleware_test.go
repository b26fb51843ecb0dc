package switchboard_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard"
)

func TestMiddlewareChainsRunInOrderAroundEveryCall(t *testing.T) {
	conn := newBus(t)
	var mu sync.Mutex
	var trail []string
	note := func(s string) { mu.Lock(); trail = append(trail, s); mu.Unlock() }
	server := func(name string) switchboard.Middleware {
		return func(next switchboard.Handler) switchboard.Handler {
			return func(ctx context.Context, call *switchboard.Call) (any, error) {
				note("server " + name + " " + call.Endpoint + " from " + call.Envelope.Caller + " tag=" + call.Header.Get("X-Tag"))
				return next(ctx, call)
			}
		}
	}
	client := func(name string) switchboard.ClientMiddleware {
		return func(next switchboard.Invoker) switchboard.Invoker {
			return func(ctx context.Context, call *switchboard.Call, reply any) error {
				note("client " + name + " " + call.Service + "." + call.Endpoint)
				call.Header.Set("X-Tag", name)
				return next(ctx, call, reply)
			}
		}
	}
	greeter(t, conn, "1.0.0", nil, switchboard.WithMiddleware(server("outer"), server("inner")))
	cl := switchboard.NewClient(conn, switchboard.WithCaller("mw"), switchboard.WithClientMiddleware(client("a"), client("b")))
	if _, err := hello.Call(ctxT(t), cl, &greetReq{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CallJSON(ctxT(t), "greeter", "hello", []byte(`{"name":"y"}`)); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"client a greeter.hello", "client b greeter.hello",
		"server outer hello from mw tag=b", "server inner hello from mw tag=b",
		"client a greeter.hello", "client b greeter.hello",
		"server outer hello from mw tag=b", "server inner hello from mw tag=b",
	}, "\n")
	if got := strings.Join(trail, "\n"); got != want {
		t.Fatalf("trail:\n%s\nwant:\n%s", got, want)
	}
}

func TestApplyAddsMiddlewareToWhatWasRegisteredBefore(t *testing.T) {
	conn := newBus(t)
	ctx := ctxT(t)
	var calls, events []string
	var mu sync.Mutex
	note := func(list *[]string, s string) { mu.Lock(); *list = append(*list, s); mu.Unlock() }
	topic := switchboard.Topic[*orderPlaced]("orders.applied." + strconv.FormatInt(time.Now().UnixNano(), 36))
	got := make(chan struct{})
	svc := switchboard.NewService("greeter", "1.0.0")
	hello.Handle(svc, func(ctx context.Context, req *greetReq) (*greetRsp, error) {
		return &greetRsp{Greeting: "hi"}, nil
	})
	topic.Subscribe(svc, "g", func(ctx context.Context, ev *orderPlaced) error { close(got); return nil })
	err := svc.Apply(
		switchboard.WithMiddleware(func(next switchboard.Handler) switchboard.Handler {
			return func(ctx context.Context, call *switchboard.Call) (any, error) {
				note(&calls, call.Endpoint)
				return next(ctx, call)
			}
		}),
		switchboard.WithConsumerMiddleware(func(next switchboard.EventHandler) switchboard.EventHandler {
			return func(ctx context.Context, ev *switchboard.EventCall) error {
				note(&events, ev.Topic)
				return next(ctx, ev)
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Shutdown(context.Background()) })
	cl := switchboard.NewClient(conn)
	if _, err := hello.Call(ctx, cl, &greetReq{Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	if err := topic.Publish(ctx, cl, &orderPlaced{N: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("the event was not consumed within 15s")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 1 || calls[0] != "hello" || len(events) != 1 || events[0] != topic.Name() {
		t.Fatalf("middleware applied after registration saw calls %v and events %v", calls, events)
	}
	if err := svc.Apply(switchboard.WithDescription("late")); switchboard.ErrorCode(err) != switchboard.FailedPrecondition {
		t.Fatalf("Apply after Start: got %v, want FailedPrecondition", err)
	}
}
