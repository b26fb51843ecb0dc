package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/tracestore"
	"github.com/switchboard-dev/switchboard/tracing"
)

const tid = "4bf92f3577b34da6a3ce929d0e0e4736"

// threeCalls is a trace of a server span making three calls of 10ms each,
// starting at the given offsets in milliseconds.
func threeCalls(starts ...int64) *tracestore.Trace {
	ms := int64(1_000_000)
	spans := []tracing.Span{{TraceID: tid, SpanID: "0000000000000001", Name: "front/go", Kind: "server", Service: "front",
		StartNS: 0, DurationNS: 40 * ms, Attrs: map[string]string{"rpc.service": "front", "rpc.method": "go"}}}
	for i, s := range starts {
		spans = append(spans, tracing.Span{TraceID: tid, SpanID: "000000000000001" + string(rune('a'+i)), ParentID: "0000000000000001",
			Name: "back/work", Kind: "client", Service: "front", StartNS: s * ms, DurationNS: 10 * ms})
	}
	return &tracestore.Trace{TraceID: tid, Spans: spans}
}

// bars returns the bars of the lines naming label.
func bars(out, label string) []string {
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, label) {
			got = append(got, l[strings.Index(l, "|")+1:strings.LastIndex(l, "|")])
		}
	}
	return got
}

func TestTimelineShowsParallelCallsOverlappingAndSerialOnesInTurn(t *testing.T) {
	var par, ser bytes.Buffer
	renderTrace(&par, threeCalls(0, 0, 0), 40)
	renderTrace(&ser, threeCalls(0, 10, 20), 40)
	t.Logf("parallel:\n%s\nserial:\n%s", par.String(), ser.String())
	p, s := bars(par.String(), "call back.work"), bars(ser.String(), "call back.work")
	if len(p) != 3 || len(s) != 3 {
		t.Fatalf("want three call lines each, got %d and %d", len(p), len(s))
	}
	for _, b := range p {
		if b != p[0] || !strings.HasPrefix(b, "██████████") {
			t.Errorf("parallel calls should share one bar at the start: %q", p)
		}
	}
	for i, want := range []string{"██████████" + strings.Repeat(" ", 30), strings.Repeat(" ", 10) + "██████████" + strings.Repeat(" ", 20),
		strings.Repeat(" ", 20) + "██████████" + strings.Repeat(" ", 10)} {
		if s[i] != want {
			t.Errorf("serial call %d: bar %q, want %q", i, s[i], want)
		}
	}
	if !strings.Contains(ser.String(), "├─ call back.work") || !strings.Contains(ser.String(), "└─ call back.work") {
		t.Errorf("the calls are not drawn as children:\n%s", ser.String())
	}
}

func TestTimelineMarksFailuresAndShortSpans(t *testing.T) {
	tr := threeCalls(0)
	tr.Spans[1].Code, tr.Spans[1].Error = "Unavailable", "no instance\nof back"
	tr.Spans[1].DurationNS = 1 // far below a column: still drawn
	var out bytes.Buffer
	renderTrace(&out, tr, 20)
	text := out.String()
	if !strings.Contains(text, "✗ Unavailable: no instance of back") || !strings.Contains(text, "1 span failed") {
		t.Errorf("failure not shown:\n%s", text)
	}
	if b := bars(text, "call back.work"); len(b) != 1 || strings.Count(b[0], "█") != 1 {
		t.Errorf("a 1ns span should take one column: %q", b)
	}
}

func TestTraceOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		last string
		exit int
		msg  string
	}{
		{name: "an id is accepted", args: []string{tid}},
		{name: "an upper-case id is accepted", args: []string{strings.ToUpper(tid)}},
		{name: "a traceparent is accepted", args: []string{"00-" + tid + "-00f067aa0ba902b7-01"}},
		{name: "--last service.endpoint is accepted", last: "trips.request_trip"},
		{name: "--last service.topic is accepted", last: "payments.trip.completed"},
		{name: "nothing is a usage error", exit: ExitUsage, msg: "name a trace"},
		{name: "both is a usage error", args: []string{tid}, last: "a.b", exit: ExitUsage, msg: "not both"},
		{name: "a short id is malformed", args: []string{"abc"}, exit: ExitUsage, msg: `malformed trace id "abc"`},
		{name: "a zero id is malformed", args: []string{strings.Repeat("0", 32)}, exit: ExitUsage, msg: "malformed trace id"},
		{name: "a non-hex id is malformed", args: []string{strings.Repeat("g", 32)}, exit: ExitUsage, msg: "malformed trace id"},
		{name: "--last without endpoint is malformed", last: "trips", exit: ExitUsage, msg: `malformed --last "trips"`},
		{name: "--last with a wildcard is malformed", last: "trips.*", exit: ExitUsage, msg: "malformed --last"},
		{name: "--last with an empty part is malformed", last: "trips..x", exit: ExitUsage, msg: "malformed --last"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &TraceOptions{GlobalOptions: globals(), Last: tc.last, Wait: 0, Width: 40}
			err := o.Complete(tc.args)
			if err == nil {
				err = o.Validate()
			}
			wantExit(t, err, tc.exit, tc.msg)
		})
	}
}

func TestTraceWithoutACollectorSaysWhereOneRuns(t *testing.T) {
	g := globals()
	g.BusURL = "embedded://" + t.TempDir()
	o := &TraceOptions{GlobalOptions: g, TraceID: tid, Wait: 0, Width: 40}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	err := failed(o.Run(context.Background()))
	wantExit(t, err, ExitFailed, `no instance of service "traces" is running`)
	if e := err.(*ExitError); !strings.Contains(e.Hint, "'switchboard dev' runs one") {
		t.Errorf("hint %q does not say where a collector runs", e.Hint)
	}
}
