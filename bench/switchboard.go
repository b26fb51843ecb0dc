package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/admin"
	"github.com/switchboard-dev/switchboard/app"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/health"
	"github.com/switchboard-dev/switchboard/resilience"
	"github.com/switchboard-dev/switchboard/tracing"
)

// The Switchboard side of the cases is the same code on every broker: only
// the bus connections it is given differ.

// sbSide is the Switchboard service and client of a case.
type sbSide struct {
	svc    *switchboard.Service
	client *switchboard.Client
}

func (s *sbSide) stop() {
	if s.svc != nil {
		_ = s.svc.Shutdown(context.Background())
	}
	if s.client != nil {
		_ = s.client.Close()
	}
}

func (s *sbRPC) stop() {
	s.sbSide.stop()
	if s.obs != nil {
		s.obs.stop()
	}
}

// sbRPC is a typed endpoint served by a Switchboard service and called by a
// Switchboard client, bare or, with obs, as app.Run runs services.
type sbRPC struct {
	sbSide
	ep  switchboard.EndpointDef[*QuoteRequest, *QuoteReply]
	obs *observability
	// protect installs the default protections without observability:
	// the side the observability table compares the observed endpoint
	// with, so that it measures health, metrics and tracing alone.
	protect bool
}

// observability is what app.Run installs on every service and what the
// "observed" cases measure: tracing at the production default sampling
// (spans batched over the bus, no OTLP), Prometheus metrics and health
// checks (package admin), and the default protections (app.PrepareWith).
type observability struct {
	tr  *tracing.Pipeline
	adm *admin.Server
	chk *health.Checker
}

func newObservability(ctx context.Context) (*observability, error) {
	tr, err := tracing.New(ctx, tracing.Options{NoOTLP: true, Logger: quiet})
	if err != nil {
		return nil, fmt.Errorf("bench: tracing: %w", err)
	}
	return &observability{tr: tr, adm: admin.New()}, nil
}

func (o *observability) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if o.chk != nil {
		_ = o.chk.Stop(ctx)
	}
	_ = o.tr.Shutdown(ctx)
}

// start serves the endpoint of service svcName on srv and makes the client
// on cli.
func (s *sbRPC) start(ctx context.Context, svcName string, srv, cli *bus.Conn) error {
	s.ep = switchboard.Endpoint[*QuoteRequest, *QuoteReply](svcName, "quote")
	s.svc = switchboard.NewService(svcName, "1.0.0", switchboard.WithLogger(quiet))
	s.ep.Handle(s.svc, func(_ context.Context, req *QuoteRequest) (*QuoteReply, error) {
		return quote(req), nil
	})
	clientOpts := []switchboard.ClientOption{switchboard.WithCaller("bench")}
	if s.protect {
		if err := s.svc.Apply(resilience.Defaults().ServiceOptions()...); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if o := s.obs; o != nil {
		if err := o.tr.Instrument(s.svc); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if err := app.PrepareWith(o.adm.Metrics(), s.svc); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		o.chk = o.adm.Attach(s.svc).WithLogger(quiet)
		o.tr.AttachBus(srv)
		clientOpts = append(o.tr.ClientOptions("bench"), append(clientOpts,
			switchboard.WithClientMiddleware(o.adm.Metrics().ClientMiddleware()))...)
	}
	if err := s.svc.Start(ctx, srv); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if s.obs != nil {
		if err := s.obs.chk.Start(ctx); err != nil {
			return fmt.Errorf("bench: health: %w", err)
		}
	}
	s.client = switchboard.NewClient(cli, clientOpts...)
	return nil
}

func (s *sbRPC) callSwitchboard(ctx context.Context, i int) error {
	rep, err := s.ep.Call(ctx, s.client, request(i))
	if err != nil {
		return err
	}
	if rep.RideID == "" {
		return errors.New("bench: switchboard: empty reply")
	}
	return nil
}

// sbEvents is a Switchboard client publishing on a topic and a service
// consuming it in a consumer group, one event at a time with
// eventsPrefetch more buffered, counting what it consumed.
type sbEvents struct {
	sbSide
	topic switchboard.TopicDef[*TripRequested]
	sbN   *counter
}

// start makes the publishing client on pub and the consuming service
// svcName on sub.
func (s *sbEvents) start(ctx context.Context, svcName string, pub, sub *bus.Conn) error {
	s.sbN = newCounter()
	s.client = switchboard.NewClient(pub, switchboard.WithCaller("bench"))
	s.topic = switchboard.Topic[*TripRequested](eventsTopic)
	s.svc = switchboard.NewService(svcName, "1.0.0", switchboard.WithLogger(quiet))
	s.topic.Subscribe(s.svc, eventsGroup, func(_ context.Context, ev *TripRequested) error {
		if ev.TripID == "" {
			return errors.New("bench: empty event")
		}
		s.sbN.inc()
		return nil
	}, switchboard.Concurrency(eventsConcurrency), func(o *bus.SubscribeOptions) { o.Prefetch = eventsPrefetch })
	if err := s.svc.Start(ctx, sub); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

func (s *sbEvents) publishSwitchboard(ctx context.Context, i int) error {
	return s.topic.Publish(ctx, s.client, event(i))
}
