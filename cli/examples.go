package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/admin"
	"github.com/switchboard-dev/switchboard/app"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/examples/ridehail"
	"github.com/switchboard-dev/switchboard/examples/ridehail/workload"
	"github.com/switchboard-dev/switchboard/health"
	"github.com/switchboard-dev/switchboard/tracing"
)

// examplePlatform is what `switchboard dev` runs on its bus: the
// ride-hailing services and, if asked for, a workload calling them.
type examplePlatform struct {
	services []*switchboard.Service
	client   *switchboard.Client
	rate     float64
	stop     context.CancelFunc // ends the workload
	done     chan struct{}      // closed when the workload returned
	log      *slog.Logger
	checkers []*health.Checker // the services' health checks, when running
}

// startExamples starts the example services on conn and the workload at
// rate trips per second (none if rate is 0), with their health checks and
// metrics on adm, all traced by tr.
func startExamples(ctx context.Context, conn *bus.Conn, rate float64, log *slog.Logger, adm *admin.Server, tr *tracing.Pipeline) (*examplePlatform, error) {
	p := &examplePlatform{rate: rate, log: log, done: make(chan struct{})}
	svcs := ridehail.Services(log)
	if err := tr.Instrument(svcs...); err != nil { // first: tracing wraps the protections
		return nil, err
	}
	loaded := time.Now()
	if err := app.PrepareWith(adm.Metrics(), svcs...); err != nil { // protections, traffic for the control plane
		return nil, err
	}
	for _, svc := range svcs {
		chk := adm.Attach(svc).WithLogger(log).Add("config", app.ConfigCheck(os.Getenv(app.EnvResilience), loaded))
		if err := svc.Start(ctx, conn); err != nil {
			return nil, errors.Join(err, p.Shutdown(context.Background()))
		}
		p.services = append(p.services, svc)
		if err := chk.Start(ctx); err != nil {
			return nil, errors.Join(err, p.Shutdown(context.Background()))
		}
		p.checkers = append(p.checkers, chk)
	}
	if rate <= 0 {
		close(p.done)
		return p, nil
	}
	p.client = switchboard.NewClient(conn, append(tr.ClientOptions("workload"), switchboard.WithCaller("workload"),
		switchboard.WithClientMiddleware(adm.Metrics().ClientMiddleware()))...)
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.stop = cancel
	go func() {
		defer close(p.done)
		workload.Run(wctx, p.client, rate, log)
	}()
	return p, nil
}

// Names returns the names of the services running.
func (p *examplePlatform) Names() []string {
	names := make([]string, len(p.services))
	for i, s := range p.services {
		names[i] = s.Name()
	}
	return names
}

// TryCommands are the commands the dev banner suggests.
func (p *examplePlatform) TryCommands() []string {
	cmds := []string{
		"switchboard services",
		"switchboard describe trips",
	}
	if p.rate > 0 { // robot drivers are on the map, so a trip finds one
		cmds = append(cmds, `switchboard call trips request_trip '{"customerId":"ada","pickup":{"lat":52.37,"lng":4.89},"dropoff":{"lat":52.36,"lng":4.92}}'`)
	} else {
		cmds = append(cmds, `switchboard call pricing quote '{"pickup":{"lat":52.37,"lng":4.89},"dropoff":{"lat":52.36,"lng":4.92}}'`)
	}
	trace := "switchboard trace --last pricing.quote"
	if p.rate > 0 {
		trace = "switchboard trace --last trips.request_trip"
	}
	return append(cmds, trace, "switchboard watch 'trip.>'", "switchboard health")
}

// Shutdown stops the workload, then the services in reverse start order:
// each stops taking work, finishes what is in flight and leaves discovery.
func (p *examplePlatform) Shutdown(ctx context.Context) error {
	if p.stop != nil {
		p.stop()
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return fmt.Errorf("the workload did not stop: %w", ctx.Err())
	}
	var errs []error
	for _, c := range p.checkers { // first: readiness fails while services drain
		errs = append(errs, c.Stop(ctx))
	}
	if p.client != nil {
		errs = append(errs, p.client.Close())
	}
	for i := len(p.services) - 1; i >= 0; i-- {
		errs = append(errs, p.services[i].Shutdown(ctx))
	}
	return errors.Join(errs...)
}
