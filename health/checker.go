package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// DefaultInterval is how often a Checker runs its checks and publishes its
// report unless Every says otherwise.
const DefaultInterval = 10 * time.Second

// DefaultTimeout bounds one check unless the check was added with a timeout
// of its own.
const DefaultTimeout = 5 * time.Second

// Checker runs the health checks of one service instance. Get it with For.
// Its methods are safe for concurrent use.
type Checker struct {
	svc    *switchboard.Service
	win    *window // nil if attached after the service started
	logger *slog.Logger
	host   string

	mu       sync.Mutex
	interval time.Duration
	checks   []*check
	conn     *bus.Conn
	sub      *bus.Subscription
	stop     chan struct{}
	done     chan struct{}
	running  bool
	stopped  bool
	report   Report
	changed  chan struct{} // closed and replaced when a report differs in status

	evalMu sync.Mutex // one evaluation at a time
}

type check struct {
	name    string
	fn      CheckFunc
	timeout time.Duration
	state   CheckState // guarded by Checker.evalMu
}

var registry sync.Map // *switchboard.Service → *Checker

// For returns the Checker of svc, making it with the built-in checks on
// first use; later calls return the same one, so that package app and the
// service's author can both reach it. Call it before svc.Start: the
// latency, capacity-refusal and events checks learn from observing the
// service, which can only be attached before it starts (attached later,
// those checks say so instead).
func For(svc *switchboard.Service) *Checker {
	if c, ok := registry.Load(svc); ok {
		return c.(*Checker)
	}
	host, _ := os.Hostname()
	c := &Checker{svc: svc, interval: DefaultInterval, logger: slog.Default().With("service", svc.Name(), "instance", svc.ID()),
		host: host, changed: make(chan struct{})}
	if actual, loaded := registry.LoadOrStore(svc, c); loaded {
		return actual.(*Checker)
	}
	var names []string
	for _, l := range svc.Load() {
		names = append(names, l.Endpoint)
	}
	win := newWindow(names)
	// Fails, changing nothing, once the service started: the checks that
	// learn from observing it then say so.
	if svc.Apply(switchboard.WithObserver(switchboard.Observer{Request: win.observeRequest, Delivery: win.observeDelivery}),
		switchboard.WithStatus(StatusName, c.summary)) == nil {
		c.win = win
	}
	c.checks = []*check{
		{name: "bus", fn: c.checkBus, timeout: DefaultTimeout},
		{name: "capacity", fn: c.checkCapacity, timeout: DefaultTimeout},
		{name: "latency", fn: c.checkLatency, timeout: DefaultTimeout},
		{name: "events", fn: c.checkEvents, timeout: DefaultTimeout},
	}
	return c
}

// StatusName is the part of the instance's discovery announcement
// (wire.InstanceInfo.Status) that carries a Summary of its health.
const StatusName = "health"

// Summary is the health an instance announces in discovery: its status and
// the checks that are not healthy, so that announcements stay small.
type Summary struct {
	Status  Status       `json:"status"`
	Time    time.Time    `json:"time,omitzero"`
	Failing []CheckState `json:"failing,omitempty"`
	Checks  int          `json:"checks"`
	Running bool         `json:"running"`
}

func (c *Checker) summary() any {
	r := c.Report()
	s := Summary{Status: r.Status, Time: r.Time, Checks: len(r.Checks), Running: c.Running()}
	for _, k := range r.Checks {
		if k.Status != Healthy {
			s.Failing = append(s.Failing, k)
		}
	}
	return s
}

// Service returns the service checked.
func (c *Checker) Service() *switchboard.Service { return c.svc }

// Add registers a custom check named name, run every interval with
// DefaultTimeout (or timeout, if given and positive). It returns c, so
// checks chain. A name already taken is replaced: adding "bus" replaces the
// built-in bus check. It may be called before or after Start.
func (c *Checker) Add(name string, fn CheckFunc, timeout ...time.Duration) *Checker {
	t := DefaultTimeout
	if len(timeout) > 0 && timeout[0] > 0 {
		t = timeout[0]
	}
	c.evalMu.Lock()
	defer c.evalMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	nc := &check{name: name, fn: fn, timeout: t}
	if i := slices.IndexFunc(c.checks, func(k *check) bool { return k.name == name }); i >= 0 {
		c.checks[i] = nc
	} else {
		c.checks = append(c.checks, nc)
	}
	return c
}

// Every sets how often the checks run and the report is published
// (default DefaultInterval). Call it before Start.
func (c *Checker) Every(d time.Duration) *Checker {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.interval = d
	}
	return c
}

// WithLogger sets the logger for status changes (default slog.Default()).
func (c *Checker) WithLogger(l *slog.Logger) *Checker {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logger = l.With("service", c.svc.Name(), "instance", c.svc.ID())
	return c
}

// Start runs the checks once, serves CheckSubject and then runs the checks
// and publishes the report every interval until Stop. Call it after the
// service started; it uses the service's bus connection.
func (c *Checker) Start(ctx context.Context) error {
	conn := c.svc.Conn()
	if conn == nil {
		return fmt.Errorf("health: %s: start the service before its checker", c.svc.Name())
	}
	c.mu.Lock()
	if c.running || c.stopped {
		c.mu.Unlock()
		return fmt.Errorf("health: %s: checker already started", c.svc.Name())
	}
	c.conn, c.running = conn, true
	c.stop, c.done = make(chan struct{}), make(chan struct{})
	c.mu.Unlock()
	sub, err := conn.Serve(ctx, CheckSubject(c.svc.ID()), "", c.serve)
	if err != nil {
		c.mu.Lock()
		c.running, c.stopped = false, true
		close(c.done)
		c.mu.Unlock()
		return fmt.Errorf("health: %s: serve %s: %w", c.svc.Name(), CheckSubject(c.svc.ID()), err)
	}
	c.mu.Lock()
	c.sub = sub
	c.mu.Unlock()
	c.publish(ctx, c.evaluate(ctx))
	go c.loop()
	return nil
}

func (c *Checker) loop() {
	defer close(c.done)
	c.mu.Lock()
	t := time.NewTicker(c.interval)
	c.mu.Unlock()
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 2*DefaultTimeout)
			r := c.evaluate(ctx)
			if c.win != nil {
				c.win.rotate()
			}
			c.publish(ctx, r)
			cancel()
		}
	}
}

// Stop stops the checks and stops answering; from then on the report says
// the instance is stopping (unhealthy), so /readyz turns traffic away while
// the service drains. Call it before the service's Shutdown.
func (c *Checker) Stop(ctx context.Context) error {
	c.mu.Lock()
	if !c.running {
		c.stopped = true
		c.mu.Unlock()
		return nil
	}
	c.running, c.stopped = false, true
	close(c.stop)
	sub := c.sub
	c.mu.Unlock()
	var err error
	select {
	case <-c.done:
	case <-ctx.Done():
		err = fmt.Errorf("health: %s: stop: %w", c.svc.Name(), ctx.Err())
	}
	if sub != nil {
		err = errors.Join(err, sub.Stop(ctx))
	}
	c.evalMu.Lock()
	r := c.Report()
	r.Status, r.Time = Unhealthy, time.Now()
	r.Checks = append(r.Checks, CheckState{Name: "lifecycle", Status: Unhealthy, Message: "the instance is shutting down", Since: r.Time, Checked: r.Time})
	c.setReport(r)
	c.evalMu.Unlock()
	c.publish(ctx, r)
	return err
}

// Report returns the last report (a zero Report before Start).
func (c *Checker) Report() Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.report
	r.Checks = slices.Clone(r.Checks)
	return r
}

// Changed returns a channel closed when the next report whose overall
// status differs from the last one is made.
func (c *Checker) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// Running reports whether the checker runs (between Start and Stop).
func (c *Checker) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running
}

// Interval returns how often the checks run.
func (c *Checker) Interval() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.interval
}

// Refresh runs the checks now, publishes the report and returns it. It
// returns ErrNotStarted unless the checker runs.
func (c *Checker) Refresh(ctx context.Context) (Report, error) {
	if !c.Running() {
		return c.Report(), ErrNotStarted
	}
	r := c.evaluate(ctx)
	c.publish(ctx, r)
	return r, nil
}

// evaluate runs every check, concurrently, each within its timeout.
func (c *Checker) evaluate(ctx context.Context) Report {
	c.evalMu.Lock()
	defer c.evalMu.Unlock()
	c.mu.Lock()
	checks := slices.Clone(c.checks)
	interval := c.interval
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, k := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			res := run(ctx, k)
			now := time.Now()
			if k.state.Checked.IsZero() || k.state.Status != res.Status {
				if !k.state.Checked.IsZero() {
					c.logger.Info("health check changed", "check", k.name, "from", k.state.Status, "to", res.Status, "message", res.Message)
				}
				k.state.Since = now
			}
			k.state.Name, k.state.Status, k.state.Message = k.name, res.Status, oneLine(res.Message)
			k.state.Checked, k.state.DurationMS = now, float64(now.Sub(start).Microseconds())/1000
		}()
	}
	wg.Wait()
	r := Report{Service: c.svc.Name(), Instance: c.svc.ID(), Version: c.svc.Version(), Host: c.host,
		Time: time.Now(), IntervalMS: interval.Milliseconds()}
	for _, k := range checks {
		r.Checks = append(r.Checks, k.state)
		r.Status = Worst(r.Status, k.state.Status)
	}
	c.setReport(r)
	return r
}

func (c *Checker) setReport(r Report) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Status != c.report.Status || c.report.Time.IsZero() {
		close(c.changed)
		c.changed = make(chan struct{})
	}
	c.report = r
}

// run runs one check within its timeout; a panic or an overrun is
// Unhealthy.
func run(ctx context.Context, k *check) (res Result) {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	done := make(chan Result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- Unhealthyf("check panicked: %v", p)
			}
		}()
		done <- k.fn(ctx)
	}()
	select {
	case res = <-done:
		return res
	case <-ctx.Done():
		return Unhealthyf("no result within %s", k.timeout)
	}
}

// serve answers a request on CheckSubject with the report.
func (c *Checker) serve(ctx context.Context, m *bus.Message) *bus.Message {
	r := c.Report()
	if m.Header.Get(HeaderRefresh) == "1" && c.Running() {
		rctx, cancel := context.WithTimeout(ctx, 2*DefaultTimeout)
		r = c.evaluate(rctx)
		cancel()
		c.publish(ctx, r)
	}
	body, err := json.Marshal(r)
	if err != nil {
		h := bus.Header{}
		wire.EncodeError(h, bus.Errorf(bus.Internal, "health: encode report: %v", err))
		return &bus.Message{Header: h}
	}
	return &bus.Message{Header: bus.Header{wire.HeaderContentType: wire.ContentTypeJSON}, Body: body}
}

func (c *Checker) publish(ctx context.Context, r Report) {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return
	}
	body, err := json.Marshal(r)
	if err == nil {
		err = conn.Send(ctx, &bus.Message{Subject: ReportSubject(r.Service, r.Instance),
			Header: bus.Header{wire.HeaderContentType: wire.ContentTypeJSON}, Body: body})
	}
	if err != nil {
		c.logger.Debug("health report not published", "err", err)
	}
}
