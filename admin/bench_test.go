package admin_test

import (
	"context"
	"testing"
	"time"

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

	// Interleaved: each iteration makes one call of each kind, so drift in
	// a shared machine's load hits both alike; the ratio is the figure.
	b.Run("interleaved", func(b *testing.B) {
		r := &req{Name: "Ada"}
		var plainNS, instNS time.Duration
		b.ReportAllocs()
		call := func(ep switchboard.EndpointDef[*req, *rsp], total *time.Duration) {
			t0 := time.Now()
			if _, err := ep.Call(ctx, cl, r); err != nil {
				b.Fatal(err)
			}
			*total += time.Since(t0)
		}
		odd := false
		for b.Loop() {
			if odd = !odd; odd { // alternate which goes first
				call(greetPlain, &plainNS)
				call(greet, &instNS)
			} else {
				call(greet, &instNS)
				call(greetPlain, &plainNS)
			}
		}
		n := float64(b.N)
		b.ReportMetric(float64(plainNS)/n, "plain-ns/call")
		b.ReportMetric(float64(instNS)/n, "instrumented-ns/call")
		b.ReportMetric(100*(float64(instNS)/float64(plainNS)-1), "overhead-%")
	})
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
