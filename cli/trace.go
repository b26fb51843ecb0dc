package cli

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/tracestore"
	"github.com/switchboard-dev/switchboard/tracing"
	"github.com/switchboard-dev/switchboard/wire"
)

// TraceOptions are the options of `switchboard trace`.
type TraceOptions struct {
	*GlobalOptions
	// TraceID is the trace to show (32 hex digits), or "" with Last.
	TraceID string
	// Last is "service.endpoint" (or "service.topic"): show the latest
	// trace through it instead.
	Last string
	// Wait is how long to wait for the trace's spans to reach the collector.
	Wait time.Duration
	// Settle is how long no span of the trace must have arrived before it
	// is shown (within Wait).
	Settle time.Duration
	// Width is the width of the timeline bars in columns.
	Width int
	// List lists the recent traces (through Last, if set) instead of
	// showing one; Limit is how many.
	List  bool
	Limit int
}

func newTraceCmd(g *GlobalOptions) *cobra.Command {
	o := &TraceOptions{GlobalOptions: g}
	cmd := &cobra.Command{
		Use:   "trace TRACE_ID | --last SERVICE.ENDPOINT | --list",
		Short: "Show a trace as a timeline: which calls ran, in parallel or one after another",
		Long: `Show one trace as an indented timeline: each call (client and server side),
publish and consume, with its start offset, duration, a bar on a common time
axis, and its error code if it failed. Calls made in parallel have bars that
overlap; calls made one after another have bars that follow each other.

Traces come from the traces collector that 'switchboard dev' runs: every
traced service sends a sampled share of its spans over the bus (all of them
in dev), and the collector keeps the most recent traces in memory. Spans
travel in batches, so a trace that just finished may take a moment to
arrive: --wait says how long to wait for it, and --settle how long no more
of its spans must have arrived before it is shown. 'switchboard dev' sends
spans every 100ms; services run with app.Run every second, so for a trace
across several processes use --settle 1.5s.

A trace id is the 32 hex digits of a W3C traceparent (the traceparent
itself is accepted too). --last SERVICE.ENDPOINT shows the latest trace that
passed through that endpoint (or SERVICE.TOPIC for a consumer). --list
lists the recent traces instead, the latest first (through --last if given),
with their duration, span count and failed spans.

An unknown trace id, or no recent trace through the endpoint, ends the
command with exit code 4. With -o json the trace is printed as the
collector stores it: {"trace_id": …, "spans": [{…}, …]}, spans in the
format of docs/protocol.md ("Traces").`,
		Example: `  switchboard trace --last trips.request_trip
  switchboard trace 4bf92f3577b34da6a3ce929d0e0e4736
  switchboard trace 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
  switchboard trace --last payments.trip.completed --wait 10s
  switchboard trace --list --last trips.request_trip --limit 5
  switchboard trace --last trips.request_trip -o json | jq '.spans[] | select(.code != "OK")'`,
		Args: argsBetween(0, 1, "TRACE_ID"),
		RunE: runCommand(o),
	}
	cmd.Flags().StringVar(&o.Last, "last", "", "show the latest trace through SERVICE.ENDPOINT (or SERVICE.TOPIC)")
	cmd.Flags().DurationVar(&o.Wait, "wait", 3*time.Second, "how long to wait for the trace to reach the collector")
	cmd.Flags().DurationVar(&o.Settle, "settle", 250*time.Millisecond, "show the trace once no span of it arrived for this long (within --wait); raise it to about 1.5s for services in several processes")
	cmd.Flags().IntVar(&o.Width, "width", 40, "width of the timeline bars, in columns")
	cmd.Flags().BoolVar(&o.List, "list", false, "list the recent traces (through --last SERVICE.ENDPOINT if given) instead of showing one")
	cmd.Flags().IntVar(&o.Limit, "limit", 20, "with --list: how many traces to list (at most 1000)")
	return cmd
}

// Complete takes the trace id from args: a bare id or a traceparent.
func (o *TraceOptions) Complete(args []string) error {
	if len(args) == 1 {
		o.TraceID = strings.ToLower(strings.TrimSpace(args[0]))
		if parts := strings.Split(o.TraceID, "-"); len(parts) == 4 && len(parts[1]) == 32 {
			o.TraceID = parts[1] // a whole traceparent
		}
	}
	return nil
}

// Validate checks the id or --last, --wait and --width.
func (o *TraceOptions) Validate() error {
	switch {
	case o.List && o.TraceID != "":
		return usageErrorf("--list lists traces: give it no trace id (--last SERVICE.ENDPOINT filters the list)")
	case o.List && (o.Limit < 1 || o.Limit > 1000):
		return usageErrorf("invalid --limit %d: want 1 to 1000", o.Limit)
	case o.List:
		if o.Last != "" {
			if err := validateLast(o.Last); err != nil {
				return err
			}
		}
	case o.TraceID == "" && o.Last == "":
		return usageErrorf("name a trace: switchboard trace TRACE_ID, or switchboard trace --last SERVICE.ENDPOINT").
			withHint("see 'switchboard trace --help'")
	case o.TraceID != "" && o.Last != "":
		return usageErrorf("give a trace id or --last, not both")
	case o.TraceID != "" && !tracing.ValidTraceID(o.TraceID):
		return usageErrorf("malformed trace id %q: want 32 hex digits, not all zero (the trace-id part of a traceparent)", o.TraceID)
	case o.Last != "":
		if err := validateLast(o.Last); err != nil {
			return err
		}
	}
	if o.Settle < 0 || o.Settle > tracestore.MaxWait {
		return usageErrorf("invalid --settle %s: want a duration between 0 and %s", o.Settle, tracestore.MaxWait)
	}
	if o.Wait < 0 || o.Wait > tracestore.MaxWait {
		return usageErrorf("invalid --wait %s: want a duration between 0 and %s", o.Wait, tracestore.MaxWait)
	}
	if o.Width < 10 || o.Width > 200 {
		return usageErrorf("invalid --width %d: want 10 to 200 columns", o.Width)
	}
	return nil
}

// validateLast checks SERVICE.ENDPOINT (or SERVICE.TOPIC).
func validateLast(s string) error {
	svc, rest, ok := strings.Cut(s, ".")
	bad := !ok || wire.ValidateName("service", svc) != nil || rest == ""
	for _, part := range strings.Split(rest, ".") {
		bad = bad || wire.ValidateName("endpoint", part) != nil
	}
	if bad {
		return usageErrorf("malformed --last %q: want SERVICE.ENDPOINT, e.g. trips.request_trip (or SERVICE.TOPIC for a consumer, e.g. payments.trip.completed)", s)
	}
	return nil
}

// Run finds the trace and prints it.
func (o *TraceOptions) Run(ctx context.Context) error {
	conn, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := switchboard.NewClient(conn, switchboard.WithCaller("cli"))
	defer cl.Close()
	timeout := switchboard.WithTimeout(o.Wait + 5*time.Second)
	if o.List {
		return o.list(ctx, cl, timeout)
	}
	id := o.TraceID
	if o.Last != "" {
		rsp, err := tracestore.GetRecent.Call(ctx, cl, &tracestore.RecentRequest{Endpoint: o.Last, Limit: 1, WaitMS: o.Wait.Milliseconds()}, timeout)
		if err != nil {
			return traceError(err)
		}
		if len(rsp.Traces) == 0 {
			return &ExitError{Exit: ExitNotFound, Code: bus.NotFound.String(), Details: map[string]string{"endpoint": o.Last},
				Message: fmt.Sprintf("no recent trace through %s (the collector holds %d traces)", o.Last, rsp.Stats.Traces),
				Hint:    "call it first, and check the name with 'switchboard describe " + strings.SplitN(o.Last, ".", 2)[0] + "'; only sampled calls of traced services are kept"}
		}
		id = rsp.Traces[0].TraceID
	}
	tr, err := tracestore.GetTrace.Call(ctx, cl, &tracestore.GetTraceRequest{TraceID: id, WaitMS: o.Wait.Milliseconds(),
		SettleMS: o.Settle.Milliseconds()}, timeout)
	if err != nil {
		return traceError(err)
	}
	if o.JSON() {
		return writeJSON(o.IO.Out, tr)
	}
	renderTrace(o.IO.Out, tr, o.Width)
	return nil
}

// list prints the recent traces.
func (o *TraceOptions) list(ctx context.Context, cl *switchboard.Client, timeout switchboard.CallOption) error {
	rsp, err := tracestore.GetRecent.Call(ctx, cl, &tracestore.RecentRequest{Endpoint: o.Last, Limit: o.Limit}, timeout)
	if err != nil {
		return traceError(err)
	}
	if o.JSON() {
		if rsp.Traces == nil {
			rsp.Traces = []tracestore.Summary{}
		}
		return writeJSON(o.IO.Out, rsp)
	}
	if len(rsp.Traces) == 0 {
		what := "the collector holds no traces"
		if o.Last != "" {
			what = "no recent trace through " + o.Last
		}
		fmt.Fprintf(o.IO.ErrOut, "%s\nhint: traced services send their spans to the collector as they finish; call something first\n", what)
		return nil
	}
	tw := newTable(o.IO.Out)
	fmt.Fprintln(tw, "TRACE\tSTARTED\tDURATION\tSPANS\tERRORS\tROOT\tSERVICES")
	for _, t := range rsp.Traces {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", t.TraceID, t.Start.Local().Format("15:04:05.000"), fmtDur(int64(t.Duration)),
			t.Spans, t.Errors, t.Root, strings.Join(t.Services, ","))
	}
	return tw.Flush()
}

// traceError explains the collector's errors.
func traceError(err error) error {
	switch switchboard.ErrorCode(err) {
	case bus.NotFound:
		e := failed(err).(*ExitError)
		e.Exit = ExitNotFound
		e.Hint = "check the id; try 'switchboard trace --last SERVICE.ENDPOINT', or a longer --wait if the call just finished"
		return e
	case bus.Unavailable:
		e := failed(err).(*ExitError)
		e.Hint = "no traces collector is running: 'switchboard dev' runs one (package tracestore)"
		return e
	}
	return err
}

// renderTrace prints tr as an indented timeline with bars of width columns.
func renderTrace(w io.Writer, tr *tracestore.Trace, width int) {
	spans := tr.Spans
	if len(spans) == 0 {
		fmt.Fprintf(w, "Trace %s has no spans\n", tr.TraceID)
		return
	}
	start, end := spans[0].StartNS, int64(math.MinInt64)
	services := map[string]bool{}
	failures := 0
	for _, s := range spans {
		start = min(start, s.StartNS)
		end = max(end, s.StartNS+s.DurationNS)
		services[s.Service] = true
		if s.Failed() {
			failures++
		}
	}
	total := max(end-start, 1)

	// The tree: a span whose parent is not in the trace is a root.
	byID := map[string]*tracing.Span{}
	for i := range spans {
		byID[spans[i].SpanID] = &spans[i]
	}
	children := map[string][]*tracing.Span{}
	var roots []*tracing.Span
	for i := range spans {
		s := &spans[i]
		if _, ok := byID[s.ParentID]; ok && s.ParentID != "" {
			children[s.ParentID] = append(children[s.ParentID], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(l []*tracing.Span) {
		sort.SliceStable(l, func(i, j int) bool { return l[i].StartNS < l[j].StartNS })
	}
	byStart(roots)
	type line struct {
		label string
		s     *tracing.Span
	}
	var lines []line
	var walk func(s *tracing.Span, parent *tracing.Span, prefix, branch string)
	walk = func(s *tracing.Span, parent *tracing.Span, prefix, branch string) {
		lines = append(lines, line{prefix + branch + spanLabel(s, parent), s})
		kids := children[s.SpanID]
		byStart(kids)
		next := prefix
		switch branch {
		case "├─ ":
			next += "│  "
		case "└─ ":
			next += "   "
		}
		for i, k := range kids {
			b := "├─ "
			if i == len(kids)-1 {
				b = "└─ "
			}
			walk(k, s, next, b)
		}
	}
	for _, r := range roots {
		walk(r, nil, "", "")
	}

	labelW := 4
	for _, l := range lines {
		labelW = max(labelW, len([]rune(l.label)))
	}
	labelW = min(labelW, 70)

	fmt.Fprintf(w, "Trace %s · %s · %s · %s · %s\n", tr.TraceID, plural(len(spans), "span"), plural(len(services), "service"),
		fmtDur(total), time.Unix(0, start).UTC().Format("2006-01-02 15:04:05.000 UTC"))
	switch {
	case failures == 1:
		fmt.Fprintln(w, "1 span failed")
	case failures > 1:
		fmt.Fprintf(w, "%d spans failed\n", failures)
	}
	fmt.Fprintln(w)
	axis := "0" + strings.Repeat(" ", max(width-len(fmtDur(total))-1, 1)) + fmtDur(total)
	fmt.Fprintf(w, "%10s %10s  %-*s  %s\n", "START", "DURATION", labelW, "SPAN", " "+axis)
	for _, l := range lines {
		s := l.s
		label := []rune(l.label)
		if len(label) > labelW {
			label = append(label[:labelW-1], '…')
		}
		fmt.Fprintf(w, "%10s %10s  %-*s  |%s|", "+"+fmtDur(s.StartNS-start), fmtDur(s.DurationNS), labelW, string(label),
			bar(s.StartNS-start, s.DurationNS, total, width))
		if s.Failed() {
			msg := s.Code
			if msg == "" || msg == "OK" {
				msg = "error"
			}
			if s.Error != "" {
				msg += ": " + oneLine(s.Error, 80)
			}
			fmt.Fprintf(w, " ✗ %s", msg)
		}
		fmt.Fprintln(w)
	}
	if tr.DroppedSpans > 0 {
		fmt.Fprintf(w, "\n%d more spans were dropped: the trace is over the collector's limit of spans per trace\n", tr.DroppedSpans)
	}
}

// spanLabel names a span for the timeline: service.endpoint for a call
// served, "call service.endpoint" for a call made, "publish topic" and
// "consume topic"; prefixed with its service when that differs from its
// parent's and the label does not say it already.
func spanLabel(s, parent *tracing.Span) string {
	var label string
	switch s.Kind {
	case "server":
		if e := s.Endpoint(); e != "" {
			return e
		}
		return strings.Replace(s.Name, "/", ".", 1)
	case "client":
		label = "call " + strings.Replace(s.Name, "/", ".", 1)
	case "producer":
		label = "publish " + strings.TrimPrefix(s.Name, "send ")
	case "consumer":
		label = "consume " + strings.TrimPrefix(s.Name, "process ")
	default:
		label = s.Name
	}
	if s.Service != "" && (parent == nil || parent.Service != s.Service) {
		label = s.Service + ": " + label
	}
	return label
}

// bar draws a span of dur at offset off on an axis of total, width columns
// wide: at least one column, so that short spans still show where they are.
func bar(off, dur, total int64, width int) string {
	from := int(float64(off) / float64(total) * float64(width))
	to := int(math.Ceil(float64(off+dur) / float64(total) * float64(width)))
	from = min(max(from, 0), width-1)
	to = min(max(to, from+1), width)
	return strings.Repeat(" ", from) + strings.Repeat("█", to-from) + strings.Repeat(" ", width-to)
}

// fmtDur renders nanoseconds for the timeline: 0.052ms, 12.345ms, 1.234s.
func fmtDur(ns int64) string {
	d := time.Duration(ns)
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	if d >= time.Second {
		return fmt.Sprintf("%.3fs", d.Seconds())
	}
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}

func oneLine(s string, n int) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\r", " "), "\n", " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// plural is "1 span", "2 spans".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
