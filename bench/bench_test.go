package bench

import (
	"context"
	"encoding/json"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// tiny is a configuration that exercises every case in a second or two.
func tiny() Config {
	return Config{Requests: 40, Duration: 100 * time.Millisecond, Callers: 4, Messages: 40, Publishers: 2,
		Rounds: 2, Warmup: 20 * time.Millisecond}
}

// TestReportSmoke runs both benchmarks with tiny counts and checks that the
// reports are complete. It asserts nothing about timing.
func TestReportSmoke(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	rpc, err := RPC(ctx, tiny())
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rpc, "rpc", []string{
		"rpc_sequential_tcp", "rpc_1_caller_tcp", "rpc_4_callers_tcp",
		"rpc_sequential_observed_tcp", "rpc_4_callers_observed_tcp",
		"rpc_sequential_inproc", "rpc_1_caller_inproc", "rpc_4_callers_inproc",
		"rpc_sequential_observed_inproc", "rpc_4_callers_observed_inproc",
	})
	// Observability is measured against the same endpoint with the same
	// protections and no observability, one case
	// per observed case, judged apart from the comparison with raw.
	var obs []string
	for _, c := range rpc.Observability {
		obs = append(obs, c.Name)
		if c.P50Ratio <= 0 || c.ThroughputRatio <= 0 || c.Switchboard.AllocsPerOp <= c.Raw.AllocsPerOp {
			t.Errorf("%s: ratios %v/%v, allocations observed %v vs bare %v: want measured figures, observed allocating more",
				c.Name, c.P50Ratio, c.ThroughputRatio, c.Switchboard.AllocsPerOp, c.Raw.AllocsPerOp)
		}
	}
	want := []string{"rpc_sequential_observability_tcp", "rpc_4_callers_observability_tcp",
		"rpc_sequential_observability_inproc", "rpc_4_callers_observability_inproc"}
	if !slices.Equal(obs, want) {
		t.Errorf("observability cases %q, want %q", obs, want)
	}
	var text strings.Builder
	if err := rpc.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if v := rpc.ObservabilityVerdict(); !strings.HasPrefix(v, "observability ") || !strings.Contains(text.String(), v) ||
		!strings.Contains(text.String(), "p50 obs") || !strings.Contains(text.String(), "p50 bare") {
		t.Errorf("observability verdict %q, or its table, missing from the text report:\n%s", v, text.String())
	}

	ev, err := Events(ctx, tiny())
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, ev, "events", []string{"events_publish_consume", "events_publish_consume_2_publishers"})
	if !strings.HasPrefix(ev.SyncPolicy, "always") {
		t.Errorf("sync policy %q, want always by default", ev.SyncPolicy)
	}
	for _, c := range ev.Cases {
		if c.SyncPolicy == "" || c.Connection != string(InProcess) {
			t.Errorf("%s: sync policy %q, connection %q: want a policy and inproc", c.Name, c.SyncPolicy, c.Connection)
		}
	}
}

func checkReport(t *testing.T, r Report, kind string, names []string) {
	t.Helper()
	if r.Kind != kind || r.Machine.NumCPU == 0 || r.Machine.GoVersion == "" || r.Machine.CPUModel == "" ||
		r.ServerVersion == "" || r.SyncPolicy == "" || r.Rounds != 2 {
		t.Errorf("%s report header incomplete: %+v", kind, r)
	}
	var got []string
	for _, c := range r.Cases {
		got = append(got, c.Name)
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s cases %v, want %v", kind, got, names)
	}

	// Every key a script reads is in the JSON, with a figure.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		WithinBudget *bool             `json:"within_budget"`
		Cases        []map[string]any  `json:"cases"`
		Machine      map[string]any    `json:"machine"`
		Budget       map[string]any    `json:"budget"`
		Rest         map[string]string `json:"-"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.WithinBudget == nil || len(doc.Machine) < 6 || len(doc.Budget) != 2 {
		t.Errorf("%s: JSON lacks within_budget, machine or budget: %s", kind, b)
	}
	for _, c := range doc.Cases {
		name := c["name"]
		for _, k := range []string{"p50_ratio", "throughput_ratio"} {
			if v, ok := c[k].(float64); !ok || v <= 0 {
				t.Errorf("%s: %s = %v, want > 0", name, k, c[k])
			}
		}
		if _, ok := c["within_budget"].(bool); !ok {
			t.Errorf("%s: within_budget missing", name)
		}
		if v, ok := c["envelope_overhead_bytes"].(float64); !ok || v <= 0 {
			t.Errorf("%s: envelope_overhead_bytes = %v, want > 0", name, c["envelope_overhead_bytes"])
		}
		for _, sd := range []string{"switchboard", "raw"} {
			f, ok := c[sd].(map[string]any)
			if !ok {
				t.Errorf("%s: no %s figures", name, sd)
				continue
			}
			for _, k := range []string{"ops", "p50_us", "p99_us", "mean_us", "throughput_per_s", "allocs_per_op", "bytes_per_op", "body_bytes"} {
				if v, ok := f[k].(float64); !ok || v <= 0 {
					t.Errorf("%s: %s.%s = %v, want > 0", name, sd, k, f[k])
				}
			}
			if v, ok := f["cpu_us_per_op"].(float64); !ok || v < 0 || runtime.GOOS == "linux" && v == 0 {
				t.Errorf("%s: %s.cpu_us_per_op = %v", name, sd, f["cpu_us_per_op"])
			}
			for _, k := range []string{"header_bytes", "reply_header_bytes"} {
				if _, ok := f[k].(float64); !ok {
					t.Errorf("%s: %s.%s missing", name, sd, k)
				}
			}
		}
		sb, raw := c["switchboard"].(map[string]any), c["raw"].(map[string]any)
		if sb["header_bytes"].(float64) <= raw["header_bytes"].(float64) || sb["body_bytes"] != raw["body_bytes"] {
			t.Errorf("%s: headers %v vs %v, bodies %v vs %v: want Switchboard's headers larger and the same body",
				name, sb["header_bytes"], raw["header_bytes"], sb["body_bytes"], raw["body_bytes"])
		}
	}

	text := r.Text()
	for _, want := range append(names, "p50 ratio", "tput ratio", r.Machine.CPUModel, "sync", "BUDGET") {
		if !strings.Contains(text, want) {
			t.Errorf("%s text report lacks %q:\n%s", kind, want, text)
		}
	}
	t.Logf("\n%s", text)
}

func TestVerdict(t *testing.T) {
	r := Report{Cases: []Case{
		{Name: "a", P50Ratio: 1.05, ThroughputRatio: 0.95},
		{Name: "b", P50Ratio: 1.30, ThroughputRatio: 0.85},
	}}
	r.finish(time.Now())
	if r.WithinBudget || r.Cases[0].WithinBudget != true || r.Cases[1].WithinBudget {
		t.Fatalf("budget flags wrong: %+v", r)
	}
	over := r.OverBudget()
	if len(over) != 2 || over[0].Metric != "p50" || int(over[0].Over+0.5) != 20 || int(over[1].Over+0.5) != 5 {
		t.Fatalf("OverBudget = %+v", over)
	}
	if v := r.Verdict(); !strings.HasPrefix(v, "OVER BUDGET by 20.0%") || !strings.Contains(v, "b: p50 latency 30.0% above raw") {
		t.Errorf("verdict %q", v)
	}
	r.Cases = r.Cases[:1]
	r.finish(time.Now())
	if !r.WithinBudget || !strings.HasPrefix(r.Verdict(), "WITHIN BUDGET") {
		t.Errorf("within budget: %v, %q", r.WithinBudget, r.Verdict())
	}
}

// benchEnv starts an embedded server for a benchmark.
func benchEnv(b *testing.B) (context.Context, *env) { return benchEnvWith(b, Config{}) }

// benchEnvWith starts an embedded server configured as cfg (its
// defaults filled in) for a benchmark.
func benchEnvWith(b *testing.B, cfg Config) (context.Context, *env) {
	b.Helper()
	ctx := context.Background()
	if err := cfg.defaults(); err != nil {
		b.Fatal(err)
	}
	e, err := newEnv(ctx, &cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.close)
	return ctx, e
}

// compare runs raw, then the extra diagnostic variants, then switchboard as
// sub-benchmarks and reports
// Switchboard's time per op as a multiple of raw's ("x-raw"), and the
// process CPU time per op of each ("cpu-ns/op": caller, responder and
// embedded server), which other load on the machine disturbs less.
func compare(b *testing.B, raw, sb callFunc, extra ...namedCall) {
	ctx := context.Background()
	var rawNs float64
	run := func(call callFunc) func(*testing.B) float64 {
		return func(b *testing.B) float64 {
			b.ReportAllocs()
			i := 0
			cpu := processCPU()
			for b.Loop() {
				if err := call(ctx, i); err != nil {
					b.Fatal(err)
				}
				i++
			}
			if cpu := processCPU() - cpu; cpu > 0 {
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(max(b.N, 1)), "cpu-ns/op")
			}
			return float64(b.Elapsed().Nanoseconds()) / float64(max(b.N, 1))
		}
	}
	b.Run("raw", func(b *testing.B) { rawNs = run(raw)(b) })
	for _, x := range extra {
		b.Run(x.name, func(b *testing.B) {
			if ns := run(x.call)(b); rawNs > 0 {
				b.ReportMetric(ns/rawNs, "x-raw")
			}
		})
	}
	b.Run("switchboard", func(b *testing.B) {
		ns := run(sb)(b)
		if rawNs > 0 {
			b.ReportMetric(ns/rawNs, "x-raw")
		}
	})
}

type namedCall struct {
	name string
	call callFunc
}

// BenchmarkRPC compares one sequential call over the in-process connection
// (as services co-located with `switchboard dev` use):
//
//	go test -run '^$' -bench RPC ./bench/
//
// raw_headers is raw nats.go carrying Switchboard's request and reply
// headers: the share of the difference that the envelope's wire format
// costs, apart from the SDK's code. protected is the endpoint with the
// default protections and observed as app.Run runs it: profile those two to
// see what observability costs.
func BenchmarkRPC(b *testing.B) { benchRPC(b, InProcess) }

// BenchmarkRPCTCP is BenchmarkRPC over TCP loopback.
func BenchmarkRPCTCP(b *testing.B) { benchRPC(b, TCP) }

func benchRPC(b *testing.B, conn Connection) {
	ctx, e := benchEnv(b)
	p, err := newRPCPair(ctx, e, conn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.close)
	compare(b, p.callRaw, p.callSwitchboard, namedCall{"raw_headers", p.callRawHeaders},
		namedCall{"protected", p.protected.callSwitchboard}, namedCall{"observed", p.observed.callSwitchboard})
}

// BenchmarkRPCParallel compares calls from 32 concurrent callers over the
// in-process connection: throughput, where CPU per call decides.
func BenchmarkRPCParallel(b *testing.B) {
	ctx, e := benchEnv(b)
	p, err := newRPCPair(ctx, e, InProcess)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.close)
	compareParallel(b, p.callRaw, p.callSwitchboard)
}

// compareParallel is compare with 32 concurrent callers.
func compareParallel(b *testing.B, raw, sb callFunc) { compareConcurrent(b, 32, raw, sb) }

// compareConcurrent is compare with n concurrent callers (at least
// GOMAXPROCS), the time per op being the elapsed time over all of them.
func compareConcurrent(b *testing.B, n int, raw, sb callFunc, extra ...namedCall) {
	ctx := context.Background()
	var rawNs float64
	run := func(call callFunc) func(*testing.B) float64 {
		return func(b *testing.B) float64 {
			b.ReportAllocs()
			b.SetParallelism(max(n/runtime.GOMAXPROCS(0), 1))
			cpu := processCPU()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if err := call(ctx, i); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
			if cpu := processCPU() - cpu; cpu > 0 {
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(max(b.N, 1)), "cpu-ns/op")
			}
			return float64(time.Since(start).Nanoseconds()) / float64(max(b.N, 1))
		}
	}
	b.Run("raw", func(b *testing.B) { rawNs = run(raw)(b) })
	for _, x := range extra {
		b.Run(x.name, func(b *testing.B) {
			if ns := run(x.call)(b); rawNs > 0 {
				b.ReportMetric(ns/rawNs, "x-raw")
			}
		})
	}
	b.Run("switchboard", func(b *testing.B) {
		if ns := run(sb)(b); rawNs > 0 {
			b.ReportMetric(ns/rawNs, "x-raw")
		}
	})
}

// BenchmarkPublish compares one confirmed durable publish (sync=always),
// with the consumers of both sides running. raw_headers is raw JetStream
// with Switchboard's headers and a fresh Nats-Msg-Id: the share of the
// difference that the CloudEvents attributes and de-duplication cost.
func BenchmarkPublish(b *testing.B) {
	p := benchEvents(b, Config{})
	compare(b, p.publishRaw, p.publishSwitchboard, namedCall{"raw_headers", p.publishRawHeaders})
}

// benchEvents sets up both event sides over in-process connections to an
// embedded server configured as cfg, with Switchboard's headers captured
// for the raw_headers variants.
func benchEvents(b *testing.B, cfg Config) *eventsPair {
	ctx, e := benchEnvWith(b, cfg)
	p, err := newEventsPair(ctx, e, InProcess)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.close)
	if _, _, err := p.wireSizes(ctx); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkPublishParallel is BenchmarkPublish with four concurrent
// publishers (as the 4-publisher case of `bench events`), on a server that
// fsyncs every 2 minutes (`--sync 2m`) so that the disk does not hide the
// clients' work. raw_cloudevents and raw_msg_id split raw_headers into
// its two parts: the CloudEvents attributes, and a fresh Nats-Msg-Id (the
// stream's de-duplication):
//
//	go test -run '^$' -bench PublishParallel -benchtime 40000x ./bench/
func BenchmarkPublishParallel(b *testing.B) {
	p := benchEvents(b, Config{Sync: "2m"})
	compareConcurrent(b, 4, p.publishRaw, p.publishSwitchboard,
		namedCall{"raw_headers", p.publishRawHeaders},
		namedCall{"raw_cloudevents", p.publishRawCloudEvents},
		namedCall{"raw_msg_id", p.publishRawMsgID})
}

func TestObservabilityVerdict(t *testing.T) {
	r := Report{Cases: []Case{{Name: "a", P50Ratio: 1.05, ThroughputRatio: 0.95}}, Observability: []Case{
		{Name: "o1", P50Ratio: 1.04, ThroughputRatio: 0.97},
		{Name: "o2", P50Ratio: 1.02, ThroughputRatio: 0.92},
	}}
	r.finish(time.Now())
	if !r.ObservabilityWithinBudget {
		t.Fatalf("observability within budget = false for %+v", r.Observability)
	}
	if v := r.ObservabilityVerdict(); v != "observability WITHIN BUDGET (worst: o2: throughput 8.0% below bare)" {
		t.Errorf("verdict %q", v)
	}
	r.Observability[0].P50Ratio = 1.17
	r.finish(time.Now())
	if r.ObservabilityWithinBudget || !r.WithinBudget {
		t.Fatalf("flags: observability %v, raw %v; want over, within (judged apart)", r.ObservabilityWithinBudget, r.WithinBudget)
	}
	if v := r.ObservabilityVerdict(); !strings.HasPrefix(v, "observability OVER BUDGET (worst: o1: p50 latency 17.0% above bare") {
		t.Errorf("verdict %q", v)
	}
	if v := (&Report{}).ObservabilityVerdict(); v != "" {
		t.Errorf("verdict without observability cases %q, want none", v)
	}
}

// TestSameFeaturesVerdict checks that the comparison with raw using the
// driver's AMQP features is judged apart from the report's verdict, both
// ways.
func TestSameFeaturesVerdict(t *testing.T) {
	r := Report{Cases: []Case{{Name: "a", P50Ratio: 1.30, ThroughputRatio: 0.70}}, SameFeatures: []Case{
		{Name: "f1", P50Ratio: 1.06, ThroughputRatio: 0.97},
		{Name: "f2", P50Ratio: 1.01, ThroughputRatio: 0.99},
	}}
	r.finish(time.Now())
	if r.WithinBudget || !r.SameFeaturesWithinBudget {
		t.Fatalf("flags: raw %v, same features %v; want over, within (judged apart)", r.WithinBudget, r.SameFeaturesWithinBudget)
	}
	if v := r.SameFeaturesVerdict(); v != "against raw with the same AMQP features (for information) WITHIN BUDGET (worst: f1: p50 latency 6.0% above raw+)" {
		t.Errorf("verdict %q", v)
	}
	if v := r.Verdict(); !strings.HasPrefix(v, "OVER BUDGET") {
		t.Errorf("the report's verdict %q: the same-features cases must not change it", v)
	}
	r.SameFeatures[1].ThroughputRatio = 0.85
	r.finish(time.Now())
	if r.SameFeaturesWithinBudget {
		t.Fatal("same features within budget with a throughput ratio of 0.85")
	}
	if v := r.SameFeaturesVerdict(); !strings.Contains(v, "OVER BUDGET (worst: f2: throughput 15.0% below raw+; budget 10%)") {
		t.Errorf("verdict %q", v)
	}
	if v := (&Report{}).SameFeaturesVerdict(); v != "" {
		t.Errorf("verdict without same-features cases %q, want none", v)
	}
}
