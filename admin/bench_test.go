package admin_test

import (
	"context"
	"testing"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/admin"
)

// BenchmarkCall compares one request/reply over the embedded NATS server
// through a plain service with the same through a service with metrics and
// health attached (what app.Run and `switchboard dev` do), in the same run:
//
//	go test -run '^$' -bench Call -benchmem -count 5 ./admin/
func BenchmarkCall(b *testing.B) {
	ctx := context.Background()
	conn := newBus(b)
	clientConn := newBusOn(b, conn)

	plain := switchboard.NewService("plain", "1.0.0")
	greetPlain.Handle(plain, handle)
	instrumented := switchboard.NewService("greeter", "1.0.0")
	greet.Handle(instrumented, handle)
	srv := admin.New()
	chk := srv.Attach(instrumented)
	for _, s := range []*switchboard.Service{plain, instrumented} {
		if err := s.Start(ctx, conn); err != nil {
			b.Fatal(err)
		}
		defer s.Shutdown(ctx)
	}
	if err := chk.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer chk.Stop(ctx)
	cl := switchboard.NewClient(clientConn, switchboard.WithCaller("bench"))
	defer cl.Close()

	for _, bc := range []struct {
		name string
		ep   switchboard.EndpointDef[*req, *rsp]
	}{{"plain", greetPlain}, {"metrics+health", greet}} {
		b.Run(bc.name, func(b *testing.B) {
			r := &req{Name: "Ada"}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.ep.Call(ctx, cl, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
