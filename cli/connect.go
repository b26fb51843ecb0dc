package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-dev/switchboard/app"
	"github.com/switchboard-dev/switchboard/bus"
)

// connectTimeout bounds opening the bus connection.
const connectTimeout = 5 * time.Second

// noBusHint is what to try when there is no bus to talk to.
const noBusHint = "start 'switchboard dev' in another terminal, or point at a bus with --bus URL or " + app.EnvBus + " (e.g. nats://127.0.0.1:4222)"

// connect opens the bus that --bus, $SWITCHBOARD_BUS or the running dev
// platform names. Failures are ExitUnavailable, except a URL no driver
// accepts, which is ExitUsage.
func (g *GlobalOptions) connect(ctx context.Context) (*bus.Conn, error) {
	url, source, err := app.BusURL(g.BusURL)
	if err != nil {
		return nil, &ExitError{Exit: ExitUnavailable, Code: bus.Unavailable.String(), Err: err,
			Message: "no bus to connect to: --bus is not set, $" + app.EnvBus + " is empty and no 'switchboard dev' is running on this machine",
			Hint:    noBusHint}
	}
	octx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := bus.Open(octx, url)
	if err == nil {
		return conn, nil
	}
	if bus.ErrorCode(err) == bus.InvalidArgument {
		return nil, &ExitError{Exit: ExitUsage, Code: bus.InvalidArgument.String(), Err: err,
			Message: fmt.Sprintf("invalid bus URL %q (from %s): %s", url, source, trimPrefix(busMessage(err))),
			Hint:    "use a URL such as nats://127.0.0.1:4222"}
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil, &ExitError{Exit: ExitFailed, Code: bus.Canceled.String(), Message: "interrupted while connecting to " + url, Err: err}
	}
	hint := "check that a broker is running at " + url + ", or unset --bus/" + app.EnvBus + " and start 'switchboard dev'"
	if g.BusURL == "" && source != "$"+app.EnvBus {
		hint = "the 'switchboard dev' recorded there is not answering: restart it"
	}
	return nil, &ExitError{Exit: ExitUnavailable, Code: bus.Unavailable.String(), Err: err,
		Message: fmt.Sprintf("cannot reach the bus at %s (from %s): %s", url, source, trimPrefix(busMessage(err))),
		Hint:    hint}
}

// busMessage is the message of a Switchboard error without its code prefix.
func busMessage(err error) string {
	var be *bus.Error
	if errors.As(err, &be) {
		return be.Message
	}
	return err.Error()
}
