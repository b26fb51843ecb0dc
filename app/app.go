// Package app runs Switchboard services as a program: it finds the bus (a
// --bus flag, $SWITCHBOARD_BUS, or the `switchboard dev` platform running on
// this machine), connects with every registered driver, starts the services,
// and shuts them down gracefully on SIGINT or SIGTERM.
//
// Every service it runs gets health checks (package health: published on
// the bus, shown by `switchboard health`) and Prometheus metrics (package
// metrics) without code from its author. With $SWITCHBOARD_ADMIN_ADDR set
// (e.g. ":9090") the process also serves /healthz, /readyz and /metrics on
// that address (package admin); unset, no port is opened.
//
// It is the one place that links the broker drivers into a service binary;
// the SDK itself stays broker-neutral.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/admin"
	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/amqpbus" // amqp:// and amqps://
	_ "github.com/switchboard-dev/switchboard/bus/natsbus" // nats:// and embedded://
	"github.com/switchboard-dev/switchboard/health"
	"github.com/switchboard-dev/switchboard/internal/devstate"
	"github.com/switchboard-dev/switchboard/tracing"
)

// EnvBus is the environment variable naming the bus URL.
const EnvBus = "SWITCHBOARD_BUS"

// EnvAdmin is the environment variable naming the address of the admin HTTP
// port (/healthz, /readyz, /metrics), e.g. ":9090" or "127.0.0.1:0". Unset
// or empty: no admin port (health is still published on the bus).
const EnvAdmin = "SWITCHBOARD_ADMIN_ADDR"

// ErrNoBus means no bus URL was given and no dev platform is running.
var ErrNoBus = errors.New("no bus to connect to: start `go run ./cmd/switchboard dev` in another terminal, or set " + EnvBus + " (e.g. nats://127.0.0.1:4222), or pass --bus URL")

// BusURL resolves the bus URL: flag if set, else $SWITCHBOARD_BUS, else the
// URL a running `switchboard dev` recorded. source says which one it was.
func BusURL(flag string) (url, source string, err error) {
	if flag != "" {
		return flag, "--bus flag", nil
	}
	if v := os.Getenv(EnvBus); v != "" {
		return v, "$" + EnvBus, nil
	}
	st, path, err := devstate.Find()
	if err != nil {
		return "", "", ErrNoBus
	}
	return st.BusURL, "switchboard dev (" + path + ")", nil
}

// Connect opens the bus that BusURL resolves.
func Connect(ctx context.Context, flag string) (*bus.Conn, error) {
	url, source, err := BusURL(flag)
	if err != nil {
		return nil, err
	}
	conn, err := bus.Open(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connect to bus %s (from %s): %w", url, source, err)
	}
	return conn, nil
}

// Run connects to the bus, starts svcs and blocks until SIGINT or SIGTERM,
// then shuts them down gracefully (in-flight work finishes, instances leave
// discovery) and closes the connection.
//
// Every service is traced with no code from its author (package tracing):
// spans for the calls it serves and makes and the events it publishes and
// consumes, sent over the bus to a traces collector if one runs, and by
// OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set. Sampling is
// parent-based, 10% of new traces, unless OTEL_TRACES_SAMPLER says
// otherwise; OTEL_SDK_DISABLED=true turns tracing off.
func Run(svcs ...*switchboard.Service) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return RunContext(ctx, "", svcs...)
}

// RunContext is Run with a context whose end stops the services, and an
// explicit bus URL ("" resolves it as BusURL does).
//
// The admin address is $SWITCHBOARD_ADMIN_ADDR; RunOptions takes one
// explicitly.
func RunContext(ctx context.Context, busURL string, svcs ...*switchboard.Service) error {
	return RunOptions(ctx, Options{BusURL: busURL, AdminAddr: os.Getenv(EnvAdmin)}, svcs...)
}

// Options configure RunOptions.
type Options struct {
	// BusURL is the bus to connect to; "" resolves it as BusURL does.
	BusURL string
	// AdminAddr, if set, is where the admin HTTP server listens (/healthz,
	// /readyz, /metrics; see package admin), e.g. ":9090".
	AdminAddr string
	// Ready, if set, is called once the services and their health checks
	// run, with the admin server (whose URL is "" without AdminAddr).
	Ready func(*admin.Server)
}

// RunOptions is RunContext with explicit options.
func RunOptions(ctx context.Context, opts Options, svcs ...*switchboard.Service) error {
	// Tracing first, so that it wraps the protections Prepare installs and
	// records what they refuse; its spans go over the bus once connected
	// (and by OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set).
	tr, err := tracing.New(ctx, tracing.Options{})
	if err != nil {
		return err
	}
	defer tr.Shutdown(context.Background()) // for early returns; a no-op after the one below
	if err := tr.Instrument(svcs...); err != nil {
		return err
	}
	adm := admin.New()
	loaded := time.Now()
	if err := PrepareWith(adm.Metrics(), svcs...); err != nil {
		return err
	}
	checkers := make([]*health.Checker, len(svcs))
	for i, s := range svcs {
		// Before Start: observers are fixed then.
		checkers[i] = adm.Attach(s).Add("config", ConfigCheck(os.Getenv(EnvResilience), loaded))
	}
	if opts.AdminAddr != "" {
		if err := adm.Listen(opts.AdminAddr); err != nil {
			return err
		}
		slog.Info("admin HTTP server listening", "url", adm.URL(), "paths", "/healthz /readyz /metrics")
		defer func() {
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			_ = adm.Shutdown(sctx)
		}()
	}
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	conn, err := Connect(octx, opts.BusURL)
	cancel()
	if err != nil {
		return err
	}
	tr.AttachBus(conn)
	var started []*switchboard.Service
	var running []*health.Checker
	for i, s := range svcs {
		// A signal during start-up must not leave a service half-started:
		// start fully, then stop gracefully below.
		if err = s.Start(context.WithoutCancel(ctx), conn); err != nil {
			break
		}
		started = append(started, s)
		if err = checkers[i].Start(context.WithoutCancel(ctx)); err != nil {
			break
		}
		running = append(running, checkers[i])
	}
	if err == nil {
		if opts.Ready != nil {
			opts.Ready(adm)
		}
		<-ctx.Done()
	}
	sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer scancel()
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	// Checkers first: readiness turns traffic away while services drain.
	for _, c := range running {
		errs = append(errs, c.Stop(sctx))
	}
	for _, s := range started {
		errs = append(errs, s.Shutdown(sctx))
	}
	errs = append(errs, tr.Shutdown(sctx)) // the last spans, while the bus is still there
	errs = append(errs, conn.Shutdown(sctx))
	return errors.Join(errs...)
}
