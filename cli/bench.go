package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-dev/switchboard/bench"
	"github.com/switchboard-dev/switchboard/bus"
)

// BenchOptions are the options of `switchboard bench rpc` and
// `switchboard bench events`.
type BenchOptions struct {
	*GlobalOptions
	// Kind is "rpc" or "events".
	Kind string
	// Duration is the measuring time per side of each RPC throughput case.
	Duration time.Duration
	// Requests is the number of sequential requests per side (RPC).
	Requests int
	// Callers is the number of concurrent callers (RPC).
	Callers int
	// Messages is the number of events per side of each case (events).
	Messages int
	// Publishers is the number of concurrent publishers (events).
	Publishers int
	// Sync is the embedded server's JetStream sync policy (events).
	Sync string
	// Rounds is the number of alternating rounds per case.
	Rounds int
	// InProcessOnly and TCPOnly restrict the connection types.
	InProcessOnly, TCPOnly bool
	// FailOverBudget makes an over-budget result exit with code 1.
	FailOverBudget bool

	cfg bench.Config
}

const benchLong = `Measure Switchboard against the raw client of the same broker doing the
same work, in the same run and on the same server, and compare them with
the performance budget: Switchboard within 10% of raw (p50 latency ratio
≤ 1.10, throughput ratio ≥ 0.90).

By default the benchmark starts its own embedded NATS server with
JetStream, its data in a temporary directory (not the 'switchboard dev'
platform, and $SWITCHBOARD_BUS is not used: a benchmark wants a quiet
server), and compares with raw nats.go. --bus nats://HOST:PORT runs both
sides on an external NATS server instead, over TCP. --bus
amqp://USER:PASS@HOST:PORT/[VHOST] (amqps:// for TLS) runs both on one
RabbitMQ node, over TCP, and compares with raw amqp091-go; the URL names
the broker only (no driver parameters: the benchmark uses exchanges and
queues of its own, sbbench.* and sbbenchraw.*, and deletes them at the end).

The two sides run in alternating rounds after a warm-up and the report
gives medians, so that other load on the machine affects both alike. The
last line says WITHIN BUDGET or OVER BUDGET by how much; the command exits
0 either way unless --fail-over-budget is given (then 1 when over budget).
With -o json it prints the whole report; each case has the keys
switchboard and raw (p50_us, p99_us, throughput_per_s, allocs_per_op,
cpu_us_per_op, header_bytes, …), p50_ratio, throughput_ratio and
within_budget.`

func newBenchCmd(g *GlobalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark Switchboard against the raw NATS or RabbitMQ client",
		Long:  benchLong,
		Example: `  switchboard bench rpc
  switchboard bench events
  switchboard bench rpc --bus amqp://guest:guest@127.0.0.1:5672/
  switchboard bench rpc -o json | jq '.cases[] | {name, p50_ratio, throughput_ratio}'`,
		Args: argsBetween(0, 0, "a subcommand: rpc or events"),
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newBenchRPCCmd(g), newBenchEventsCmd(g))
	return cmd
}

func newBenchRPCCmd(g *GlobalOptions) *cobra.Command {
	o := &BenchOptions{GlobalOptions: g, Kind: "rpc"}
	cmd := &cobra.Command{
		Use:   "rpc",
		Short: "Benchmark request/reply: a typed endpoint against raw nats.go or amqp091-go request/reply",
		Long: benchLong + `

bench rpc compares a typed endpoint (Endpoint.Handle and Endpoint.Call with
JSON structs of about 150 bytes) with a nats.go queue subscriber that
decodes the same JSON, builds the same reply and encodes it, called with
nc.RequestMsg. Both sides do the JSON work, so the ratio is what
Switchboard adds: envelope, headers, dispatch, middleware. Cases, for each
connection type (TCP loopback, and the in-process connection services
co-located with the embedded server use):

  rpc_sequential_CONN   latency of --requests sequential calls (p50, p99, mean)
  rpc_1_caller_CONN     throughput of one caller for --duration
  rpc_N_callers_CONN    throughput of --callers concurrent callers for --duration

On NATS, rpc_sequential_observed_CONN and rpc_N_callers_observed_CONN run
the Switchboard side as app.Run runs services (tracing at the production
default sampling, metrics, health checks, the default protections), and
a second table, "observability", measures that endpoint against the same
endpoint with the same default protections but no observability, in
alternating rounds of their own: what health, metrics and tracing cost,
held to the same 10% budget and given its own verdict line.

With --bus amqp://… the raw side is amqp091-go: a responder consuming a
queue (without acks) that decodes, quotes, encodes and replies by direct
reply-to (amq.rabbitmq.reply-to) with the correlation id, and callers that
publish with reply_to and a correlation id, one channel each. The cases
are those of TCP; in-process connections do not apply to RabbitMQ and the
report says so. A second table, "same AMQP features", runs the same
Switchboard side against raw amqp091-go doing on the broker what the
driver does (a topic exchange, mandatory requests with an expiration, a
shared queue with manual acks and prefetch): what Switchboard's own code
costs apart from its AMQP features, for information (the verdict is the
one against the leanest raw).`,
		Example: `  switchboard bench rpc
  switchboard bench rpc --duration 10s --requests 20000
  switchboard bench rpc --tcp-only --bus nats://127.0.0.1:4222
  switchboard bench rpc --bus amqp://guest:guest@127.0.0.1:5672/
  switchboard bench rpc --inprocess-only -o json > rpc.json
  switchboard bench rpc --fail-over-budget || echo "over budget"`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.Duration, "duration", 3*time.Second, "measuring time per side of each throughput case, spread over the rounds")
	f.IntVar(&o.Requests, "requests", 5000, "sequential requests per side in the latency case")
	f.IntVar(&o.Callers, "callers", 32, "concurrent callers in the concurrent throughput case")
	f.BoolVar(&o.InProcessOnly, "inprocess-only", false, "measure only the in-process connection (embedded server only)")
	f.BoolVar(&o.TCPOnly, "tcp-only", false, "measure only TCP connections")
	o.commonFlags(cmd)
	return cmd
}

func newBenchEventsCmd(g *GlobalOptions) *cobra.Command {
	o := &BenchOptions{GlobalOptions: g, Kind: "events"}
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Benchmark durable events: Topic publish and subscribe against raw JetStream or RabbitMQ",
		Long: benchLong + `

bench events compares Topic.Publish (which returns once the broker stored
the event) and a consumer-group subscription (ack after the handler) with
JetStream js.Publish awaiting its PubAck and a durable pull consumer with
explicit acks. The raw stream and consumer copy the configuration of
Switchboard's, and both run on one server with one sync policy: --sync
always (fsync before every acknowledgement, what 'switchboard dev' uses;
the default) or an interval such as 2m (nats-server's default). Cases:

  events_publish_consume               --messages events from one publisher, until all are consumed and acked
  events_publish_consume_N_publishers  the same from --publishers concurrent publishers

Throughput counts events published, consumed and acknowledged per second;
p50 and p99 are the latency of one confirmed publish. The connection is
in-process on the embedded server (as 'dev' runs services), TCP with --bus
or --tcp-only.

With --bus amqp://… both sides publish persistent messages with publisher
confirms into a quorum queue and consume it with manual acks after the
handler and the same prefetch: Switchboard through the amqpbus driver, raw
with amqp091-go. --sync does not apply (the broker fsyncs a quorum queue's
log before it confirms).`,
		Example: `  switchboard bench events
  switchboard bench events --messages 10000 --sync 2m
  switchboard bench events --bus nats://127.0.0.1:4222 -o json
  switchboard bench events --bus amqp://guest:guest@127.0.0.1:5672/`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Messages, "messages", 5000, "events per side of each case, spread over the rounds")
	f.IntVar(&o.Publishers, "publishers", 4, "concurrent publishers of the second case (1 skips it)")
	f.StringVar(&o.Sync, "sync", "always", `embedded server's JetStream sync policy: "always" or an interval such as 2m`)
	f.BoolVar(&o.InProcessOnly, "inprocess-only", false, "use the in-process connection (the default on the embedded server)")
	f.BoolVar(&o.TCPOnly, "tcp-only", false, "use TCP connections")
	o.commonFlags(cmd)
	return cmd
}

func (o *BenchOptions) commonFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.IntVar(&o.Rounds, "rounds", 5, "alternating Switchboard/raw rounds per case")
	f.BoolVar(&o.FailOverBudget, "fail-over-budget", false, "exit 1 when Switchboard is over the budget")
}

// Complete builds the benchmark configuration from the flags. Only an
// explicit --bus selects an external server.
func (o *BenchOptions) Complete() error {
	o.cfg = bench.Config{BusURL: o.BusURL, Requests: o.Requests, Duration: o.Duration, Callers: o.Callers,
		Messages: o.Messages, Publishers: o.Publishers, Rounds: o.Rounds}
	if o.Kind == "events" && o.BusURL == "" {
		o.cfg.Sync = o.Sync
	}
	switch {
	case o.InProcessOnly:
		o.cfg.Connections = []bench.Connection{bench.InProcess}
	case o.TCPOnly:
		o.cfg.Connections = []bench.Connection{bench.TCP}
	}
	if o.Publishers <= 1 {
		o.cfg.Publishers = -1
	}
	if !o.JSON() {
		errOut := o.IO.ErrOut
		o.cfg.Progress = func(format string, args ...any) { fmt.Fprintf(errOut, format+"\n", args...) }
	}
	return nil
}

// Validate rejects flags that cannot work together or be measured.
func (o *BenchOptions) Validate() error {
	if o.InProcessOnly && o.TCPOnly {
		return usageErrorf("--inprocess-only and --tcp-only exclude each other")
	}
	if o.BusURL != "" {
		if err := bench.CheckBusURL(o.BusURL); err != nil {
			return usageErrorf("invalid --bus for bench: %s (or no --bus for an embedded NATS server)", strings.TrimPrefix(err.Error(), "bench: "))
		}
		if o.InProcessOnly {
			return usageErrorf("--inprocess-only needs the embedded server: an external server (--bus) is reached over TCP")
		}
	}
	if o.Kind == "events" && o.BusURL != "" && o.Sync != "always" {
		return usageErrorf("--sync sets the embedded server's policy; an external server (--bus) keeps its own")
	}
	if o.Kind == "events" && o.Sync != "always" {
		if d, err := time.ParseDuration(o.Sync); err != nil || d <= 0 {
			return usageErrorf(`invalid --sync %q: want "always" or a positive interval such as 1s or 2m`, o.Sync)
		}
	}
	if o.Rounds < 1 {
		return usageErrorf("invalid --rounds %d: want 1 or more", o.Rounds)
	}
	switch o.Kind {
	case "rpc":
		if o.Duration < 10*time.Millisecond {
			return usageErrorf("invalid --duration %s: want at least 10ms, e.g. 5s", o.Duration)
		}
		if o.Requests < o.Rounds || o.Callers < 1 {
			return usageErrorf("want --requests ≥ --rounds (%d) and --callers ≥ 1", o.Rounds)
		}
	case "events":
		if o.Messages < o.Rounds*max(o.Publishers, 1) {
			return usageErrorf("invalid --messages %d: want at least --rounds × --publishers (%d)", o.Messages, o.Rounds*max(o.Publishers, 1))
		}
	}
	return nil
}

// Run runs the benchmark and prints the report.
func (o *BenchOptions) Run(ctx context.Context) error {
	run := bench.RPC
	if o.Kind == "events" {
		run = bench.Events
	}
	rep, err := run(ctx, o.cfg)
	if err != nil {
		return o.benchError(ctx, err)
	}
	if o.JSON() {
		if err := writeJSON(o.IO.Out, rep); err != nil {
			return err
		}
	} else if err := rep.WriteText(o.IO.Out); err != nil {
		return err
	}
	if o.FailOverBudget && !rep.WithinBudget {
		return &ExitError{Exit: ExitFailed, Code: bus.FailedPrecondition.String(),
			Message: "Switchboard is over the performance budget: " + rep.Verdict(),
			Hint:    "see docs/performance.md for where the time goes; run again on a quieter machine to rule out noise"}
	}
	return nil
}

func (o *BenchOptions) benchError(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return &ExitError{Exit: ExitFailed, Code: bus.Canceled.String(), Message: "benchmark interrupted", Err: err}
	case errors.Is(err, bench.ErrUnavailable):
		hint := "the embedded server could not start: check the temporary directory's free space"
		switch {
		case strings.HasPrefix(o.BusURL, "amqp"):
			hint = "check that RabbitMQ runs at " + redacted(o.BusURL) + " and that the user may configure, read and write there"
		case o.BusURL != "":
			hint = "check that a NATS server with JetStream (-js) runs at " + redacted(o.BusURL)
		}
		return &ExitError{Exit: ExitUnavailable, Code: bus.Unavailable.String(), Message: strings.TrimPrefix(err.Error(), "bench: "), Hint: hint, Err: err}
	}
	return &ExitError{Exit: ExitFailed, Code: bus.ErrorCode(err).String(), Message: "benchmark failed: " + strings.TrimPrefix(err.Error(), "bench: "), Err: err}
}

// redacted is rawURL with its password hidden.
func redacted(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		return u.Redacted()
	}
	return rawURL
}
