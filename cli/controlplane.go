package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/controlplane"
)

// DefaultDashboardPort is the port the control plane's dashboard listens
// on, on 127.0.0.1, unless told otherwise (dev's NATS port plus one). When
// it is taken, a free port is picked instead.
const DefaultDashboardPort = DefaultDevPort + 1

// ControlPlaneOptions are the options of `switchboard controlplane`.
type ControlPlaneOptions struct {
	*GlobalOptions
	// HTTP is the address the API and the dashboard listen on.
	HTTP string
	// httpSet says --http was given, so a taken address is an error.
	httpSet bool
	// Poll is how often the control plane asks instances to announce.
	Poll time.Duration
	// Events is the topic pattern of the live event tail; "" for none.
	Events string
	// Quiet logs only warnings and errors.
	Quiet bool
}

func newControlPlaneCmd(g *GlobalOptions) *cobra.Command {
	o := &ControlPlaneOptions{GlobalOptions: g}
	cmd := &cobra.Command{
		Use:   "controlplane",
		Short: "Run the control plane: the dashboard and its JSON API for a bus",
		Long: `Run the Switchboard control plane on a bus until Ctrl-C: a service named
"controlplane" that watches discovery, health reports and every topic, and
serves what it sees on --http as a web dashboard (service catalogue, a
page per service with live graphs, the service graph, a live event tail,
dead letters with replay, a form to call any endpoint, traces) and as a
JSON API under /api/ (see docs/operations.md, "Control plane and
dashboard"). 'switchboard dev' runs one already.

Everything is served from this binary: the dashboard loads nothing from
outside and works without internet access. It listens on 127.0.0.1 by
default; it has no authentication, so expose it only behind one.

With -o json it prints one JSON object when ready: {"url": …, "bus_url": …}.`,
		Example: `  switchboard controlplane --bus nats://10.0.0.5:4222
  switchboard controlplane --bus amqp://guest:guest@127.0.0.1:5672/ --http 127.0.0.1:8080`,
		Args: argsBetween(0, 0, "none"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.httpSet = cmd.Flags().Changed("http")
			return runCommand(o)(cmd, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.HTTP, "http", net.JoinHostPort("127.0.0.1", strconv.Itoa(DefaultDashboardPort)), "address of the dashboard and the API (host:port; port 0 picks a free one)")
	f.DurationVar(&o.Poll, "poll", 5*time.Second, "how often to ask every instance for fresh figures")
	f.StringVar(&o.Events, "events", ">", `topics the live event tail follows ('trip.>', '*.completed'; "" for none): it receives a copy of each event`)
	f.BoolVar(&o.Quiet, "quiet", false, "log only warnings and errors")
	return cmd
}

// Complete does nothing: the command takes no arguments.
func (o *ControlPlaneOptions) Complete([]string) error { return nil }

// Validate checks --http and --poll.
func (o *ControlPlaneOptions) Validate() error {
	_, port, err := net.SplitHostPort(o.HTTP)
	if err != nil {
		return usageErrorf("invalid --http %q: want host:port, e.g. 127.0.0.1:%d", o.HTTP, DefaultDashboardPort)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return usageErrorf("invalid --http %q: the port must be 0 (a free one) to 65535", o.HTTP)
	}
	if o.Poll < time.Second {
		return usageErrorf("invalid --poll %s: want at least 1s", o.Poll)
	}
	if o.Events != "" {
		if err := validatePattern(o.Events); err != nil {
			return usageErrorf("invalid --events %q: want a topic pattern such as 'trip.>' or '>' (every topic), or '' for none", o.Events)
		}
	}
	return nil
}

// ControlPlaneInfo is what `controlplane -o json` prints when ready.
type ControlPlaneInfo struct {
	URL    string `json:"url"`
	BusURL string `json:"bus_url"`
}

// Run serves until ctx ends, then shuts down gracefully.
func (o *ControlPlaneOptions) Run(ctx context.Context) error {
	level := slog.LevelInfo
	if o.Quiet {
		level = slog.LevelWarn
	}
	log := o.logger(level)
	conn, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	cp, err := startControlPlane(ctx, conn, controlplane.Options{HTTPAddr: o.HTTP, Poll: o.Poll, Logger: log,
		Events: o.Events, NoEvents: o.Events == ""}, !o.httpSet)
	if err != nil {
		return err
	}
	if o.JSON() {
		if err := writeJSON(o.IO.Out, ControlPlaneInfo{URL: cp.URL(), BusURL: redactURL(conn.URL())}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(o.IO.Out, "Switchboard control plane on %s\n\n  dashboard\t%s\n  api\t%sapi/services\n\nCtrl-C to stop.\n", redactURL(conn.URL()), cp.URL(), cp.URL())
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), devShutdownTimeout)
	defer cancel()
	return cp.Shutdown(sctx)
}

// startControlPlane starts a control plane listening on opts.HTTPAddr; if
// fallback is set and that is taken, on a free port of the same host.
func startControlPlane(ctx context.Context, conn *bus.Conn, opts controlplane.Options, fallback bool) (*controlplane.ControlPlane, error) {
	cp, err := controlplane.Start(ctx, conn, opts)
	if err != nil && fallback {
		if host, _, serr := net.SplitHostPort(opts.HTTPAddr); serr == nil {
			opts.Logger.Info("dashboard port taken, picking a free one", "addr", opts.HTTPAddr)
			opts.HTTPAddr = net.JoinHostPort(host, "0")
			cp, err = controlplane.Start(ctx, conn, opts)
		}
	}
	if err != nil {
		return nil, &ExitError{Exit: ExitFailed, Code: "Unavailable", Message: "start the control plane: " + err.Error(),
			Hint: "is the --http address taken? use port 0 for a free one", Err: err}
	}
	return cp, nil
}
