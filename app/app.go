// Package app runs Switchboard services as a program: it finds the bus (a
// --bus flag, $SWITCHBOARD_BUS, or the `switchboard dev` platform running on
// this machine), connects with every registered driver, starts the services,
// and shuts them down gracefully on SIGINT or SIGTERM.
//
// It is the one place that links the broker drivers into a service binary;
// the SDK itself stays broker-neutral.
package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/amqpbus" // amqp:// and amqps://
	_ "github.com/switchboard-dev/switchboard/bus/natsbus" // nats:// and embedded://
	"github.com/switchboard-dev/switchboard/internal/devstate"
)

// EnvBus is the environment variable naming the bus URL.
const EnvBus = "SWITCHBOARD_BUS"

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
func Run(svcs ...*switchboard.Service) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return RunContext(ctx, "", svcs...)
}

// RunContext is Run with a context whose end stops the services, and an
// explicit bus URL ("" resolves it as BusURL does).
func RunContext(ctx context.Context, busURL string, svcs ...*switchboard.Service) error {
	if err := Prepare(svcs...); err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	conn, err := Connect(octx, busURL)
	cancel()
	if err != nil {
		return err
	}
	var started []*switchboard.Service
	for _, s := range svcs {
		// A signal during start-up must not leave a service half-started:
		// start fully, then stop gracefully below.
		if err = s.Start(context.WithoutCancel(ctx), conn); err != nil {
			break
		}
		started = append(started, s)
	}
	if err == nil {
		<-ctx.Done()
	}
	sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer scancel()
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, s := range started {
		errs = append(errs, s.Shutdown(sctx))
	}
	errs = append(errs, conn.Shutdown(sctx))
	return errors.Join(errs...)
}
