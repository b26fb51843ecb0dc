package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-dev/switchboard/admin"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/natsbus"
	"github.com/switchboard-dev/switchboard/controlplane"
	"github.com/switchboard-dev/switchboard/internal/devstate"
	"github.com/switchboard-dev/switchboard/tracestore"
	"github.com/switchboard-dev/switchboard/tracing"
)

// DefaultDevPort is the port `switchboard dev` listens on unless told
// otherwise: fixed, so that services started next to it reconnect after a
// restart, and not NATS' 4222, where another server may run. When it is
// taken, dev picks a free port instead.
const DefaultDevPort = 4250

// DefaultWorkloadRate is how many trips per second the dev workload
// requests.
const DefaultWorkloadRate = 2.0

// devShutdownTimeout bounds the graceful shutdown of the dev platform.
const devShutdownTimeout = 15 * time.Second

// DevOptions are the options of `switchboard dev`.
type DevOptions struct {
	*GlobalOptions
	// DataDir holds the platform's data (JetStream store, state file).
	DataDir string
	// Port is the NATS client port; 0 picks a free one.
	Port int
	// portSet says --port was given, so a taken port is an error rather
	// than a reason to pick another.
	portSet bool
	// embeddedFlags lists the flags of the embedded server that were given
	// (--data, --port, --sync): refused with --bus.
	embeddedFlags []string
	// Sync is "always" or a duration between fsyncs.
	Sync string
	// WorkloadRate is the trips per second the workload requests; 0 turns
	// the workload off.
	WorkloadRate float64
	// Quiet logs only warnings and errors.
	Quiet bool
	// Dashboard is where the control plane serves the dashboard and its
	// API; "" runs no control plane.
	Dashboard string
	// dashboardSet says --dashboard was given: a taken address is then an
	// error rather than a reason to pick a free port.
	dashboardSet bool
	// AdminAddr is where the admin HTTP server of the whole dev process
	// listens (/healthz, /readyz, /metrics); "" turns it off.
	AdminAddr string

	syncAlways   bool
	syncInterval time.Duration
}

func newDevCmd(g *GlobalOptions) *cobra.Command {
	o := &DevOptions{GlobalOptions: g}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole platform locally: bus, example services and a workload",
		Long: `Run the whole Switchboard platform in this process, for development: an
embedded NATS server with JetStream (its data under --data), the example
ride-hailing services and a steady workload of trips between them.

Other terminals find it with no flags: dev writes its bus URL to
DATA/dev.json and to your user config directory, so 'switchboard services'
or a service started with 'go run' connect to it. It listens on 127.0.0.1
port ` + strconv.Itoa(DefaultDevPort) + ` by default (a free port if that one is taken; never
NATS' 4222); --port 0 always picks a free one.

Durability: with --sync always (the default) JetStream writes every event
to disk (fsync) before acknowledging it, so nothing acknowledged is lost
even if the machine crashes. --sync DURATION fsyncs on that interval
instead: faster, and a process crash still loses nothing, but a machine
crash can lose the last interval.

Ctrl-C (or SIGTERM) shuts down gracefully: the workload stops, in-flight
calls finish, instances leave discovery, JetStream flushes to disk and the
state file is removed. A second Ctrl-C exits at once.

With --bus URL (e.g. amqp://guest:guest@127.0.0.1:5672/ or
nats://10.0.0.5:4222) dev starts no server: the example services and the
workload run on that broker, which keeps the data, so --data, --port and
--sync do not apply and no state file is written: point other terminals at
the same bus with --bus or $SWITCHBOARD_BUS.

Health and metrics: every example service runs the built-in health checks
('switchboard health' shows them) and is instrumented with Prometheus
metrics; one admin HTTP server for the whole process (--admin, a free port
on 127.0.0.1 by default, printed when ready) serves /metrics, /readyz and
/healthz for all of them.

The control plane runs with them: a web dashboard (services, live graphs
per endpoint, the service graph, events, dead letters, a form to call any
endpoint, traces) and its JSON API on --dashboard, 127.0.0.1 port ` + strconv.Itoa(DefaultDashboardPort) + ` by
default (a free port if that one is taken), printed when ready.

With -o json, dev prints one JSON object when it is ready:
{"bus_url": …, "data_dir": …, "pid": …, "ready_ms": …, "admin_url": …, "dashboard_url": …}.`,
		Example: `  switchboard dev
  switchboard dev --data /tmp/sb --port 0 --workload-rate 0
  switchboard dev --sync 1s --quiet
  switchboard dev --bus amqp://guest:guest@127.0.0.1:5672/`,
		Args: argsBetween(0, 0, "none"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.portSet = cmd.Flags().Changed("port")
			o.dashboardSet = cmd.Flags().Changed("dashboard")
			for _, f := range []string{"data", "port", "sync"} {
				if cmd.Flags().Changed(f) {
					o.embeddedFlags = append(o.embeddedFlags, "--"+f)
				}
			}
			if err := o.Complete(args); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data", devstate.DefaultDataDir, "directory for the platform's data")
	f.IntVar(&o.Port, "port", DefaultDevPort, "NATS port on 127.0.0.1 (0: a free port)")
	f.StringVar(&o.Sync, "sync", "always", `when JetStream fsyncs: "always" (every event) or an interval such as 1s`)
	f.Float64Var(&o.WorkloadRate, "workload-rate", DefaultWorkloadRate, "trips per second the example workload requests (0: none)")
	f.BoolVar(&o.Quiet, "quiet", false, "log only warnings and errors")
	f.StringVar(&o.Dashboard, "dashboard", net.JoinHostPort("127.0.0.1", strconv.Itoa(DefaultDashboardPort)), `address of the control plane's dashboard and API (a free port if the default is taken; "" for none)`)
	f.StringVar(&o.AdminAddr, "admin", "127.0.0.1:0", `address of the admin HTTP server: /healthz, /readyz and /metrics of every service (default a free port; "" for none)`)
	return cmd
}

// Complete parses --sync and makes the data directory absolute.
func (o *DevOptions) Complete(args []string) error {
	if o.Sync == "always" {
		o.syncAlways = true
	} else if d, err := time.ParseDuration(o.Sync); err == nil {
		o.syncInterval = d
	} else {
		return usageErrorf(`invalid --sync %q: want "always" or a duration such as 1s`, o.Sync)
	}
	if o.DataDir != "" {
		abs, err := filepath.Abs(o.DataDir)
		if err != nil {
			return usageErrorf("invalid --data %q: %v", o.DataDir, err)
		}
		o.DataDir = abs
	}
	return nil
}

// Validate checks the flags.
func (o *DevOptions) Validate() error {
	switch {
	case o.BusURL != "" && len(o.embeddedFlags) > 0:
		return usageErrorf("%s configure the embedded NATS server, which dev does not start with --bus", strings.Join(o.embeddedFlags, ", "))
	case o.DataDir == "":
		return usageErrorf("--data must name a directory")
	case o.Port < 0 || o.Port > 65535:
		return usageErrorf("invalid --port %d: want 0 (a free port) to 65535", o.Port)
	case !o.syncAlways && o.syncInterval <= 0:
		return usageErrorf(`invalid --sync %q: the interval must be positive`, o.Sync)
	case o.WorkloadRate < 0:
		return usageErrorf("invalid --workload-rate %g: want 0 (off) or more trips per second", o.WorkloadRate)
	}
	return nil
}

// devTraceBatch is how long a finished span waits to go to the collector
// in dev: short, so that 'switchboard trace' finds a call just made.
const devTraceBatch = 100 * time.Millisecond

// DevInfo is what dev prints with -o json when it is ready.
type DevInfo struct {
	BusURL  string `json:"bus_url"`
	DataDir string `json:"data_dir"`
	PID     int    `json:"pid"`
	ReadyMS int64  `json:"ready_ms"`
	// DashboardURL is the control plane's dashboard, "" when --dashboard ""
	// turned it off.
	DashboardURL string `json:"dashboard_url,omitempty"`
	// AdminURL is the admin HTTP server (/healthz, /readyz, /metrics), ""
	// when --admin "" turned it off.
	AdminURL string `json:"admin_url,omitempty"`
}

// Run starts the platform and blocks until ctx ends, then shuts it down.
func (o *DevOptions) Run(ctx context.Context) (err error) {
	start := time.Now()
	level := slog.LevelInfo
	if o.Quiet {
		level = slog.LevelWarn
	}
	log := o.logger(level)
	embedded := o.BusURL == ""

	if st, ok := runningIn(o.DataDir); ok && embedded {
		return &ExitError{Exit: ExitFailed, Code: "FailedPrecondition",
			Message: fmt.Sprintf("a 'switchboard dev' (pid %d, bus %s) already runs with its data in %s", st.PID, st.BusURL, o.DataDir),
			Hint:    "use that one, stop it first, or give this one another --data directory"}
	}
	// What has started is stopped in reverse order on the way out, within
	// one shutdown bound that starts when shutdown does.
	var stops []func(context.Context) error
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), devShutdownTimeout)
		defer cancel()
		for i := len(stops) - 1; i >= 0; i-- {
			err = errors.Join(err, stops[i](sctx))
		}
		if err == nil {
			log.Info("stopped cleanly")
		}
	}()

	var conn *bus.Conn
	info := DevInfo{PID: os.Getpid()}
	if embedded {
		port := o.Port
		if !o.portSet && port != 0 && !portFree(port) {
			log.Info("default port taken, picking a free one", "port", port)
			port = 0
		}
		srv, err := natsbus.StartServer(natsbus.ServerOptions{DataDir: o.DataDir, Port: port,
			SyncAlways: o.syncAlways, SyncInterval: o.syncInterval, Logger: o.logger(max(level, slog.LevelWarn))})
		if err != nil {
			hint := "check that --data is a writable directory"
			if o.portSet {
				hint = "is the port taken? use --port 0 for a free one"
			}
			return &ExitError{Exit: ExitFailed, Code: "Unavailable", Message: "start the embedded NATS server: " + err.Error(), Hint: hint, Err: err}
		}
		stops = append(stops, func(context.Context) error {
			srv.Shutdown() // JetStream flushes its store before this returns
			return nil
		})
		if conn, err = srv.Open(ctx, natsbus.Options{}); err != nil {
			return fmt.Errorf("connect to the embedded server: %w", err)
		}
		info.BusURL, info.DataDir = srv.ClientURL(), o.DataDir
	} else {
		// An external broker: it keeps the data; dev only runs the
		// services and the workload on it.
		if conn, err = o.connect(ctx); err != nil {
			return err
		}
		info.BusURL = redactURL(o.BusURL)
	}
	stops = append(stops, func(ctx context.Context) error {
		if err := conn.Shutdown(ctx); err != nil {
			return fmt.Errorf("close the bus connection: %w", err)
		}
		return nil
	})

	adm := admin.New()
	if o.AdminAddr != "" {
		if err := adm.Listen(o.AdminAddr); err != nil {
			return &ExitError{Exit: ExitFailed, Code: "Unavailable", Message: "start the admin HTTP server: " + trimPrefix(strings.TrimPrefix(err.Error(), "admin: ")),
				Hint: "is the address taken? --admin 127.0.0.1:0 picks a free port, --admin '' runs none", Err: err}
		}
		info.AdminURL = adm.URL()
		stops = append(stops, func(ctx context.Context) error {
			if err := adm.Shutdown(ctx); err != nil {
				return fmt.Errorf("stop the admin HTTP server: %w", err)
			}
			return nil
		})
	}
	// Every trace is recorded in dev, sent over the bus in short batches
	// to the traces collector, which 'switchboard trace' reads.
	tr, err := tracing.New(ctx, tracing.Options{Bus: conn, Dev: true, BatchTimeout: devTraceBatch, Logger: log})
	if err != nil {
		return &ExitError{Exit: ExitUsage, Code: bus.InvalidArgument.String(), Message: trimPrefix(busMessage(err)), Err: err,
			Hint: "fix or unset OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG"}
	}
	stops = append(stops, func(ctx context.Context) error { return tr.Shutdown(ctx) })
	collector := tracestore.New(tracestore.WithLogger(log))
	if err := collector.Start(ctx, conn); err != nil {
		return fmt.Errorf("start the traces collector: %w", err)
	}
	stops = append(stops, collector.Shutdown)
	log.Info("tracing", "spans", tr.Describe())

	if o.Dashboard != "" {
		// Before the examples, so that it sees them start.
		cp, err := startControlPlane(ctx, conn, controlplane.Options{HTTPAddr: o.Dashboard, Logger: log}, !o.dashboardSet)
		if err != nil {
			return err
		}
		info.DashboardURL = cp.URL()
		stops = append(stops, cp.Shutdown)
	}

	platform, err := startExamples(ctx, conn, o.WorkloadRate, log, adm, tr)
	if err != nil {
		return fmt.Errorf("start the example services: %w", err)
	}
	stops = append(stops, func(ctx context.Context) error {
		if err := platform.Shutdown(ctx); err != nil {
			return fmt.Errorf("shut down the example services: %w", err)
		}
		return nil
	})

	info.ReadyMS = time.Since(start).Milliseconds()
	if embedded {
		if err := devstate.Write(o.DataDir, devstate.State{BusURL: info.BusURL, PID: info.PID, DataDir: info.DataDir, Started: start}); err != nil {
			return fmt.Errorf("write the state file: %w", err)
		}
		stops = append(stops, func(context.Context) error {
			devstate.Remove(o.DataDir, info.PID) // first: other terminals stop finding us
			return nil
		})
	}

	if o.JSON() {
		if err := writeJSON(o.IO.Out, info); err != nil {
			return err
		}
	} else {
		o.banner(info, platform)
	}
	<-ctx.Done()
	if embedded {
		log.Info("shutting down: stopping the workload, draining services, flushing JetStream")
	} else {
		log.Info("shutting down: stopping the workload, draining services, closing the bus connection")
	}
	return nil
}

// redactURL hides the password of a bus URL, for what dev prints.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// banner tells the user where things are and what to type next.
func (o *DevOptions) banner(info DevInfo, p *examplePlatform) {
	w := o.IO.Out
	fmt.Fprintf(w, "Switchboard dev platform ready in %dms\n\n", info.ReadyMS)
	tw := newTable(w)
	fmt.Fprintf(tw, "  bus\t%s\n", info.BusURL)
	if info.DataDir != "" {
		fmt.Fprintf(tw, "  data\t%s\n", info.DataDir)
		fmt.Fprintf(tw, "  sync\t%s\n", o.syncDescription())
	} else {
		fmt.Fprintf(tw, "  data\tkept by the broker\n")
	}
	fmt.Fprintf(tw, "  services\t%s\n", joinOrDash(p.Names()))
	if info.DashboardURL != "" {
		fmt.Fprintf(tw, "  dashboard\t%s\n", info.DashboardURL)
	}
	if info.AdminURL != "" {
		fmt.Fprintf(tw, "  admin\t%s  (/metrics /readyz /healthz)\n", info.AdminURL)
	}
	if o.WorkloadRate > 0 {
		fmt.Fprintf(tw, "  workload\t%g trips/s\n", o.WorkloadRate)
	} else {
		fmt.Fprintf(tw, "  workload\toff\n")
	}
	tw.Flush()
	if info.DataDir == "" {
		fmt.Fprintf(w, "\nIn another terminal, with SWITCHBOARD_BUS set to the same URL (or --bus URL):\n\n")
	} else {
		fmt.Fprintf(w, "\nIn another terminal (no flags needed):\n\n")
	}
	for _, c := range p.TryCommands() {
		fmt.Fprintf(w, "  %s\n", c)
	}
	if info.DataDir == "" {
		fmt.Fprintf(w, "\nServices started with 'go run' join it with the same SWITCHBOARD_BUS. Ctrl-C to stop.\n")
		return
	}
	fmt.Fprintf(w, "\nServices started with 'go run' next to this find it too; elsewhere set\n")
	fmt.Fprintf(w, "SWITCHBOARD_BUS=%s. Ctrl-C to stop.\n", info.BusURL)
}

func (o *DevOptions) syncDescription() string {
	if o.syncAlways {
		return "always (every event fsynced before it is acknowledged)"
	}
	return "every " + o.syncInterval.String()
}

// runningIn returns the state of a dev platform that is running with its
// data in dir, if there is one.
func runningIn(dir string) (devstate.State, bool) {
	var st devstate.State
	b, err := os.ReadFile(filepath.Join(dir, devstate.FileName))
	if err != nil || json.Unmarshal(b, &st) != nil || st.PID <= 0 || st.PID == os.Getpid() {
		return st, false
	}
	p, err := os.FindProcess(st.PID)
	if err != nil {
		return st, false
	}
	return st, p.Signal(syscall.Signal(0)) == nil
}

// portFree reports whether port on 127.0.0.1 can be listened on.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
