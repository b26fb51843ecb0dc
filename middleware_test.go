package switchboard_test

import (
	"context"
	"strings"
	"sync"
	"testing"

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
