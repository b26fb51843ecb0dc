package bench

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/switchboard-dev/switchboard/internal/amqptest"
)

// TestAMQPReportSmoke runs both benchmarks against the machine's RabbitMQ
// with a few hundred operations per side and checks that the reports are
// complete, with both sides measured and ratios that are those of the
// figures. It asserts nothing about timing.
func TestAMQPReportSmoke(t *testing.T) {
	url := amqptest.URL(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := Config{BusURL: url, Requests: 200, Duration: 200 * time.Millisecond, Callers: 4, Messages: 200, Publishers: 2,
		Rounds: 2, Warmup: 20 * time.Millisecond}

	rpc, err := RPC(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rpc, "rpc", []string{"rpc_sequential_tcp", "rpc_1_caller_tcp", "rpc_4_callers_tcp"})
	checkAMQPReport(t, rpc)
	checkSameFeatures(t, rpc, []string{"rpc_sequential_same_features_tcp", "rpc_4_callers_same_features_tcp"})

	ev, err := Events(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, ev, "events", []string{"events_publish_consume", "events_publish_consume_2_publishers"})
	checkAMQPReport(t, ev)
	for _, c := range ev.Cases {
		if c.Switchboard.Ops < 200 || c.Raw.Ops < 200 {
			t.Errorf("%s: %d and %d events measured, want at least 200 each", c.Name, c.Switchboard.Ops, c.Raw.Ops)
		}
	}
}

// checkAMQPReport checks what is particular to a RabbitMQ report.
func checkAMQPReport(t *testing.T, r Report) {
	t.Helper()
	if r.Broker != brokerAMQP || r.RawClient != rawClientAMQP || r.ClientVersion == "" || !strings.Contains(r.Server, "RabbitMQ") {
		t.Errorf("%s: broker %q, raw client %q %q, server %q: want RabbitMQ and amqp091-go", r.Kind, r.Broker, r.RawClient, r.ClientVersion, r.Server)
	}
	if strings.Contains(r.Server, "guest:guest") {
		t.Errorf("%s: the server %q shows the password", r.Kind, r.Server)
	}
	if len(r.Skipped) != 1 || !strings.Contains(r.Skipped[0], "in-process") || !strings.Contains(r.Text(), "skipped:  in-process connection: does not apply to RabbitMQ") {
		t.Errorf("%s: skipped %q: want the in-process connection named", r.Kind, r.Skipped)
	}
	sane := func(v float64) bool { return v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) }
	for _, c := range r.Cases {
		if c.Connection != string(TCP) {
			t.Errorf("%s: connection %q, want tcp", c.Name, c.Connection)
		}
		for _, f := range []Figures{c.Switchboard, c.Raw} {
			if f.Ops == 0 || !sane(f.P50US) || !sane(f.ThroughputPerS) || !sane(f.AllocsPerOp) || f.HeaderBytes == 0 {
				t.Errorf("%s: figures %+v: want every one measured", c.Name, f)
			}
		}
		if !sane(c.P50Ratio) || math.Abs(c.P50Ratio-c.Switchboard.P50US/c.Raw.P50US) > 1e-9 ||
			!sane(c.ThroughputRatio) || math.Abs(c.ThroughputRatio-c.Switchboard.ThroughputPerS/c.Raw.ThroughputPerS) > 1e-9 {
			t.Errorf("%s: ratios %v and %v are not Switchboard/raw of %+v and %+v", c.Name, c.P50Ratio, c.ThroughputRatio, c.Switchboard, c.Raw)
		}
		if c.WithinBudget != (c.P50Ratio <= MaxP50Ratio && c.ThroughputRatio >= MinThroughputRatio) {
			t.Errorf("%s: within_budget %v does not follow from the ratios", c.Name, c.WithinBudget)
		}
	}
}

// checkSameFeatures checks the RPC report's comparison with raw using the
// driver's AMQP features: the cases named, each side measured, the same
// Switchboard wire figures as the main cases, a raw request that carries
// an expiration (so more property bytes than the leanest raw's), and the
// table and its verdict in the text.
func checkSameFeatures(t *testing.T, r Report, names []string) {
	t.Helper()
	if len(r.SameFeatures) != len(names) {
		t.Fatalf("same_features: %d cases, want %v", len(r.SameFeatures), names)
	}
	sane := func(v float64) bool { return v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) }
	within := true
	for i, c := range r.SameFeatures {
		if c.Name != names[i] {
			t.Errorf("same_features case %d is %q, want %q", i, c.Name, names[i])
		}
		if c.Raw.Ops == 0 || !sane(c.Raw.P50US) || !sane(c.Raw.ThroughputPerS) || c.Switchboard.Ops == 0 || !sane(c.Switchboard.P50US) {
			t.Errorf("%s: figures %+v and %+v: want both sides measured", c.Name, c.Switchboard, c.Raw)
		}
		if math.Abs(c.P50Ratio-c.Switchboard.P50US/c.Raw.P50US) > 1e-9 {
			t.Errorf("%s: p50 ratio %v is not Switchboard/raw of %v and %v", c.Name, c.P50Ratio, c.Switchboard.P50US, c.Raw.P50US)
		}
		if c.Switchboard.HeaderBytes != r.Cases[0].Switchboard.HeaderBytes {
			t.Errorf("%s: Switchboard's request properties %d B, the main cases' %d B", c.Name, c.Switchboard.HeaderBytes, r.Cases[0].Switchboard.HeaderBytes)
		}
		if lean := r.Cases[0].Raw.HeaderBytes; c.Raw.HeaderBytes <= lean {
			t.Errorf("%s: raw request properties %d B, not more than the leanest raw's %d B: the expiration is missing", c.Name, c.Raw.HeaderBytes, lean)
		}
		within = within && c.WithinBudget
	}
	if r.SameFeaturesWithinBudget != within {
		t.Errorf("same_features_within_budget %v, cases say %v", r.SameFeaturesWithinBudget, within)
	}
	text := r.Text()
	if v := r.SameFeaturesVerdict(); !strings.HasPrefix(v, "against raw with the same AMQP features") || !strings.Contains(text, v) ||
		!strings.Contains(text, "same AMQP features: Switchboard") || !strings.Contains(text, names[0]) {
		t.Errorf("the text lacks the same-features table or its verdict %q:\n%s", v, text)
	}
}

// TestRawFeaturesCallersPublishMandatory checks that the raw side with the
// driver's features does what the driver does with a request nothing
// serves: the broker returns it and the call fails at once, instead of
// waiting for callTimeout.
func TestRawFeaturesCallersPublishMandatory(t *testing.T) {
	ctx, e := amqpBenchEnv(t)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	p, err := newAMQPRPCPair(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if err := p.callRawFeatures(ctx, 1); err != nil {
		t.Fatalf("a call to the raw responder with the driver's features: %v", err)
	}
	c, err := p.featCallers.get()
	if err != nil {
		t.Fatal(err)
	}
	defer p.featCallers.put(c)
	start := time.Now()
	_, err = c.call(ctx, p.featX, "sb.rpc.nobody.quote", amqp.Publishing{Expiration: featExpiration, Body: []byte("{}")})
	if err == nil || !strings.Contains(err.Error(), "returned by the broker") {
		t.Fatalf("a request nothing serves: %v, want it returned by the broker", err)
	}
	if d := time.Since(start); d >= callTimeout {
		t.Errorf("the returned request failed after %s, the call timeout: not at once", d)
	}
}

func TestCheckBusURL(t *testing.T) {
	for _, tc := range []struct {
		name, url, err string
	}{
		{"no URL means the embedded server", "", ""},
		{"a NATS server is accepted", "nats://127.0.0.1:4222", ""},
		{"a RabbitMQ node is accepted", "amqp://guest:guest@127.0.0.1:5672/", ""},
		{"a vhost is accepted", "amqp://u:p@rabbit:5672/prod", ""},
		{"TLS files are accepted with amqps", "amqps://u:p@rabbit/?cacertfile=/ca.pem", ""},
		{"a URL without a host is refused", "amqp://", "want nats://HOST"},
		{"an unknown scheme is refused", "kafka://broker:9092", `unknown scheme "kafka"`},
		{"a host list is refused", "amqp://a:5672,b:5672/", "one RabbitMQ node"},
		{"the driver's prefix is the benchmark's", "amqp://h/?prefix=x", `parameter "prefix"`},
		{"an unknown parameter is refused", "amqp://h/?frob=1", `parameter "frob"`},
		{"TLS files need amqps", "amqp://h/?cacertfile=/ca.pem", "amqps:// URLs only"},
		{"a bad port is refused", "amqp://h:port/", "bus URL"},
		{"the password is not shown", "amqp://u:secret@h/?prefix=x", "u:xxxxx@h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckBusURL(tc.url)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("CheckBusURL(%q) = %v, want nil", tc.url, err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("CheckBusURL(%q) = %v, want an error containing %q", tc.url, err, tc.err)
			case err != nil && strings.Contains(err.Error(), "secret"):
				t.Fatalf("CheckBusURL(%q) = %v shows the password", tc.url, err)
			}
		})
	}
}

// amqpBenchEnv connects to the machine's RabbitMQ for a benchmark or test.
func amqpBenchEnv(b testing.TB) (context.Context, *amqpEnv) {
	b.Helper()
	cfg := Config{BusURL: amqptest.URL(b)}
	if err := cfg.defaults(); err != nil {
		b.Fatal(err)
	}
	e, err := newAMQPEnv(&cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.close)
	return context.Background(), e
}

// amqpRPCBench sets up both RPC sides on RabbitMQ for a benchmark.
func amqpRPCBench(b *testing.B) *amqpRPCPair {
	ctx, e := amqpBenchEnv(b)
	p, err := newAMQPRPCPair(ctx, e)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.close)
	return p
}

// BenchmarkRPCAMQP is BenchmarkRPC on RabbitMQ (TCP): a sequential call
// through Switchboard's amqpbus driver against raw amqp091-go with direct
// reply-to; raw_headers is raw carrying Switchboard's request and reply
// headers, raw_features raw doing on the broker what the driver does
// (serveRawFeatures):
//
//	go test -run '^$' -bench AMQP ./bench/
func BenchmarkRPCAMQP(b *testing.B) {
	p := amqpRPCBench(b)
	compare(b, p.callRaw, p.callSwitchboard, namedCall{"raw_headers", p.callRawHeaders}, namedCall{"raw_features", p.callRawFeatures})
}

// BenchmarkRPCParallelAMQP is BenchmarkRPCParallel on RabbitMQ: 32
// concurrent callers, with raw_features as in BenchmarkRPCAMQP.
func BenchmarkRPCParallelAMQP(b *testing.B) {
	p := amqpRPCBench(b)
	compareConcurrent(b, 32, p.callRaw, p.callSwitchboard, namedCall{"raw_features", p.callRawFeatures})
}

// BenchmarkPublishAMQP is BenchmarkPublish on RabbitMQ: one confirmed
// persistent publish to a quorum queue, with the consumers of both sides
// running.
func BenchmarkPublishAMQP(b *testing.B) {
	ctx, e := amqpBenchEnv(b)
	p, err := newAMQPEventsPair(ctx, e)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.close)
	if _, _, err := p.wireSizes(ctx); err != nil {
		b.Fatal(err)
	}
	compare(b, p.publishRaw, p.publishSwitchboard)
}
