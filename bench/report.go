package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of RPC or Events. Its JSON form is what
// `switchboard bench … -o json` prints.
type Report struct {
	// Kind is "rpc" or "events".
	Kind    string  `json:"kind"`
	Machine Machine `json:"machine"`
	// Broker is the server's product: "nats-server" or "RabbitMQ".
	Broker string `json:"broker"`
	// RawClient is the raw client Switchboard is compared with: "nats.go"
	// or "amqp091-go".
	RawClient string `json:"raw_client"`
	// Server says which server both sides used: "embedded nats-server …
	// (temporary directory)" or the external URL (password redacted).
	Server string `json:"server"`
	// ServerVersion is the broker's version, ClientVersion the raw
	// client's.
	ServerVersion string `json:"server_version"`
	ClientVersion string `json:"client_version"`
	// SyncPolicy says when the broker writes to disk before confirming: the
	// JetStream sync policy ("always", an interval such as "2m0s", or
	// "unknown (external server)"), or for RabbitMQ what a confirmation
	// means for its queues.
	SyncPolicy string `json:"sync_policy"`
	// Rounds is how many alternating Switchboard/raw rounds each case ran.
	Rounds int `json:"rounds"`
	// Budget is the performance budget the ratios are held to.
	Budget Budget `json:"budget"`
	Cases  []Case `json:"cases"`
	// WithinBudget is true when every case is.
	WithinBudget bool `json:"within_budget"`
	// Observability compares, for RPC on NATS, the endpoint as app.Run runs
	// it (tracing at the production default sampling, metrics, health
	// checks, traffic counters, protections) against the same endpoint with
	// the same protections and no observability ("bare"), in alternating
	// rounds: in these cases Switchboard is the observed side and Raw the
	// bare one. They are held to the same budget, reported apart from the
	// comparison with the raw client (ObservabilityWithinBudget).
	Observability []Case `json:"observability,omitempty"`
	// ObservabilityRounds is how many alternating rounds those cases ran.
	ObservabilityRounds int `json:"observability_rounds,omitempty"`
	// ObservabilityWithinBudget is true when every Observability case is.
	ObservabilityWithinBudget bool `json:"observability_within_budget,omitempty"`
	// SameFeatures compares, for RPC on RabbitMQ, the same Switchboard side
	// against raw amqp091-go doing on the broker what the driver does
	// (topic exchange, mandatory requests with an expiration, a shared
	// queue with manual acks and prefetch): in these cases Raw is that side.
	// It separates what Switchboard's own code costs from what its AMQP
	// features cost the broker. They are judged against the same budget,
	// for information: WithinBudget is the verdict, against the leanest raw.
	SameFeatures []Case `json:"same_features,omitempty"`
	// SameFeaturesWithinBudget is true when every SameFeatures case is.
	SameFeaturesWithinBudget bool `json:"same_features_within_budget,omitempty"`
	// Skipped lists what was not measured, and why.
	Skipped []string `json:"skipped,omitempty"`
	// Notes say what is compared with what.
	Notes   []string  `json:"notes"`
	Started time.Time `json:"started"`
	Elapsed string    `json:"elapsed"`
}

// Budget is the performance budget: Switchboard/raw ratios.
type Budget struct {
	MaxP50Ratio        float64 `json:"max_p50_ratio"`
	MinThroughputRatio float64 `json:"min_throughput_ratio"`
}

// Machine describes where the benchmark ran.
type Machine struct {
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	CPUModel   string `json:"cpu_model"`
}

// Case is one measured case: the same work done by Switchboard and by the
// raw client.
type Case struct {
	// Name identifies the case, e.g. "rpc_sequential_tcp",
	// "rpc_32_callers_inproc", "events_publish_consume".
	Name string `json:"name"`
	// What says what is measured.
	What string `json:"what"`
	// Connection is the connection type both sides used.
	Connection string `json:"connection"`
	// SyncPolicy is the JetStream sync policy (events cases).
	SyncPolicy  string  `json:"sync_policy,omitempty"`
	Switchboard Figures `json:"switchboard"`
	Raw         Figures `json:"raw"`
	// P50Ratio is Switchboard/raw median latency (switchboard.p50_us /
	// raw.p50_us). ≤ MaxP50Ratio is within budget.
	P50Ratio float64 `json:"p50_ratio"`
	// ThroughputRatio is Switchboard/raw throughput
	// (switchboard.throughput_per_s / raw.throughput_per_s).
	// ≥ MinThroughputRatio is within budget.
	ThroughputRatio float64 `json:"throughput_ratio"`
	// WithinBudget is true when both ratios are within budget.
	WithinBudget bool `json:"within_budget"`
	// EnvelopeOverheadBytes is how many more header bytes per operation
	// Switchboard puts on the wire than raw (request plus reply for RPC).
	EnvelopeOverheadBytes int `json:"envelope_overhead_bytes"`
}

// Figures are one side's medians over the rounds.
type Figures struct {
	// Ops is the number of operations measured, over all rounds.
	Ops int `json:"ops"`
	// P50US, P99US and MeanUS are latencies in microseconds: of a call for
	// RPC, of a confirmed publish for events.
	P50US  float64 `json:"p50_us"`
	P99US  float64 `json:"p99_us"`
	MeanUS float64 `json:"mean_us"`
	// ThroughputPerS is operations per second: calls for RPC, messages
	// published, consumed and acknowledged for events.
	ThroughputPerS float64 `json:"throughput_per_s"`
	// AllocsPerOp and BytesPerOp are heap allocations per operation in the
	// whole process (caller, responder or consumer, and the embedded server
	// when there is one: the same for both sides).
	AllocsPerOp float64 `json:"allocs_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	// CPUUSPerOp is the process's CPU time (user and system) per operation
	// in microseconds, over the same scope as the allocations. Less
	// sensitive to other load on the machine than latency; 0 where the
	// platform does not report it.
	CPUUSPerOp float64 `json:"cpu_us_per_op"`
	// HeaderBytes is the size of the request's (or event's) headers as the
	// broker's protocol puts them on the wire. NATS: "NATS/1.0\r\n",
	// "Key: Value\r\n" each, and a closing "\r\n"; 0 when there are none.
	// AMQP: the basic properties of the content header frame (property
	// flags, the headers table, and every property set, such as
	// correlation_id, reply_to, expiration, message_id, delivery_mode),
	// as the publisher sent them.
	HeaderBytes int `json:"header_bytes"`
	// ReplyHeaderBytes is the same for the reply (RPC only).
	ReplyHeaderBytes int `json:"reply_header_bytes"`
	// BodyBytes is the size of the request (or event) body.
	BodyBytes int `json:"body_bytes"`
}

func (c *Case) judge() {
	c.WithinBudget = c.P50Ratio <= MaxP50Ratio && c.ThroughputRatio >= MinThroughputRatio
}

func (r *Report) finish(start time.Time) {
	r.WithinBudget = len(r.Cases) > 0
	for i := range r.Cases {
		r.Cases[i].judge()
		if !r.Cases[i].WithinBudget {
			r.WithinBudget = false
		}
	}
	r.ObservabilityWithinBudget = judgeAll(r.Observability)
	r.SameFeaturesWithinBudget = judgeAll(r.SameFeatures)
	r.Elapsed = time.Since(start).Round(time.Millisecond).String()
}

// judgeAll judges every case and reports whether there are some and all
// are within budget.
func judgeAll(cases []Case) bool {
	within := len(cases) > 0
	for i := range cases {
		cases[i].judge()
		within = within && cases[i].WithinBudget
	}
	return within
}

// ObservabilityVerdict says whether observability stays within budget,
// naming the worst ratio; "" when it was not measured.
func (r *Report) ObservabilityVerdict() string {
	return tableVerdict("observability", r.Observability, r.ObservabilityWithinBudget, "bare")
}

// SameFeaturesVerdict says whether Switchboard stays within budget of raw
// amqp091-go with the driver's AMQP features, naming the worst ratio; ""
// when it was not measured.
func (r *Report) SameFeaturesVerdict() string {
	return tableVerdict("against raw with the same AMQP features (for information)", r.SameFeatures, r.SameFeaturesWithinBudget, "raw+")
}

// tableVerdict is the verdict line of a table of cases compared with other.
func tableVerdict(label string, cases []Case, within bool, other string) string {
	if len(cases) == 0 {
		return ""
	}
	worst, what := 0.0, ""
	for _, c := range cases {
		if d := (c.P50Ratio - 1) * 100; d > worst {
			worst, what = d, fmt.Sprintf("%s: p50 latency %.1f%% above %s", c.Name, d, other)
		}
		if d := (1 - c.ThroughputRatio) * 100; d > worst {
			worst, what = d, fmt.Sprintf("%s: throughput %.1f%% below %s", c.Name, d, other)
		}
	}
	if within {
		if what == "" {
			return label + " WITHIN BUDGET: no case slower than " + other
		}
		return label + " WITHIN BUDGET (worst: " + what + ")"
	}
	return label + " OVER BUDGET (worst: " + what + "; budget 10%)"
}

// Excess describes how far one case is over budget.
type Excess struct {
	Case string
	// Metric is "p50" or "throughput".
	Metric string
	// Ratio is the measured Switchboard/raw ratio.
	Ratio float64
	// Over is how many percentage points beyond the budget: for p50, ratio
	// 1.25 against 1.10 is 15; for throughput, 0.80 against 0.90 is 10.
	Over float64
}

// OverBudget lists every ratio beyond budget, worst first.
func (r *Report) OverBudget() []Excess {
	var out []Excess
	for _, c := range r.Cases {
		if c.P50Ratio > MaxP50Ratio {
			out = append(out, Excess{c.Name, "p50", c.P50Ratio, (c.P50Ratio - MaxP50Ratio) * 100})
		}
		if c.ThroughputRatio < MinThroughputRatio {
			out = append(out, Excess{c.Name, "throughput", c.ThroughputRatio, (MinThroughputRatio - c.ThroughputRatio) * 100})
		}
	}
	for i := 1; i < len(out); i++ { // few entries: insertion sort, worst first
		for j := i; j > 0 && out[j].Over > out[j-1].Over; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// String renders the excess for a summary line.
func (e Excess) String() string {
	if e.Metric == "p50" {
		return fmt.Sprintf("%s: p50 latency %.1f%% above raw (budget 10%%)", e.Case, (e.Ratio-1)*100)
	}
	return fmt.Sprintf("%s: throughput %.1f%% below raw (budget 10%%)", e.Case, (1-e.Ratio)*100)
}

// Verdict is the report's last line: within budget, or "OVER BUDGET by X%"
// naming the worst case.
func (r *Report) Verdict() string {
	over := r.OverBudget()
	if len(over) == 0 {
		if len(r.Cases) == 0 {
			return "no cases measured"
		}
		return fmt.Sprintf("WITHIN BUDGET: every case has p50 ≤ %.2f× and throughput ≥ %.2f× raw", MaxP50Ratio, MinThroughputRatio)
	}
	return fmt.Sprintf("OVER BUDGET by %.1f%% (worst: %s; %d ratio(s) over budget)", over[0].Over, over[0], len(over))
}

// WriteText renders the report as an aligned table.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	title := "RPC request/reply"
	if r.Kind == "events" {
		title = "durable events (publish with broker confirmation, consume with acks)"
	}
	fmt.Fprintf(bw, "Switchboard vs raw %s %s: same run, same server\n", r.RawClient, title)
	fmt.Fprintf(bw, "machine:  %s/%s, %d CPUs (GOMAXPROCS %d), %s, %s\n", r.Machine.GOOS, r.Machine.GOARCH,
		r.Machine.NumCPU, r.Machine.GOMAXPROCS, r.Machine.CPUModel, r.Machine.GoVersion)
	fmt.Fprintf(bw, "server:   %s (%s %s, %s %s)\n", r.Server, r.Broker, r.ServerVersion, r.RawClient, r.ClientVersion)
	if r.Broker == brokerNATS {
		fmt.Fprintf(bw, "sync:     JetStream sync policy %s\n", r.SyncPolicy)
	} else {
		fmt.Fprintf(bw, "sync:     %s\n", r.SyncPolicy)
	}
	fmt.Fprintf(bw, "method:   %d alternating rounds per case (Switchboard, raw, raw, Switchboard, …) after a warm-up; figures are medians over the rounds, ratios Switchboard/raw of those\n", r.Rounds)
	fmt.Fprintln(bw)
	if err := writeCases(bw, r.Cases, "raw"); err != nil {
		return err
	}
	fmt.Fprintln(bw)
	if len(r.Cases) > 0 { // the same on every case: the same messages
		c := r.Cases[0]
		if r.Kind == "rpc" {
			fmt.Fprintf(bw, "wire:     body %d B request (same both sides); headers Switchboard %d B request + %d B reply, raw %d B + %d B: envelope overhead %d B per call\n",
				c.Switchboard.BodyBytes, c.Switchboard.HeaderBytes, c.Switchboard.ReplyHeaderBytes, c.Raw.HeaderBytes, c.Raw.ReplyHeaderBytes, c.EnvelopeOverheadBytes)
		} else {
			fmt.Fprintf(bw, "wire:     body %d B (same both sides); headers Switchboard %d B, raw %d B: envelope overhead %d B per event\n",
				c.Switchboard.BodyBytes, c.Switchboard.HeaderBytes, c.Raw.HeaderBytes, c.EnvelopeOverheadBytes)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(bw, "note:     %s\n", n)
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(bw, "skipped:  %s\n", s)
	}
	if len(r.Observability) > 0 {
		fmt.Fprintln(bw)
		fmt.Fprintf(bw, "observability: the endpoint as app.Run runs it (\"obs\") against the same endpoint with its protections and no observability (\"bare\"), %d alternating rounds, budget 10%%\n", r.ObservabilityRounds)
		fmt.Fprintln(bw)
		if err := writeCases(bw, r.Observability, "bare"); err != nil {
			return err
		}
		fmt.Fprintln(bw)
	}
	if len(r.SameFeatures) > 0 {
		fmt.Fprintln(bw)
		fmt.Fprintln(bw, "same AMQP features: Switchboard (\"sb\") against raw amqp091-go doing on the broker what the driver does (\"raw+\": topic exchange, mandatory requests with an expiration, a shared queue with manual acks and prefetch): what Switchboard's own code costs; for information, the verdict is against the leanest raw")
		fmt.Fprintln(bw)
		if err := writeCases(bw, r.SameFeatures, "raw+"); err != nil {
			return err
		}
		fmt.Fprintln(bw)
	}
	fmt.Fprintf(bw, "elapsed:  %s\n", r.Elapsed)
	for _, v := range []string{r.ObservabilityVerdict(), r.SameFeaturesVerdict()} {
		if v != "" {
			fmt.Fprintln(bw, v)
		}
	}
	fmt.Fprintln(bw, r.Verdict())
	return bw.Flush()
}

// writeCases writes cases as an aligned table, the compared side's columns
// named other ("raw", or "bare" for observability).
func writeCases(bw io.Writer, cases []Case, other string) error {
	sbName := "sb"
	if other == "bare" {
		sbName = "obs"
	}
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
	// Right-aligned numbers; names padded so that they read left-aligned.
	nameW := len("case")
	for _, c := range cases {
		nameW = max(nameW, len(c.Name))
	}
	fmt.Fprintf(tw, strings.NewReplacer("sb", sbName, "raw", other).Replace("%-*s\t%-6s\tp50 sb\tp50 raw\tp50 ratio\tp99 sb\tp99 raw\tops/s sb\tops/s raw\ttput ratio\tcpu/op sb\tcpu/op raw\tallocs sb\tallocs raw\tbudget\t\n"), nameW, "case", "conn")
	for _, c := range cases {
		verdict := "ok"
		if !c.WithinBudget {
			verdict = "OVER"
		}
		fmt.Fprintf(tw, "%-*s\t%-6s\t%s\t%s\t%.3f\t%s\t%s\t%.0f\t%.0f\t%.3f\t%s\t%s\t%.0f\t%.0f\t%s\t\n",
			nameW, c.Name, c.Connection, us(c.Switchboard.P50US), us(c.Raw.P50US), c.P50Ratio,
			us(c.Switchboard.P99US), us(c.Raw.P99US), c.Switchboard.ThroughputPerS, c.Raw.ThroughputPerS,
			c.ThroughputRatio, us(c.Switchboard.CPUUSPerOp), us(c.Raw.CPUUSPerOp), c.Switchboard.AllocsPerOp, c.Raw.AllocsPerOp, verdict)
	}
	return tw.Flush()
}

func us(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1fms", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0fµs", v)
	}
	return fmt.Sprintf("%.1fµs", v)
}

// Text is WriteText into a string.
func (r *Report) Text() string {
	var b strings.Builder
	_ = r.WriteText(&b)
	return b.String()
}

// Brokers and raw clients, for Report.Broker and Report.RawClient.
const (
	brokerNATS    = "nats-server"
	brokerAMQP    = "RabbitMQ"
	rawClientNATS = "nats.go"
	rawClientAMQP = "amqp091-go"
)

// newReport starts the report of a run on a broker.
func newReport(kind string, cfg *Config, broker, server, serverVersion, rawClient, clientVersion, syncPolicy string) Report {
	return Report{Kind: kind, Machine: machine(), Broker: broker, RawClient: rawClient, Server: server,
		ServerVersion: serverVersion, ClientVersion: clientVersion, SyncPolicy: syncPolicy, Rounds: cfg.Rounds,
		Budget: Budget{MaxP50Ratio: MaxP50Ratio, MinThroughputRatio: MinThroughputRatio}, Started: time.Now()}
}

func machine() Machine {
	return Machine{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, NumCPU: runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), CPUModel: cpuModel()}
}

// cpuModel reads the CPU model name from /proc/cpuinfo where there is one.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
