package controlplane_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/app"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/natsbus"
	"github.com/switchboard-dev/switchboard/controlplane"
	"github.com/switchboard-dev/switchboard/examples/ridehail"
	"github.com/switchboard-dev/switchboard/examples/ridehail/contract"
	"github.com/switchboard-dev/switchboard/examples/ridehail/proto/ridehailpb"
	"github.com/switchboard-dev/switchboard/examples/ridehail/workload"
	"github.com/switchboard-dev/switchboard/health"
	"github.com/switchboard-dev/switchboard/tracestore"
	"github.com/switchboard-dev/switchboard/tracing"
	"github.com/switchboard-dev/switchboard/traffic"
)

// platform is a running system as `switchboard dev` runs it: an embedded
// NATS server, the ride-hailing services with a workload, and a control
// plane with one-second buckets, so that graphs fill within seconds.
type platform struct {
	conn   *bus.Conn
	cp     *controlplane.ControlPlane
	svcs   map[string]*switchboard.Service
	client *switchboard.Client
}

func startPlatform(t *testing.T, rate float64) *platform {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := natsbus.StartServer(natsbus.ServerOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx := context.Background()
	conn, err := srv.Open(ctx, natsbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cp, err := controlplane.Start(ctx, conn, controlplane.Options{Poll: time.Second, Bucket: time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := cp.Shutdown(sctx); err != nil {
			t.Errorf("control plane shutdown: %v", err)
		}
	})
	p := &platform{conn: conn, cp: cp, svcs: map[string]*switchboard.Service{}}
	// Traced as in dev: every call, spans to a traces collector.
	tr, err := tracing.New(ctx, tracing.Options{Bus: conn, Dev: true, NoOTLP: true, BatchTimeout: 100 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	collector := tracestore.New(tracestore.WithLogger(log))
	if err := collector.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = collector.Shutdown(context.Background()) })
	svcs := ridehail.Services(log)
	if err := tr.Instrument(svcs...); err != nil {
		t.Fatal(err)
	}
	if err := app.Prepare(svcs...); err != nil {
		t.Fatal(err)
	}
	if err := traffic.Install(svcs...); err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		chk := health.For(s).Every(time.Second).WithLogger(log)
		if err := s.Start(ctx, conn); err != nil {
			t.Fatal(err)
		}
		if err := chk.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = chk.Stop(context.Background()) })
		p.svcs[s.Name()] = s
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i := len(svcs) - 1; i >= 0; i-- {
			_ = svcs[i].Shutdown(sctx)
		}
	})
	p.client = switchboard.NewClient(conn, append(tr.ClientOptions("workload"), switchboard.WithCaller("workload"))...)
	t.Cleanup(func() { p.client.Close() })
	if rate > 0 {
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			workload.New(p.client, workload.Options{Rate: rate, Logger: log, RideTime: 500 * time.Millisecond}).Run(wctx)
		}()
		t.Cleanup(func() { stop(); <-done })
	}
	return p
}

// poison publishes a trip.completed event payments refuses (no trip id),
// so that after its attempts it is dead-lettered.
func (p *platform) poison(t *testing.T) {
	t.Helper()
	err := contract.TripCompleted.Publish(context.Background(), p.client, &ridehailpb.TripCompleted{CustomerId: "poison"})
	if err != nil {
		t.Fatal(err)
	}
}

// chromium finds the browser, or skips (fails under CI) saying how to get it.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SWITCHBOARD_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium found (chromium, chromium-browser, google-chrome or $SWITCHBOARD_CHROMIUM): ./scripts/test installs Debian's chromium package"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// artifacts returns the folder screenshots go to: $SWITCHBOARD_ARTIFACTS,
// or ./artifacts/dashboard at the repository root.
func artifacts(t *testing.T) string {
	dir := os.Getenv("SWITCHBOARD_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "artifacts")
	}
	dir, _ = filepath.Abs(filepath.Join(dir, "dashboard"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// TestDashboard drives the dashboard in headless Chromium through every
// page, against a running platform, as a person would.
func TestDashboard(t *testing.T) {
	browser := chromium(t)
	start := time.Now()
	p := startPlatform(t, 4)
	p.poison(t)
	shots := artifacts(t)

	actx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 1000))...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first run starts the browser and must have no deadline.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 50*time.Second)
	defer cancel()

	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		stepStart := time.Now()
		if err := chromedp.Do(ctx, actions...); err != nil {
			if shot, serr := chromedp.Run(bctx, chromedp.FullScreenshot(100)); serr == nil {
				_ = os.WriteFile(filepath.Join(shots, name+"-failed.png"), shot, 0o644)
			}
			t.Fatalf("%s: %v (screenshot %s-failed.png)", name, err, name)
		}
		t.Logf("%s: %s", name, time.Since(stepStart).Round(time.Millisecond))
	}
	screenshot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			buf, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644)
		})
	}
	// waitJS polls a JavaScript expression until it is true.
	waitJS := func(expr string) chromedp.Action[chromedp.Void] {
		return into(new(bool), chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	}
	text := func(sel string, dst *string) chromedp.Action[chromedp.Void] {
		return into(dst, chromedp.Text(chromedp.CSS(sel)))
	}
	visible := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.WaitVisible(chromedp.CSS(sel)) }
	click := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }
	url := p.cp.URL()

	var catalogue string
	step("catalogue",
		chromedp.Navigate(url+"#/"),
		visible(`#services tr[data-service="trips"]`),
		waitJS(`document.querySelectorAll('#services tbody tr').length >= 7`),
		waitJS(`document.querySelector('#services tr[data-service="trips"] .health').dataset.health === 'healthy'`),
		text(`#services`, &catalogue),
		screenshot("1-catalogue"))
	for _, name := range []string{"customers", "drivers", "pricing", "dispatch", "trips", "payments", "controlplane"} {
		if !strings.Contains(catalogue, name) {
			t.Errorf("the catalogue does not list %s:\n%s", name, catalogue)
		}
	}

	var points string
	step("service page",
		chromedp.Navigate(url+"#/service/trips"),
		visible(`.endpoint[data-endpoint="request_trip"]`),
		// Live: the request-rate graph grows points as the workload runs,
		// and the latency graph has p50 and p99 lines.
		waitJS(`(() => { const s = document.querySelector('.endpoint[data-endpoint="request_trip"] svg.linechart');
			return s && Number(s.dataset.points) >= 5; })()`),
		waitJS(`!!document.querySelector('.endpoint[data-endpoint="request_trip"] path[data-series="p99"]')`),
		into(&points, chromedp.Evaluate[string](`document.querySelector('.endpoint[data-endpoint="request_trip"] svg.linechart').dataset.points`)),
		screenshot("2-service-trips"))
	t.Logf("request_trip rate graph: %s points", points)

	var edges []string
	step("service graph",
		chromedp.Navigate(url+"#/graph"),
		waitJS(`['customers','pricing','dispatch'].every(s => document.querySelector('path.edge-call[data-from="trips"][data-to="'+s+'"]'))`),
		waitJS(`!!document.querySelector('path.edge-call[data-from="workload"][data-to="trips"]')`),
		waitJS(`!!document.querySelector('path.edge-event[data-from="trips"][data-to="payments"]')`),
		into(&edges, chromedp.Evaluate[[]string](`[...document.querySelectorAll('path.edge')].map(e => e.dataset.from + '->' + e.dataset.to)`)),
		screenshot("3-service-graph"))
	t.Logf("graph edges: %v", edges)
	var widths []float64
	step("edge widths", into(&widths, chromedp.Evaluate[[]float64](`[...document.querySelectorAll('path.edge-call')].map(e => Number(e.getAttribute('stroke-width')))`)))
	if len(widths) < 2 || slices.Max(widths) <= slices.Min(widths) {
		t.Errorf("call edges are not drawn by traffic: widths %v", widths)
	}

	var prefilled, reply string
	step("call form",
		chromedp.Navigate(url+"#/call/pricing/quote"),
		waitJS(`document.querySelector('#call-body').value.includes('pickup')`),
		into(&prefilled, chromedp.Value(chromedp.CSS(`#call-body`))),
		chromedp.SetValue(chromedp.CSS(`#call-body`), `{"pickup":{"lat":52.37,"lng":4.89},"dropoff":{"lat":52.36,"lng":4.92}}`),
		click(`#call-send`),
		visible(`#call-reply`),
		text(`#call-reply`, &reply),
		screenshot("4-call-form"))
	if !strings.Contains(prefilled, "dropoff") {
		t.Errorf("the form was not prefilled from the request schema: %s", prefilled)
	}
	if !strings.Contains(reply, "amountCents") || !strings.Contains(reply, "distanceKm") {
		t.Errorf("the reply of pricing.quote is not a quote: %s", reply)
	}

	var event string
	step("event tail",
		chromedp.Navigate(url+"#/events/trip.requested"),
		visible(`#tail .event[data-topic="trip.requested"]`),
		text(`#tail .event`, &event),
		screenshot("5-events"))
	if !strings.Contains(event, "trip.requested") || !strings.Contains(event, "tripId") {
		t.Errorf("the event tail does not show a decoded trip.requested: %s", event)
	}

	var reason string
	step("dead letters",
		chromedp.Navigate(url+"#/deadletters"),
		visible(`#dlq-places`),
		screenshot("6-deadletter-places"),
		chromedp.Navigate(url+"#/deadletters/"+contract.PaymentsGroup+"/trip.completed"),
		visible(`#dlq-list tr[data-id]`),
		text(`#dlq-list tr[data-id] .reason`, &reason),
		screenshot("7-deadletters"),
		click(`#dlq-list tr[data-id] a`),
		visible(`#dlq-detail`),
		screenshot("8-deadletter"),
		click(`button.replay`),
		visible(`#replay-result`),
		waitJS(`document.querySelector('#replay-result').textContent.includes('Replayed')`))
	if !strings.Contains(reason, "tripId") {
		t.Errorf("the dead letter's reason does not name the missing field: %q", reason)
	}

	var root, parallel string
	step("traces",
		chromedp.Navigate(url+"#/traces"),
		visible(`#trace-list tbody tr`),
		chromedp.SendKeys(chromedp.CSS(`#trace-endpoint`), "trips.request_trip"),
		waitJS(`(() => { const rows = [...document.querySelectorAll('#trace-list tbody tr')];
			return rows.length > 0 && rows.every(r => r.dataset.root.includes('trips.request_trip')); })()`),
		text(`#trace-list tbody tr td:nth-child(2)`, &root),
		screenshot("10-traces"),
		click(`#trace-list tbody tr a`),
		visible(`#sequence`))
	// Whether trips' three calls overlap in a given trace depends on how
	// the machine scheduled their goroutines: draw one in which they did.
	id := overlappingTrace(t, url)
	step("trace sequence",
		chromedp.Navigate(url+"#/trace/"+id),
		waitJS(`document.querySelector('#sequence') !== null && document.querySelector('h1 code').textContent === '`+id+`'`),
		// trips asks customers, pricing and dispatch at once: drawn as
		// one parallel band, and dispatch's call to drivers after it.
		waitJS(`document.querySelectorAll('#sequence line.call.parallel').length >= 3`),
		waitJS(`document.querySelectorAll('#sequence line.call.sequential').length >= 1`),
		into(&parallel, chromedp.Evaluate[string](`document.querySelector('#sequence').dataset.parallelGroups`)),
		screenshot("11-trace-sequence"))
	if !strings.Contains(root, "trips.request_trip") {
		t.Errorf("the trace list's root is %q, want trips.request_trip", root)
	}
	t.Logf("sequence diagram: %s parallel group(s)", parallel)

	// A service that goes away: its page says so and keeps its history.
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := p.svcs["pricing"].Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	scancel()
	var gone string
	step("gone service",
		chromedp.Navigate(url+"#/service/pricing"),
		visible(`#gone`),
		text(`#gone`, &gone),
		screenshot("9-service-gone"))
	if !strings.Contains(gone, "not running") {
		t.Errorf("the page of a stopped service says %q", gone)
	}
	fmt.Fprintf(os.Stderr, "dashboard test: %s, screenshots in %s\n", time.Since(start).Round(time.Millisecond), shots)
}

// overlappingTrace returns the id of a recent trace of trips.request_trip
// in which trips' calls to customers, pricing and dispatch all overlap in
// time, and dispatch's calls to drivers follow each other: what the
// sequence diagram must draw as one parallel band and as sequential calls.
// It looks through the traces the workload keeps making for up to 30 s.
func overlappingTrace(t *testing.T, base string) string {
	t.Helper()
	get := func(path string, v any) error {
		rsp, err := http.Get(strings.TrimSuffix(base, "/") + path)
		if err != nil {
			return err
		}
		defer rsp.Body.Close()
		if rsp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, rsp.Status)
		}
		return json.NewDecoder(rsp.Body).Decode(v)
	}
	deadline := time.Now().Add(30 * time.Second)
	seen := map[string]bool{}
	for time.Now().Before(deadline) {
		var recent tracestore.RecentReply
		if err := get("/api/traces?endpoint=trips.request_trip&limit=50", &recent); err != nil {
			t.Fatal(err)
		}
		for _, sum := range recent.Traces {
			if seen[sum.TraceID] {
				continue
			}
			seen[sum.TraceID] = true
			var tr tracestore.Trace
			if err := get("/api/traces/"+sum.TraceID, &tr); err != nil {
				t.Fatal(err)
			}
			if drawsParallelAndSequential(tr.Spans) {
				return sum.TraceID
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("none of %d traces of trips.request_trip has its three calls overlapping and dispatch's two in sequence", len(seen))
	return ""
}

// drawsParallelAndSequential reports whether the client spans that the
// trips.request_trip span makes include three that all overlap, and the
// dispatch.match span's client spans two that do not.
func drawsParallelAndSequential(spans []tracing.Span) bool {
	children := func(service, name string) []tracing.Span {
		var out []tracing.Span
		for _, p := range spans {
			if p.Kind != "server" || p.Service != service || !strings.HasSuffix(p.Name, name) {
				continue
			}
			for _, c := range spans {
				if c.Kind == "client" && c.ParentID == p.SpanID {
					out = append(out, c)
				}
			}
		}
		return out
	}
	end := func(s tracing.Span) int64 { return s.StartNS + s.DurationNS }
	calls := children("trips", "request_trip")
	if len(calls) < 3 {
		return false
	}
	latestStart, earliestEnd := int64(0), int64(1<<62)
	for _, c := range calls[:3] {
		latestStart, earliestEnd = max(latestStart, c.StartNS), min(earliestEnd, end(c))
	}
	drivers := children("dispatch", "match")
	return latestStart < earliestEnd && len(drivers) >= 2 && end(drivers[0]) <= drivers[1].StartNS
}

// into runs a and stores its value in dst, as an action of no value.
func into[T any](dst *T, a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		v, err := a(ctx, t)
		if err == nil {
			*dst = v
		}
		return chromedp.Void{}, err
	}
}
